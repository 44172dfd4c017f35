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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from billing.core.periods import isoformat_z
from billing.ledger.admission import admission_error
from billing.ledger.collector import collector_paused
from billing.ledger.credit_grants import CreditBatch
from billing.ledger.formats import (
    EVENT_TYPES,
    CancelLine,
    CreditLine,
    LineError,
    OrgLine,
    ResourcesLine,
    SeatsLine,
    UsageLine,
    parse_record,
)
from billing.ledger.lifecycle_events import (
    Decision,
    apply,
    decide_cancel,
    decide_org_line,
)
from billing.ledger.org_state import OrgState, load_org_states, plan_row
from billing.ledger.outcome import ConcurrentIngestError, IngestOutcome, Progress
from billing.ledger.usage_ids import StoredUsageLookup, UsageIds
from billing.ledger.usage_stream import ingest_usage
from billing.pricing.book import (
    DEFAULT_BOOK,
    PriceBookError,
    Terms,
    UnknownTermsError,
)
from billing.pricing.book_cache import BookCache
from billing.pricing.lifecycle import NO_PLAN
from models.ledger import (
    Org,
    OrgPlanChange,
    ResourceReport,
    SeatChangeRecord,
    UsageEvent,
    insert_ignoring_duplicates,
)

__all__ = ["ConcurrentIngestError", "IngestOutcome", "Ingestor", "Progress"]

_PROGRESS_EVERY = 5_000
_LOOKUP_EVERY = 2_500  # lines parsed between two look-ups of stored usage (divides the above)


