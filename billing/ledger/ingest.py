"""The Ingestor service: validate a whole batch of ledger events, then store it in one go.

A batch is all-or-nothing: when any record is invalid nothing is stored and every problem is
returned. Records are checked in order against the ledger and the price books, so an org may
be created earlier in the same batch. Repeated records (the same usage event id for the org
with the same content, or the very same plan change, seat count or resource report at the same
instant) are stored once and counted as duplicates, whether the repeat is in the batch or
already stored; a usage id repeated with other content is a conflict, refused (usage_ids.py).
Seats, usage and resources lines must be billable at all (admission.py); credit lines and
each new org's welcome credit are checked and stored by credit_grants.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.meters import Interval
from billing.ledger.admission import admission_error
from billing.ledger.credit_grants import CreditBatch
from billing.ledger.formats import (
    EVENT_TYPES,
    CreditLine,
    LineError,
    OrgLine,
    ResourcesLine,
    SeatsLine,
    UsageLine,
    parse_record,
)
from billing.ledger.usage_ids import StoredUsageLookup, UsageIds
from billing.pricing.book import (
    DEFAULT_BOOK,
    PriceBookError,
    SeatPolicy,
    Terms,
    UnknownTermsError,
)
from billing.pricing.book_cache import BookCache
from models.ledger import (
    Org,
    OrgPlanChange,
    ResourceReport,
    SeatChangeRecord,
    UsageEvent,
    insert_ignoring_duplicates,
)

Progress = Callable[[str, int, int], None]  # (phase, done, total)
_PROGRESS_EVERY = 5_000
_LOOKUP_EVERY = 2_500  # lines parsed between two look-ups of stored usage (divides the above)
_IN_CHUNK = 500


class ConcurrentIngestError(RuntimeError):
    """Another batch stored some of this batch's usage ids between the check and the insert:
    their contents were not compared, so this batch must be rolled back and sent again."""


@dataclass(frozen=True)
class IngestOutcome:
    """Per event type: lines stored and lines that were duplicates; errors when rejected."""

    stored: Mapping[str, int]
    duplicates: Mapping[str, int]
    errors: tuple[LineError, ...] = ()
    conflicts: tuple[LineError, ...] = ()  # those of `errors` that are conflicting usage ids

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def only_conflicts(self) -> bool:
        """Refused for conflicting usage ids alone (HTTP answers 409 rather than 422)."""
        return bool(self.errors) and len(self.conflicts) == len(self.errors)


@dataclass
class _OrgState:
    book: str
    plan: str
    interval: str
    term_start_at: datetime
    subscribed_at: datetime  # the earliest plan change: the org's first subscription
    terms: Terms
    history: dict[datetime, tuple[str, str, str]]
    created_at: datetime | None = None  # set when the org is new in this batch


@dataclass
class _Batch:
    usage_ids: UsageIds
    errors: list[LineError] = field(default_factory=list)
    conflicts: list[LineError] = field(default_factory=list)
    seen: set[tuple[Any, ...]] = field(default_factory=set)  # seat and resource rows
    new_orgs: dict[str, _OrgState] = field(default_factory=dict)
    changed_orgs: dict[str, _OrgState] = field(default_factory=dict)
    plan_rows: list[dict[str, Any]] = field(default_factory=list)
    plan_seat_rows: list[dict[str, Any]] = field(default_factory=list)  # seats of a plan change
    org_seat_rows: list[dict[str, Any]] = field(default_factory=list)  # org lines: seats only
    seat_rows: list[dict[str, Any]] = field(default_factory=list)
    usage_rows: list[dict[str, Any]] = field(default_factory=list)
    resource_rows: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_TYPES, 0))
    credits: CreditBatch = field(default_factory=CreditBatch)


class Ingestor:
    """Validates and stores ledger events inside the caller's session (the caller commits)."""

    def __init__(
        self,
        session: Session,
        *,
        default_book: str = DEFAULT_BOOK,
        books: BookCache | None = None,
    ) -> None:
        self.session = session
        self.default_book = default_book
        self.books = books or BookCache()

    def ingest(
        self,
        records: Iterable[Mapping[str, Any] | str],
        now: datetime,
        progress: Progress | None = None,
    ) -> IngestOutcome:
        """Validate every record (JSON text or a parsed mapping), then store them all or none.

        `now` becomes each row's `received_at`/`recorded_at`. Blank text lines are skipped.
        """
        batch = self.validate(records, now, progress)
        if batch.errors:
            empty = dict.fromkeys(EVENT_TYPES, 0)
            return IngestOutcome(
                stored=empty,
                duplicates=empty,
                errors=tuple(batch.errors),
                conflicts=tuple(sorted(batch.conflicts)),
            )
        stored = self._store(batch, now, progress)
        if stored["usage"] != len(batch.usage_rows):
            raise ConcurrentIngestError(
                f"{len(batch.usage_rows) - stored['usage']} usage event(s) of this batch were "
                "stored by another ingest meanwhile, unchecked: roll back and send it again"
            )
        duplicates = {kind: batch.lines[kind] - stored[kind] for kind in EVENT_TYPES}
        return IngestOutcome(stored=stored, duplicates=duplicates)

    # ----------------------------------------------------------------------- validation

    def validate(
        self,
        records: Iterable[Mapping[str, Any] | str],
        now: datetime,
        progress: Progress | None = None,
    ) -> _Batch:
        """Check every record: the rows to store, to be stored only when `errors` is empty."""
        items = list(records)
        errors: list[LineError] = []
        parsed = []
        with StoredUsageLookup(self.session.connection()) as lookup:
            for number, raw in enumerate(items, start=1):
                if isinstance(raw, str) and not raw.strip():
                    continue
                record = parse_record(number, raw, errors)
                if record is not None:
                    parsed.append(record)
                if number % _LOOKUP_EVERY == 0:
                    lookup.feed(parsed)
                    if progress is not None and number % _PROGRESS_EVERY == 0:
                        progress("validating", number, len(items))
            lookup.feed(parsed)
        states = self._load_orgs({record.org_id for record in parsed})
        batch = _Batch(UsageIds(lookup.stored), errors)
        batch.credits.look_up(self.session.connection(), parsed)
        for record in parsed:
            if isinstance(record, OrgLine):
                error = self._check_org(record, states=states, batch=batch, now=now)
            elif record.org_id not in states:
                error = LineError(
                    record.line,
                    "org",
                    f"unknown org {record.org_id!r} (create it first with a "
                    '{"type": "org", ...} line)',
                )
            else:
                error = _add_event(record, states[record.org_id], batch, now)
            if error is not None:
                errors.append(error)
        if progress is not None:
            progress("validating", len(items), len(items))
        errors.sort()
        return batch

    def _check_org(
        self,
        record: OrgLine,
        *,
        states: dict[str, _OrgState],
        batch: _Batch,
        now: datetime,
    ) -> LineError | None:
        """An org line: a new org, a plan change, or a repeat; its seats, if it gives them."""
        state = states.get(record.org_id)
        resolved = self._org_terms(record, state)
        if isinstance(resolved, LineError):
            return resolved
        book_name, terms = resolved
        interval = terms.interval.value
        wanted = (book_name, record.plan, interval)
        if state is None:
            state = _OrgState(
                book_name,
                record.plan,
                interval,
                record.at,
                record.at,
                terms,
                {record.at: wanted},
                now,
            )
            states[record.org_id] = state
            batch.new_orgs[record.org_id] = state
            welcome = self.books.book(book_name).welcome_credit
            batch.credits.welcome(record.org_id, welcome, record.at, now)
            changes_plan = True
        else:
            changed = _plan_change(record, state, wanted, terms)
            if isinstance(changed, LineError):
                return changed
            changes_plan = changed
            if changes_plan and state.created_at is None:
                batch.changed_orgs[record.org_id] = state
        batch.lines["org"] += 1
        if changes_plan:
            batch.plan_rows.append(
                {
                    "org_id": record.org_id,
                    "book": book_name,
                    "plan": record.plan,
                    "interval": interval,
                    "at": record.at,
                    "recorded_at": now,
                }
            )
        key = ("seats", record.org_id, record.at, record.seat_count)
        if record.seat_count is None or key in batch.seen:
            return None
        batch.seen.add(key)
        row = _seat_row(record.org_id, record.seat_count, record.at, now)
        (batch.plan_seat_rows if changes_plan else batch.org_seat_rows).append(row)
        return None

    def _org_terms(self, record: OrgLine, state: _OrgState | None) -> tuple[str, Terms] | LineError:
        """The book and terms an org line names (its book defaults to the org's, or the
        ingestor's), with the seats a plan with seats needs."""
        book_name = record.book or (state.book if state else self.default_book)
        try:
            book = self.books.book(book_name)
        except (UnknownTermsError, PriceBookError) as exc:
            return LineError(record.line, "book", str(exc).strip("'\""))
        if record.plan not in book.plans:
            known = ", ".join(sorted(book.plans))
            return LineError(
                record.line,
                "plan",
                f"unknown plan {record.plan!r} in book {book.name!r} (plans: {known})",
            )
        try:
            terms = self.books.terms(book_name, record.plan, record.interval, record.org_id)
        except UnknownTermsError as exc:
            where = "interval" if "interval" in str(exc) and record.interval else "plan"
            return LineError(record.line, where, str(exc).strip("'\""))
        if record.seat_count is not None and terms.seat_unit_amount is None:
            return LineError(record.line, "seats", f"plan {record.plan!r} has no seats")
        if state is None and record.seat_count is None and terms.seat_unit_amount:
            return LineError(record.line, "seats", f"is required for a new org on {record.plan!r}")
        return book_name, terms

    def _load_orgs(self, org_ids: set[str]) -> dict[str, _OrgState]:
        states: dict[str, _OrgState] = {}
        ordered = sorted(org_ids)
        for offset in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[offset : offset + _IN_CHUNK]
            orgs = self.session.exec(select(Org).where(col(Org.id).in_(chunk))).all()
            for org in orgs:
                try:
                    terms = self.books.terms(org.book, org.plan, org.interval, org.id)
                except (UnknownTermsError, PriceBookError):
                    # The book changed under a stored org: its lines get a clear error below.
                    terms = _NO_TERMS
                start_at = org.term_start_at
                states[org.id] = _OrgState(
                    org.book, org.plan, org.interval, start_at, start_at, terms, {}
                )
            known = [org.id for org in orgs]
            if not known:
                continue
            changes = self.session.exec(
                select(OrgPlanChange).where(col(OrgPlanChange.org_id).in_(known))
            ).all()
            for change in changes:
                state = states[change.org_id]
                state.history[change.at] = (change.book, change.plan, change.interval)
                state.subscribed_at = min(state.subscribed_at, change.at)
        return states

    # ----------------------------------------------------------------------- storage

    def _store(self, batch: _Batch, now: datetime, progress: Progress | None) -> dict[str, int]:
        connection = self.session.connection()
        if batch.new_orgs:
            insert_ignoring_duplicates(
                connection,
                _table(Org),
                [
                    {
                        "id": org_id,
                        "book": state.book,
                        "plan": state.plan,
                        "interval": state.interval,
                        "term_start_at": state.term_start_at,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for org_id, state in batch.new_orgs.items()
                ],
            )
        for org_id, state in batch.changed_orgs.items():
            connection.execute(
                sa.update(_table(Org))
                .where(_table(Org).c.id == org_id)
                .values(
                    book=state.book,
                    plan=state.plan,
                    interval=state.interval,
                    term_start_at=state.term_start_at,
                    updated_at=now,
                )
            )
        seats = _table(SeatChangeRecord)
        stored = {
            "org": insert_ignoring_duplicates(connection, _table(OrgPlanChange), batch.plan_rows)
            + insert_ignoring_duplicates(connection, seats, batch.org_seat_rows),
            "seats": insert_ignoring_duplicates(connection, seats, batch.seat_rows),
        }
        insert_ignoring_duplicates(connection, seats, batch.plan_seat_rows)
        total = len(batch.usage_rows)
        stored["usage"] = insert_ignoring_duplicates(
            connection,
            _table(UsageEvent),
            batch.usage_rows,
            None if progress is None else (lambda done: progress("storing", done, total)),
        )
        stored["resources"] = insert_ignoring_duplicates(
            connection, _table(ResourceReport), batch.resource_rows
        )
        stored["credit"] = batch.credits.store(connection)
        return stored


_NO_TERMS = Terms(
    book="?",
    plan="?",
    interval=Interval.MONTH,
    currency="usd",
    seat_unit_amount=None,
    meters={},
    minimum_amount=0,
    quotas={},
    seat_policy=SeatPolicy(),
)


def _table(model: type[Any]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def _seat_row(org_id: str, seat_count: int, at: datetime, now: datetime) -> dict[str, Any]:
    return {"org_id": org_id, "seat_count": seat_count, "at": at, "recorded_at": now}


def _plan_change(
    record: OrgLine, state: _OrgState, wanted: tuple[str, str, str], terms: Terms
) -> bool | LineError:
    """Whether an org line changes a known org's plan (and then the change, in `state`); a
    repeat of a change at the same instant changes nothing, a change before the latest one is
    refused."""
    if record.at in state.history:
        if state.history[record.at] != wanted:
            return LineError(
                record.line, "at", "the org already has a different plan change at this instant"
            )
        return False
    if record.at < max(state.history):
        latest = max(state.history).isoformat()
        return LineError(record.line, "at", f"is before the org's latest plan change ({latest})")
    if (state.book, state.plan, state.interval) == wanted:
        return False
    state.book, state.plan, state.interval = wanted
    state.term_start_at = record.at
    state.terms = terms
    state.history[record.at] = wanted
    return True


def _add_event(
    record: SeatsLine | UsageLine | ResourcesLine | CreditLine,
    state: _OrgState,
    batch: _Batch,
    now: datetime,
) -> LineError | None:
    """A seats, usage, resources or credit line of a known org: checked against its terms and
    dates, then added to the batch unless it repeats one already there (or, for usage and
    credits, stored)."""
    if isinstance(record, CreditLine):
        batch.lines["credit"] += 1
        return batch.credits.add(record, state.subscribed_at, now, batch.conflicts)
    error = admission_error(record, state, now)
    if error is not None:
        return error
    if isinstance(record, UsageLine):
        return _add_usage(record, batch, now)
    key: tuple[Any, ...]
    if isinstance(record, SeatsLine):
        kind, rows = "seats", batch.seat_rows
        key = (kind, record.org_id, record.at, record.seat_count)
        row = _seat_row(record.org_id, record.seat_count, record.at, now)
    else:
        kind, rows = "resources", batch.resource_rows
        key = (kind, record.org_id, record.stack, record.at, record.resource_count)
        row = {
            "org_id": record.org_id,
            "stack": record.stack,
            "resource_count": record.resource_count,
            "at": record.at,
            "received_at": now,
        }
    batch.lines[kind] += 1
    if key not in batch.seen:
        batch.seen.add(key)
        rows.append(row)
    return None


def _add_usage(record: UsageLine, batch: _Batch, now: datetime) -> LineError | None:
    """A usage line: a row to store when its id is new, nothing when it repeats an earlier
    copy exactly; a conflict when it differs from it."""
    new = batch.usage_ids.check(record)
    if isinstance(new, LineError):
        batch.conflicts.append(new)
        return new
    batch.lines["usage"] += 1
    if new:
        batch.usage_rows.append(
            {
                "event_id": record.event_id,
                "org_id": record.org_id,
                "meter": record.meter.value,
                "quantity": record.quantity,
                "at": record.at,
                "received_at": now,
            }
        )
    return None
