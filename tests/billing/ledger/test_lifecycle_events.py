"""SPEC §10's rules as the ledger stores them: where each plan change or cancellation takes
effect, withdrawals and replacements, repeats, usage after the end, re-subscription."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from billing.ledger.ingest import Ingestor, IngestOutcome
from models.db import unit_of_work
from models.ledger import OrgPlanChange

NOW = datetime(2027, 12, 1, tzinfo=UTC)


def line(**fields: Any) -> str:
    return json.dumps(fields)


TEAM = line(type="org", org="acme", plan="team", seats=10, at="2027-01-01T00:00:00Z")


def ingest(engine: Engine, *lines: str) -> IngestOutcome:
    with unit_of_work(engine) as session:
        return Ingestor(session).ingest(list(lines), NOW)


def ledger(engine: Engine) -> list[tuple[str, str, str | None, str | None]]:
    """(effective at, plan, asked at, cancel credit) per stored row."""
    with unit_of_work(engine) as session:
        rows = session.execute(select(OrgPlanChange).order_by(OrgPlanChange.at)).scalars()
        return [
            (
                row.at.isoformat()[:16],
                row.plan or "canceled",
                row.requested_at.isoformat()[:16] if row.requested_at else None,
                row.cancel_credit,
            )
            for row in rows
        ]


def test_a_downgrade_waits_for_the_anniversary_and_an_upgrade_does_not(engine: Engine) -> None:
    free = line(
        type="org", org="acme", plan="free", interval="month", seats=3, at="2027-06-15T10:00:00Z"
    )
    assert ingest(engine, TEAM, free).ok
    assert ledger(engine) == [
        ("2027-01-01T00:00", "team", None, None),
        ("2028-01-01T00:00", "free", "2027-06-15T10:00", None),
    ]
    # The same line again changes nothing; naming Team again withdraws the downgrade.
    assert ingest(engine, free).duplicates["org"] == 1
    assert ingest(engine, line(type="org", org="acme", plan="team", at="2027-07-01T00:00:00Z")).ok
    assert ledger(engine) == [("2027-01-01T00:00", "team", None, None)]
    # An upgrade (onto the org-less enterprise list plan) is immediate.
    assert ingest(
        engine, line(type="org", org="acme", plan="enterprise", at="2027-08-01T00:00:00Z")
    ).ok
    assert ledger(engine)[-1] == ("2027-08-01T00:00", "enterprise", None, None)


def test_cancellations_now_and_at_term_end(engine: Engine) -> None:
    assert ingest(engine, TEAM).ok
    at_end = line(type="cancel", org="acme", at="2027-03-10T12:00:00Z")
    assert ingest(engine, at_end).stored["cancel"] == 1
    assert ledger(engine)[-1] == ("2028-01-01T00:00", "canceled", "2027-03-10T12:00", None)
    # Cancelling now instead replaces the scheduled cancellation.
    now = line(type="cancel", org="acme", when="now", at="2027-04-01T00:00:00Z")
    assert ingest(engine, now).ok
    assert ledger(engine)[1:] == [("2027-04-01T00:00", "canceled", None, "prorate")]
    again = ingest(engine, line(type="cancel", org="acme", when="now", at="2027-05-01T00:00:00Z"))
    assert [(e.field, e.problem) for e in again.errors] == [
        ("org", "'acme' has no subscription to cancel (canceled since 2027-04-01T00:00:00Z)")
    ]


def test_after_the_end_usage_is_refused_unless_dated_before_it(engine: Engine) -> None:
    now = line(type="cancel", org="acme", when="now", at="2027-04-01T00:00:00Z")
    assert ingest(engine, TEAM, now).ok

    def usage(event_id: str, at: str) -> str:
        return line(
            type="usage", id=event_id, org="acme", meter="copilot_messages", quantity=5, at=at
        )

    late = ingest(engine, usage("before", "2027-03-31T23:00:00Z"))
    assert late.ok  # dated before the end: billed, however late it arrives
    after = ingest(engine, usage("after", "2027-04-02T00:00:00Z"))
    assert [e.field for e in after.errors] == ["at"]
    assert "after the org's subscription ended (2027-04-01T00:00:00Z, canceled)" in str(
        after.errors[0]
    )
    # An org line after the end subscribes the org again; usage is billed again from then.
    back = line(
        type="org", org="acme", plan="free", interval="month", seats=2, at="2027-05-01T00:00:00Z"
    )
    assert ingest(engine, back, usage("again", "2027-05-02T00:00:00Z")).ok
    assert ledger(engine)[-1] == ("2027-05-01T00:00", "free", None, None)


def test_unknown_when_is_named(engine: Engine) -> None:
    bad = ingest(
        engine, TEAM, line(type="cancel", org="acme", when="later", at="2027-02-01T00:00:00Z")
    )
    assert [str(e) for e in bad.errors] == [
        "line 2: when: must be 'term_end' or 'now', got 'later'"
    ]
    assert ledger(engine) == []