@dataclass
class _Batch:
    usage_ids: UsageIds
    errors: list[LineError] = field(default_factory=list)
    conflicts: list[LineError] = field(default_factory=list)
    seen: set[tuple[Any, ...]] = field(default_factory=set)  # seat and resource rows
    new_orgs: dict[str, OrgState] = field(default_factory=dict)
    changed_orgs: dict[str, OrgState] = field(default_factory=dict)
    plan_rows: list[dict[str, Any]] = field(default_factory=list)
    withdrawn: list[tuple[str, datetime]] = field(default_factory=list)  # scheduled rows
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
        stream_usage: bool = True,
    ) -> None:
        """`stream_usage=False`: no batch takes usage_stream.py's fast path (tests compare)."""
        self.session = session
        self.default_book = default_book
        self.books = books or BookCache()
        self.stream_usage = stream_usage

    def ingest(
        self,
        records: Iterable[Mapping[str, Any] | str],
        now: datetime,
        progress: Progress | None = None,
    ) -> IngestOutcome:
        """Validate every record (JSON text or a parsed mapping), then store them all or none.

        `now` becomes each row's `received_at`/`recorded_at`. Blank text lines are skipped.
        """
        with collector_paused():
            items = list(records)
            streamed = self.stream_usage and ingest_usage(
                self.session,
                items,
                books=self.books,
                view=self.plan_view,
                now=now,
                progress=progress,
            )
            if streamed:
                lines, stored = streamed
                counts = dict.fromkeys(EVENT_TYPES, 0)
                duplicates = {**counts, "usage": lines - stored}
                return IngestOutcome({**counts, "usage": stored}, duplicates)
            return self._ingest(items, now, progress)

    def _ingest(
        self,
        records: Iterable[Mapping[str, Any] | str],
        now: datetime,
        progress: Progress | None,
    ) -> IngestOutcome:
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
        states = load_org_states(self.session, self.books, {record.org_id for record in parsed})
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
            elif isinstance(record, CancelLine):
                error = self._check_cancel(record, states[record.org_id], batch, now)
            else:
                error = self._add_event(record, states[record.org_id], batch, now)
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
        states: dict[str, OrgState],
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
            state = OrgState(
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
            batch.plan_rows.append(plan_row(record.org_id, wanted, record.at, now))
            welcome = self.books.book(book_name).welcome_credit
            batch.credits.welcome(record.org_id, welcome, record.at, now)
            changes_plan = True
        else:
            decision = decide_org_line(
                record,
                state.timeline,
                wanted,
                self.books.book(book_name),
                lambda b, p, i: self.books.terms(b, p, i, record.org_id),
            )
            if isinstance(decision, LineError):
                return decision
            changes_plan = _record(record.org_id, state, decision, batch, now)
            if decision.immediate:
                state.book, state.plan, state.interval = wanted
                state.term_start_at = record.at
                state.terms = terms
                if state.created_at is None:
                    batch.changed_orgs[record.org_id] = state
        batch.lines["org"] += 1
        key = ("seats", record.org_id, record.at, record.seat_count)
        if record.seat_count is None or key in batch.seen:
            return None
        batch.seen.add(key)
        row = _seat_row(record.org_id, record.seat_count, record.at, now)
        (batch.plan_seat_rows if changes_plan else batch.org_seat_rows).append(row)
        return None

    def _check_cancel(
        self, record: CancelLine, state: OrgState, batch: _Batch, now: datetime
    ) -> LineError | None:
        """A cancel line: the org's subscription ends now or at its term end (SPEC §10)."""
        try:
            book = self.books.book(state.book)
        except (UnknownTermsError, PriceBookError) as exc:
            return LineError(record.line, "org", str(exc).strip("'\""))
        decision = decide_cancel(
            record,
            state.timeline,
            book,
            lambda b, p, i: self.books.terms(b, p, i, record.org_id),
        )
        if isinstance(decision, LineError):
            return decision
        batch.lines["cancel"] += 1
        _record(record.org_id, state, decision, batch, now)
        return None

    def _add_event(
        self,
        record: SeatsLine | UsageLine | ResourcesLine | CreditLine,
        state: OrgState,
        batch: _Batch,
        now: datetime,
    ) -> LineError | None:
        """A seats, usage or resources line, judged by the plan in effect at its instant (a
        credit depends on no plan)."""
        if isinstance(record, CreditLine):
            return _add_event(record, state, batch, now)
        view = self.plan_view(record, state)
        if isinstance(view, LineError):
            return view
        return _add_event(record, view, batch, now)

    def plan_view(
        self, record: SeatsLine | UsageLine | ResourcesLine, state: OrgState
    ) -> OrgState | LineError:
        """The org as the plan in effect at the record's instant bills it; an error when its
        subscription had ended by then."""
        if len(state.history) <= 1:
            return state
        found = state.timeline.at(record.at)
        if found is not None and found[1][1] == NO_PLAN:
            return LineError(
                record.line,
                "at",
                f"{isoformat_z(record.at)} is after the org's subscription ended "
                f"({isoformat_z(found[0])}, canceled); an org line subscribes it again",
            )
        if found is not None and found[1] != (state.book, state.plan, state.interval):
            book, plan, interval = found[1]
            terms = self.books.terms(book, plan, interval, record.org_id)
            return replace(state, book=book, plan=plan, interval=interval, terms=terms)
        return state

    def _org_terms(self, record: OrgLine, state: OrgState | None) -> tuple[str, Terms] | LineError:
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
        plans = _table(OrgPlanChange)
        for org_id, at in batch.withdrawn:
            connection.execute(
                sa.delete(plans).where(
                    plans.c.org_id == org_id, plans.c.at == at, plans.c.requested_at.is_not(None)
                )
            )
        seats = _table(SeatChangeRecord)
        cancels = [row for row in batch.plan_rows if row["plan"] == NO_PLAN]
        changes = [row for row in batch.plan_rows if row["plan"] != NO_PLAN]
        stored = {
            "org": insert_ignoring_duplicates(connection, plans, changes)
            + insert_ignoring_duplicates(connection, seats, batch.org_seat_rows),
            "cancel": insert_ignoring_duplicates(connection, plans, cancels),
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


def _table(model: type[Any]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def _seat_row(org_id: str, seat_count: int, at: datetime, now: datetime) -> dict[str, Any]:
    return {"org_id": org_id, "seat_count": seat_count, "at": at, "recorded_at": now}


def _record(org_id: str, state: OrgState, decision: Decision, batch: _Batch, now: datetime) -> bool:
    """Add a decision's row and withdrawals to the batch and to the org's timeline; whether it
    adds a row."""
    timeline = state.timeline
    apply(timeline, decision)
    state.history, state.requested = timeline.history, timeline.requested
    batch.withdrawn.extend((org_id, at) for at in decision.withdraw)
    if decision.withdraw:  # rows of this batch that a later line withdrew are not stored
        gone = set(decision.withdraw)
        batch.plan_rows[:] = [
            row
            for row in batch.plan_rows
            if row["org_id"] != org_id or row["at"] not in gone or row.get("requested_at") is None
        ]
    if decision.row is None:
        return False
    batch.plan_rows.append({"org_id": org_id, **decision.row, "recorded_at": now})
    return True


def _add_event(
    record: SeatsLine | UsageLine | ResourcesLine | CreditLine,
    state: OrgState,
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
