"""The fast path for a batch of usage events alone on PostgreSQL: each line checked and written
into a binary COPY as it is parsed, and stored duplicates and conflicts found by the insert.

It takes the common case only: every line a usage event (blank lines aside) that passes the
parser's checks, of known orgs whose plans bill its meter at its instant, with no id repeated
with other content. On anything else (another event type, a bad line, an org it cannot judge,
a conflict, SQLite) it rolls back to its savepoint and answers None, and the Ingestor checks
the batch again from its first line on its general path, which finds and reports every
problem: so outcomes and error reports are the general path's, whichever path stored them.

Stored copies are not looked up first: the insert meets them through the unique key, with
`ON CONFLICT … DO UPDATE … WHERE` the stored content differs. An identical copy is left as it
is (a duplicate); a different one is touched, and so counted as a conflict (`xmax` is 0 on the
rows the statement inserted, the transaction's id on the rows it updated), which gives up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from psycopg import Connection as PgConnection
from psycopg import Cursor as PgCursor
from psycopg import sql
from sqlmodel import Session

from billing.core.meters import Meter
from billing.ledger.admission import admission_error
from billing.ledger.formats import (
    EXACT_JSON,
    LineError,
    UsageFields,
    UsageLine,
    parse_record,
    well_formed_usage_fields,
)
from billing.ledger.org_state import OrgState, load_org_states
from billing.ledger.outcome import Progress
from billing.pricing.book_cache import BookCache
from models.ledger import UsageEvent

_PROGRESS_EVERY = 5_000
_STAGE = sql.Identifier("stage_usage_stream")
_COLUMNS = ("event_id", "org_id", "meter", "quantity", "at")
_TYPES = ("text", "text", "text", "numeric", "timestamptz")

PlanView = Callable[[UsageLine, OrgState], "OrgState | LineError"]


@dataclass
class _Stream:
    """What the parse sent into the COPY: the first copy of each (org, id), and the lines read."""

    first: dict[tuple[str, str], UsageFields] = field(default_factory=dict)
    lines: int = 0


def ingest_usage(
    session: Session,
    items: Sequence[object],
    *,
    books: BookCache,
    view: PlanView,
    now: datetime,
    progress: Progress | None,
) -> tuple[int, int] | None:
    """Store a batch of usage lines alone: (lines, rows stored); None when the batch is not one
    this path takes, with nothing stored."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or not _starts_with_usage(items):
        return None
    raw = connection.connection.driver_connection
    assert isinstance(raw, PgConnection)
    savepoint = connection.begin_nested()
    try:
        with raw.cursor() as cursor:
            stream = _copy(cursor, items, progress)
            stored = None
            if stream is not None and _admissible(session, books, view, stream, now):
                if progress is not None:
                    progress("storing", 0, len(stream.first))
                stored = _insert(cursor, now)
    except BaseException:
        savepoint.rollback()
        raise
    if stream is None or stored is None:
        savepoint.rollback()
        return None
    savepoint.commit()
    if progress is not None:
        progress("storing", len(stream.first), len(stream.first))
    return stream.lines, stored


def _starts_with_usage(items: Sequence[object]) -> bool:
    """Whether the batch's first line may be a usage event (a cheap look before any work)."""
    for item in items:
        if isinstance(item, str):
            if item.strip():
                return '"usage"' in item
            continue
        return isinstance(item, Mapping) and item.get("type") == "usage"
    return False


def _copy(
    cursor: PgCursor[Any], items: Sequence[object], progress: Progress | None
) -> _Stream | None:
    """Parse and check every line, writing each new (org, id) into a staging table by COPY."""
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            _STAGE,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                for name, kind in zip(_COLUMNS, _TYPES, strict=True)
            ),
        )
    )
    statement = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(_STAGE)
    with cursor.copy(statement) as copy:
        copy.set_types(list(_TYPES))
        return _parse_into(items, copy.write_row, len(items), progress)


def _parse_into(
    items: Sequence[object],
    write_row: Callable[[UsageFields], None],
    total: int,
    progress: Progress | None,
) -> _Stream | None:
    """The hot loop: each line decoded and checked, one dictionary look-up for its (org, id),
    one row written for each new id; None at the first line this path does not take."""
    stream = _Stream()
    remember = stream.first.setdefault
    decode = EXACT_JSON.raw_decode
    blank = 0
    for number, item in enumerate(items, start=1):
        fields = None
        if type(item) is str and item[:1] == "{" and item[-1:] == "}":
            try:
                raw, end = decode(item)
            except (ValueError, RecursionError):
                return None
            if end == len(item) and type(raw) is dict and raw.get("type") == "usage":
                fields = well_formed_usage_fields(raw)
        if fields is None:
            if type(item) is str and not item.strip():
                blank += 1
                continue
            fields = _other_usage(number, item)
            if fields is None:
                return None
        earlier = remember((fields[1], fields[0]), fields)
        if earlier is fields:
            write_row(fields)
        elif earlier != fields:  # the same id with other content: a conflict
            return None
        if progress is not None and number % _PROGRESS_EVERY == 0:
            progress("validating", number, total)
    stream.lines = len(items) - blank
    if progress is not None:
        progress("validating", total, total)
    return stream


