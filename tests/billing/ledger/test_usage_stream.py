"""The usage fast path (usage_stream.py) against the general path, on PostgreSQL: the same
outcomes, the same error reports and the same stored rows, batch after batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

import billing.ledger.usage_stream as usage_stream
from billing.ledger.ingest import Ingestor, IngestOutcome
from models.db import make_engine, migrate, unit_of_work
from models.ledger import UsageEvent

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SETUP = [
    json.dumps(
        {"type": "org", "org": "acme", "plan": "team", "seats": 5, "at": "2026-01-15T09:00:00Z"}
    ),
    json.dumps({"type": "org", "org": "beta", "plan": "free", "at": "2026-01-01T00:00:00Z"}),
]


def usage(
    event_id: str,
    quantity: Any = 3,
    *,
    org: str = "acme",
    meter: str = "copilot_messages",
    at: str = "2026-02-04T12:00:00Z",
) -> str:
    return json.dumps(
        {
            "type": "usage",
            "id": event_id,
            "org": org,
            "meter": meter,
            "quantity": quantity,
            "at": at,
        }
    )


def _schema_engine(server_url: str) -> Iterator[Engine]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{server_url}?options=-csearch_path%3D{schema}"
    migrate(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def fast(postgres_url: str) -> Iterator[Engine]:
    yield from _schema_engine(postgres_url)


@pytest.fixture
def general(postgres_url: str) -> Iterator[Engine]:
    yield from _schema_engine(postgres_url)


@pytest.fixture
def inserts(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """What each fast-path insert answered (rows stored, or None on a conflict)."""
    answers: list[int | None] = []
    insert = usage_stream._insert

    def spy(*args: Any) -> int | None:
        answers.append(insert(*args))
        return answers[-1]

    monkeypatch.setattr(usage_stream, "_insert", spy)
    return answers


def ingest(engine: Engine, lines: list[Any], *, stream: bool) -> IngestOutcome:
    with unit_of_work(engine) as session:
        return Ingestor(session, stream_usage=stream).ingest(lines, NOW)


def rows(engine: Engine) -> list[tuple[Any, ...]]:
    table = UsageEvent.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in ("org_id", "event_id", "meter", "quantity", "at")]
    with engine.connect() as conn:
        found = conn.execute(select(*columns, table.c.received_at).order_by(*columns[:2]))
        return [tuple(row) for row in found]


def both(fast: Engine, general: Engine, lines: list[Any]) -> IngestOutcome:
    """Ingest `lines` on both paths; they must agree on the outcome and the stored rows."""
    streamed = ingest(fast, lines, stream=True)
    checked = ingest(general, lines, stream=False)
    assert streamed == checked
    assert rows(fast) == rows(general)
    return streamed


@pytest.fixture
def ledgers(fast: Engine, general: Engine) -> tuple[Engine, Engine]:
    """Both ledgers with two orgs and three stored usage events."""
    both(fast, general, SETUP)
    stored = [usage("s1"), usage("s2", 7, meter="runner_minutes"), usage("s3", "1.5")]
    assert both(fast, general, stored).stored["usage"] == 3
    return fast, general


def test_duplicates_stored_and_in_the_batch_are_counted_alike_and_stored_once(
    ledgers: tuple[Engine, Engine], inserts: list[int | None]
) -> None:
    inserts.clear()
    lines = [
        usage("s1"),  # stored, identical
        usage("s3", "1.50"),  # stored, the same quantity spelled otherwise
        usage("n1", 2),
        "",
        usage("n1", "2.0"),  # repeats line 3
        usage("n2", 4, org="beta", at="2026-02-04T13:00:00+01:00"),  # an offset other than Z
        {"type": "usage", "id": "n3", "org": "beta", "meter": "runner_minutes",
         "quantity": Decimal("0.25"), "at": "2026-02-05T00:00:00Z"},  # a mapping
        usage("n2", 4, org="acme"),  # the same id for another org is another event
    ]  # fmt: skip
    outcome = both(*ledgers, lines)
    assert outcome.ok
    assert (outcome.stored["usage"], outcome.duplicates["usage"]) == (4, 3)
    assert inserts == [4]  # the fast path stored them, the general path never ran for it
    stored = {(row[0], row[1]): row for row in rows(ledgers[0])}
    assert stored["beta", "n2"][4] == datetime(2026, 2, 4, 12, tzinfo=UTC)
    assert stored["beta", "n3"][3] == Decimal("0.25")


@pytest.mark.parametrize(
    "repeat",
    [
        usage("s1", 4),
        usage("s2", 7, meter="copilot_messages"),
        usage("s3", "1.5", at="2026-02-05T12:00:00Z"),
    ],
)
def test_a_conflict_with_a_stored_copy_is_found_by_the_insert_and_reported_alike(
    ledgers: tuple[Engine, Engine], inserts: list[int | None], repeat: str
) -> None:
    inserts.clear()
    before = rows(ledgers[0])
    outcome = both(*ledgers, [usage("n1"), repeat, usage("n2")])
    assert [error.line for error in outcome.errors] == [2]
    assert "was already stored with" in str(outcome.errors[0])
    assert outcome.only_conflicts
    assert inserts == [None]  # the insert met it, and the savepoint undid everything
    assert rows(ledgers[0]) == before


def test_a_conflict_inside_the_batch_is_reported_alike(ledgers: tuple[Engine, Engine]) -> None:
    outcome = both(*ledgers, [usage("n1", 3), usage("n1", "3.0"), usage("n1", 4), usage("n2")])
    assert [str(error) for error in outcome.errors] == [
        "line 3: id: 'n1' was already given on line 1 with quantity 3"
    ]


def test_bad_lines_are_reported_alike_and_nothing_is_stored(
    ledgers: tuple[Engine, Engine], inserts: list[int | None]
) -> None:
    inserts.clear()
    before = rows(ledgers[0])
    bad = [
        usage("n2", org="ghost"),
        usage("n3", meter="execution_time"),  # not billed on devtools plans
        usage("n4", at="2026-03-01T12:05:01Z"),  # more than 5 minutes after NOW
        usage("n5", at="2026-01-15T08:59:59Z"),  # before acme's first subscription
        usage("n6", -1),
        '{"type": "usage", "id": "n7"',
        usage("s1", 9),  # a stored conflict
    ]
    for line in bad:  # each alone after clean lines, then all of them
        outcome = both(*ledgers, [usage("ok1"), usage("ok2"), line])
        assert [error.line for error in outcome.errors] == [3]
    outcome = both(*ledgers, [usage("n1"), *bad, usage("n8")])
    assert [error.line for error in outcome.errors] == [2, 3, 4, 5, 6, 7, 8]
    assert rows(ledgers[0]) == before
    assert inserts == [None]  # only the stored conflict alone reached the insert


def test_an_org_with_several_plans_has_each_line_judged_by_the_plan_then(
    ledgers: tuple[Engine, Engine],
) -> None:
    cancel = json.dumps(
        {"type": "cancel", "org": "beta", "when": "now", "at": "2026-02-10T00:00:00Z"}
    )
    assert both(*ledgers, [cancel]).ok
    before = usage("b1", org="beta", at="2026-02-09T23:59:59Z")
    after = usage("b2", org="beta", at="2026-02-10T00:00:01Z")
    assert both(*ledgers, [before, usage("a1")]).stored["usage"] == 2
    outcome = both(*ledgers, [usage("a2"), after])
    assert [(error.line, error.field) for error in outcome.errors] == [(2, "at")]
    assert "after the org's subscription ended" in outcome.errors[0].problem


def test_a_batch_with_other_events_or_on_sqlite_takes_the_general_path(
    ledgers: tuple[Engine, Engine], inserts: list[int | None], tmp_path: Any
) -> None:
    inserts.clear()
    seats = json.dumps({"type": "seats", "org": "acme", "count": 6, "at": "2026-02-10T00:00:00Z"})
    assert both(*ledgers, [usage("n1"), seats, usage("n2")]).stored["usage"] == 2
    assert both(*ledgers, [seats, usage("n3")]).stored["usage"] == 1
    assert inserts == []
    sqlite = make_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    migrate(str(sqlite.url))
    assert ingest(sqlite, SETUP, stream=True).ok
    assert ingest(sqlite, [usage("n1"), usage("n1")], stream=True).stored["usage"] == 1
    assert inserts == []
    sqlite.dispose()