def _other_usage(number: int, item: object) -> UsageFields | None:
    """A line the common case does not cover, read by the parser in full: its fields when it
    is a valid usage event (a decimal quantity, an offset other than Z, a mapping), else None."""
    errors: list[LineError] = []
    record = parse_record(number, item, errors)
    if errors or not isinstance(record, UsageLine):
        return None
    quantity: Any = record.quantity
    return record.event_id, record.org_id, record.meter.value, quantity, record.at


def _admissible(
    session: Session,
    books: BookCache,
    view: PlanView,
    stream: _Stream,
    now: datetime,
) -> bool:
    """Whether every line's org exists and can be billed for it (admission.py). An org with one
    plan bills a meter over a span of instants when it bills it at both ends (the batch's
    earliest and latest, or else the org's own); an org with a history of plans has each of
    its lines judged by the plan in effect at its instant."""
    rows = stream.first.values()
    pairs = set(zip(map(itemgetter(1), rows), map(itemgetter(2), rows), strict=True))
    states = load_org_states(session, books, {org_id for org_id, _ in pairs})
    batch_span = (min(map(itemgetter(4), rows)), max(map(itemgetter(4), rows)))
    spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    several_plans: set[str] = set()
    for org_id, meter in pairs:
        state = states.get(org_id)
        if state is None:
            return False
        if len(state.history) > 1:
            several_plans.add(org_id)
        elif not _bills(state, org_id, meter, batch_span, now):
            spans = spans or _spans(rows)
            if not _bills(state, org_id, meter, spans[org_id, meter], now):
                return False
    for _, org_id, meter, quantity, at in rows if several_plans else ():
        if org_id in several_plans:
            record = UsageLine(0, "", org_id, Meter(meter), Decimal(quantity), at)
            plan = view(record, states[org_id])
            if isinstance(plan, LineError) or admission_error(record, plan, now) is not None:
                return False
    return True


def _bills(
    state: OrgState, org_id: str, meter: str, span: tuple[datetime, datetime], now: datetime
) -> bool:
    """Whether an org on one plan can be billed for `meter` at both ends of `span`."""
    for at in span:
        probe = UsageLine(0, "", org_id, Meter(meter), Decimal(0), at)
        if admission_error(probe, state, now) is not None:
            return False
    return True


def _spans(rows: Iterable[UsageFields]) -> dict[tuple[str, str], tuple[datetime, datetime]]:
    """Each (org, meter)'s earliest and latest instants."""
    spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for _, org_id, meter, _, at in rows:
        earliest, latest = spans.get((org_id, meter), (at, at))
        spans[org_id, meter] = (min(earliest, at), max(latest, at))
    return spans


def _insert(cursor: PgCursor[Any], now: datetime) -> int | None:
    """Insert the staged rows in key order: rows stored, or None when one of them conflicts
    with a stored copy (nothing is changed then that the savepoint's rollback does not undo)."""
    table = _usage_table()
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in _COLUMNS)
    content = ("meter", "quantity", "at")
    stored = sql.SQL(", ").join(sql.SQL("stored.{}").format(sql.Identifier(n)) for n in content)
    given = sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(n)) for n in content)
    statement = sql.SQL(
        "WITH written AS ("
        " INSERT INTO {table} AS stored ({columns}, received_at)"
        " SELECT {columns}, %s FROM {stage} ORDER BY org_id, event_id"
        " ON CONFLICT (org_id, event_id) DO UPDATE SET event_id = stored.event_id"
        " WHERE ({stored}) IS DISTINCT FROM ({given})"
        " RETURNING stored.xmax = 0 AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)"
        " FROM written"
    ).format(
        table=sql.Identifier(table.name),
        columns=columns,
        stage=_STAGE,
        stored=stored,
        given=given,
    )
    row = cursor.execute(statement, (now,)).fetchone()
    assert row is not None
    inserted, conflicting = row
    if conflicting:
        return None
    cursor.execute(sql.SQL("DROP TABLE {}").format(_STAGE))
    return int(inserted)


def _usage_table() -> sa.Table:
    model: type[Any] = UsageEvent
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table
