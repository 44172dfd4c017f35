"""Ingestion on SQLite and PostgreSQL: all-or-nothing files, dedup, every bad line reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from billing.ledger.ingest import ConcurrentIngestError, Ingestor, IngestOutcome
from billing.ledger.usage_ids import StoredUsageLookup
from models.db import unit_of_work
from models.ledger import Org, OrgPlanChange, ResourceReport, SeatChangeRecord, UsageEvent

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def line(**fields: Any) -> str:
    return json.dumps(fields)


ORG = line(type="org", org="acme", plan="team", seats=10, at="2026-01-15T09:00:00Z")


def usage(
    event_id: str, quantity: Any = 3, org: str = "acme", meter: str = "copilot_messages"
) -> str:
    return (
        f'{{"type": "usage", "id": "{event_id}", "org": "{org}", "meter": "{meter}", '
        f'"quantity": {quantity}, "at": "2026-02-04T12:00:00Z"}}'
    )


def ingest(engine: Engine, lines: list[str], now: datetime = NOW) -> IngestOutcome:
    with unit_of_work(engine) as session:
        return Ingestor(session).ingest(lines, now)


def count(engine: Engine, model: type[Any]) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.connection().execute(select(func.count()).select_from(model)).scalar_one()
        )


def test_org_created_earlier_in_the_same_file_and_everything_stored(engine: Engine) -> None:
    outcome = ingest(
        engine,
        [
            ORG,
            line(type="seats", org="acme", count=12, at="2026-02-03T10:00:00Z"),
            usage("e1", 700),
            usage("e2", "2.5", meter="runner_minutes"),
            "",
            line(type="resources", org="acme", stack="eks", count=50, at="2026-02-05T00:00:00Z"),
        ],
    )
    assert outcome.ok
    assert outcome.stored == {
        "org": 1,
        "seats": 1,
        "usage": 2,
        "resources": 1,
        "cancel": 0,
        "credit": 0,
    }
    assert outcome.duplicates == {
        "org": 0,
        "seats": 0,
        "usage": 0,
        "resources": 0,
        "cancel": 0,
        "credit": 0,
    }
    with unit_of_work(engine) as session:
        org = session.get(Org, "acme")
        assert org is not None
        assert (org.book, org.plan, org.interval) == ("devtools", "team", "year")
        assert org.term_start_at == datetime(2026, 1, 15, 9, tzinfo=UTC)
        events = {e.event_id: e for e in session.exec(select(UsageEvent)).scalars()}  # type: ignore[call-overload]
    assert events["e2"].quantity == Decimal("2.5")
    assert events["e1"].received_at == NOW
    assert events["e1"].at.tzinfo is not None
    assert count(engine, SeatChangeRecord) == 2  # 10 at creation, then 12


def test_duplicates_within_a_file_and_across_files_are_stored_once(engine: Engine) -> None:
    first = ingest(engine, [ORG, usage("e1"), usage("e1"), usage("e2")])
    assert first.stored["usage"] == 2
    assert first.duplicates["usage"] == 1
    second = ingest(
        engine,
        [
            ORG,
            usage("e2"),
            usage("e3"),
            line(type="resources", org="acme", stack="eks", count=5, at="2026-02-05T00:00:00Z"),
            line(type="resources", org="acme", stack="eks", count=5, at="2026-02-05T00:00:00Z"),
        ],
    )
    assert second.ok
    assert second.stored == {
        "org": 0,
        "seats": 0,
        "usage": 1,
        "resources": 1,
        "cancel": 0,
        "credit": 0,
    }
    assert second.duplicates == {
        "org": 1,
        "seats": 0,
        "usage": 1,
        "resources": 1,
        "cancel": 0,
        "credit": 0,
    }
    assert count(engine, UsageEvent) == 3
    assert count(engine, OrgPlanChange) == 1


def test_an_invalid_file_stores_nothing_and_reports_every_bad_line(engine: Engine) -> None:
    lines = [
        ORG,  # 1: fine, but must not be stored either
        usage("ok1"),  # 2: fine
        "{not json",  # 3
        line(type="refund", org="acme"),  # 4
        usage("x", org="ghost"),  # 5
        usage("y", meter="execution_time"),  # 6: not in the devtools team plan
        usage("z", meter="bogus"),  # 7
        usage("neg", "-1"),  # 8
        line(type="seats", org="acme", count=3, at="2026-02-03T10:00:00"),  # 9: naive
        '{"type": "seats", "org": "acme", "count": 2.0, "at": "2026-02-03T10:00:00Z"}',  # 10
        line(
            type="usage",
            org="acme",
            meter="copilot_messages",
            quantity=1,
            at="2026-02-03T10:00:00Z",
        ),  # 11
        line(type="org", org="beta", plan="platinum", at="2026-01-01T00:00:00Z"),  # 12
        line(type="org", org="gamma", plan="team", at="2026-01-01T00:00:00Z"),  # 13: seats
        line(type="resources", org="acme", stack="s", count=-4, at="2026-02-03T10:00:00Z"),  # 14
    ]
    outcome = ingest(engine, lines)
    assert not outcome.ok
    assert [str(error) for error in outcome.errors] == [
        "line 3: (json): not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "line 4: type: unknown type 'refund' (known: org, seats, usage, resources, cancel, credit)",
        'line 5: org: unknown org \'ghost\' (create it first with a {"type": "org", ...} line)',
        "line 6: meter: meter 'execution_time' is not billed on plan 'team' of book 'devtools' "
        "(meters: copilot_messages, runner_minutes, iac_resource_hours)",
        "line 7: meter: unknown meter 'bogus' (known: copilot_messages, runner_minutes, "
        "iac_resource_hours, execution_time)",
        "line 8: quantity: must not be negative, got -1",
        "line 9: at: '2026-02-03T10:00:00' has no timezone offset (naive); add Z or +00:00",
        "line 10: count: must be a whole number, got 2.0",
        "line 11: id: is required",
        "line 12: plan: unknown plan 'platinum' in book 'devtools' (plans: enterprise, free, team)",
        "line 13: seats: is required for a new org on 'team'",
        "line 14: count: must not be negative, got -4",
    ]
    assert outcome.stored == {
        "org": 0,
        "seats": 0,
        "usage": 0,
        "resources": 0,
        "cancel": 0,
        "credit": 0,
    }
    for model in (Org, OrgPlanChange, SeatChangeRecord, UsageEvent, ResourceReport):
        assert count(engine, model) == 0


def test_book_rules_zenaton_has_no_seats_nor_resources(engine: Engine) -> None:
    outcome = ingest(
        engine,
        [
            line(type="org", org="zen", book="zenaton", plan="payg", at="2026-01-01T00:00:00Z"),
            line(type="seats", org="zen", count=3, at="2026-01-02T00:00:00Z"),
            line(type="resources", org="zen", stack="s", count=3, at="2026-01-02T00:00:00Z"),
            usage("t1", 3600, org="zen", meter="execution_time"),
            line(
                type="org",
                org="zen2",
                book="zenaton",
                plan="payg",
                seats=2,
                at="2026-01-01T00:00:00Z",
            ),
            line(type="org", org="zen3", book="nope", plan="payg", at="2026-01-01T00:00:00Z"),
        ],
    )
    assert [(e.line, e.field) for e in outcome.errors] == [
        (2, "count"),
        (3, "type"),
        (5, "seats"),
        (6, "book"),
    ]


def test_plan_change_starts_a_new_term_and_history_is_append_only(engine: Engine) -> None:
    assert ingest(engine, [ORG]).ok
    change = line(type="org", org="acme", plan="enterprise", at="2026-03-01T00:00:00Z")
    outcome = ingest(engine, [change, change])
    assert outcome.stored["org"] == 1
    assert outcome.duplicates["org"] == 1
    with unit_of_work(engine) as session:
        org = session.get(Org, "acme")
        assert org is not None
        assert (org.plan, org.term_start_at) == ("enterprise", datetime(2026, 3, 1, tzinfo=UTC))
    assert count(engine, OrgPlanChange) == 2
    # Re-sending the old creation line is a duplicate, not an error; an earlier change is refused.
    assert ingest(engine, [ORG]).duplicates["org"] == 1
    late = ingest(engine, [line(type="org", org="acme", plan="free", at="2026-02-01T00:00:00Z")])
    assert [(e.line, e.field) for e in late.errors] == [(1, "at")]


def test_a_contract_org_may_sit_on_another_plan_and_move_onto_its_contract(
    engine: Engine,
) -> None:
    # SPEC §10: the contract applies only while the org is on the contract's plan; moving
    # onto it is a plan change like any other, always immediate.
    team = line(
        type="org", org="org_enterprise_example", plan="team", seats=5, at="2026-01-01T00:00:00Z"
    )
    assert ingest(engine, [team]).ok
    onto = line(
        type="org", org="org_enterprise_example", plan="enterprise", at="2026-03-10T00:00:00Z"
    )
    assert ingest(engine, [onto]).ok
    with unit_of_work(engine) as session:
        rows = session.exec(select(OrgPlanChange).order_by(OrgPlanChange.at)).scalars().all()
        found = [(row.plan, row.at, row.requested_at) for row in rows]
    assert found == [
        ("team", datetime(2026, 1, 1, tzinfo=UTC), None),
        ("enterprise", datetime(2026, 3, 10, tzinfo=UTC), None),
    ]


def test_python_api_accepts_mappings_and_refuses_floats(engine: Engine) -> None:
    org = {"type": "org", "org": "acme", "plan": "free", "at": "2026-01-01T00:00:00Z"}
    bad = {
        "type": "usage",
        "id": "f",
        "org": "acme",
        "meter": "copilot_messages",
        "quantity": 0.1,
        "at": "2026-01-02T00:00:00Z",
    }
    outcome = ingest(engine, [org, bad])  # type: ignore[list-item]
    assert [(e.line, e.field) for e in outcome.errors] == [(2, "quantity")]
    good = {**bad, "quantity": Decimal("0.1")}
    assert ingest(engine, [org, good]).stored["usage"] == 1  # type: ignore[list-item]


def usage_at(event_id: str, at: str, quantity: Any = 3, meter: str = "copilot_messages") -> str:
    return line(type="usage", id=event_id, org="acme", meter=meter, quantity=quantity, at=at)


AT = "2026-02-10T00:00:00Z"


def test_an_identical_repeat_is_a_duplicate_whatever_its_spelling(engine: Engine) -> None:
    assert ingest(engine, [ORG, usage("e1", 3)]).ok
    copies = [
        usage("e1", '"3.0"'),  # the same quantity, as a decimal string
        usage_at("e1", "2026-02-04T13:00:00+01:00"),  # the same instant, at another offset
        usage("e1", "3.000"),
    ]
    repeated = ingest(engine, copies)
    assert repeated.ok
    assert (repeated.stored["usage"], repeated.duplicates["usage"]) == (0, 3)
    # A copy that differs is refused, and the identical copies with it.
    refused = ingest(engine, [*copies, usage("e1", 4)])
    assert [str(error) for error in refused.errors] == [
        "line 4: id: 'e1' was already stored with quantity 3"
    ]
    assert count(engine, UsageEvent) == 1


@pytest.mark.parametrize(
    ("repeat", "difference"),
    [
        (usage("e1", 4), "quantity 3"),
        (usage("e1", 3, meter="runner_minutes"), "meter 'copilot_messages'"),
        (usage_at("e1", "2026-02-05T12:00:00Z"), "at 2026-02-04T12:00:00Z"),
        (
            usage_at("e1", "2026-02-05T12:00:00Z", quantity="2.5", meter="runner_minutes"),
            "meter 'copilot_messages', quantity 3, at 2026-02-04T12:00:00Z",
        ),
    ],
)
def test_a_stored_id_given_again_with_other_content_refuses_the_batch(
    engine: Engine, repeat: str, difference: str
) -> None:
    assert ingest(engine, [ORG, usage("e1", 3)]).ok
    outcome = ingest(engine, [usage("e2"), line(type="seats", org="acme", count=11, at=AT), repeat])
    assert [str(error) for error in outcome.errors] == [
        f"line 3: id: 'e1' was already stored with {difference}"
    ]
    assert outcome.conflicts == outcome.errors
    assert outcome.only_conflicts
    assert outcome.stored == {
        "org": 0,
        "seats": 0,
        "usage": 0,
        "resources": 0,
        "cancel": 0,
        "credit": 0,
    }
    assert count(engine, UsageEvent) == 1  # e2 was not stored either
    assert count(engine, SeatChangeRecord) == 1  # the org's 10 seats only
    with unit_of_work(engine) as session:
        stored = session.exec(select(UsageEvent)).scalars().one()  # type: ignore[call-overload]
    assert (stored.meter, stored.quantity) == ("copilot_messages", Decimal(3))


def test_an_id_repeated_in_the_batch_with_other_content_names_the_first_line(
    engine: Engine,
) -> None:
    outcome = ingest(
        engine,
        [
            ORG,
            usage("e1", 3),
            usage("e1", "3.0"),  # a duplicate of line 2
            usage("e1", 4),
            usage_at("e1", "2026-02-05T12:00:00Z", meter="runner_minutes"),
            usage("e2", 1, org="ghost"),  # another kind of error: the batch is not only conflicts
        ],
    )
    assert [str(error) for error in outcome.errors] == [
        "line 4: id: 'e1' was already given on line 2 with quantity 3",
        "line 5: id: 'e1' was already given on line 2 with meter 'copilot_messages', "
        "at 2026-02-04T12:00:00Z",
        'line 6: org: unknown org \'ghost\' (create it first with a {"type": "org", ...} line)',
    ]
    assert [error.line for error in outcome.conflicts] == [4, 5]
    assert not outcome.only_conflicts
    for model in (Org, OrgPlanChange, SeatChangeRecord, UsageEvent):
        assert count(engine, model) == 0


def test_events_before_the_org_s_first_subscription_are_refused(engine: Engine) -> None:
    # Created on Jan 15, moved to enterprise on Feb 1: the first subscription is Jan 15.
    change = line(type="org", org="acme", plan="enterprise", at="2026-02-01T00:00:00Z")
    assert ingest(engine, [ORG, change, usage_at("e1", "2026-01-20T00:00:00Z")]).ok
    lines = [
        usage_at("e2", "1970-01-01T00:00:00Z"),
        line(type="seats", org="acme", count=4, at="2026-01-15T08:59:59Z"),
        line(type="resources", org="acme", stack="s", count=3, at="2025-12-31T00:00:00Z"),
        line(type="org", org="beta", plan="free", at="2026-02-01T00:00:00Z"),
        line(type="usage", id="b1", org="beta", meter="copilot_messages", quantity=1, at=AT),
        line(
            type="usage",
            id="b2",
            org="beta",
            meter="copilot_messages",
            quantity=1,
            at="2026-01-31T23:59:59Z",
        ),
    ]
    outcome = ingest(engine, lines)
    first = "before the org's first subscription"
    assert [str(error) for error in outcome.errors] == [
        f"line 1: at: 1970-01-01T00:00:00Z is {first} (2026-01-15T09:00:00Z)",
        f"line 2: at: 2026-01-15T08:59:59Z is {first} (2026-01-15T09:00:00Z)",
        f"line 3: at: 2025-12-31T00:00:00Z is {first} (2026-01-15T09:00:00Z)",
        f"line 6: at: 2026-01-31T23:59:59Z is {first} (2026-02-01T00:00:00Z)",  # org of line 4
    ]
    assert not outcome.only_conflicts
    assert count(engine, UsageEvent) == 1
    assert count(engine, Org) == 1


def test_events_more_than_five_minutes_in_the_future_are_refused(engine: Engine) -> None:
    scheduled = line(type="org", org="acme", plan="enterprise", at="2026-06-01T00:00:00Z")
    accepted = ingest(engine, [ORG, usage_at("e1", "2026-03-01T12:04:00Z"), scheduled])
    assert accepted.ok  # 4 minutes of clock skew, and a plan change scheduled for June
    assert accepted.stored == {
        "org": 2,
        "seats": 0,
        "usage": 1,
        "resources": 0,
        "cancel": 0,
        "credit": 0,
    }
    outcome = ingest(
        engine,
        [
            usage_at("e2", "2026-03-01T12:05:00Z"),  # exactly 5 minutes: accepted
            usage_at("e3", "2026-03-01T12:05:01Z"),
            usage_at("e4", "2099-01-01T00:00:00Z"),
            line(type="seats", org="acme", count=12, at="2026-03-02T00:00:00Z"),
            line(type="resources", org="acme", stack="s", count=3, at="2026-03-01T13:00:00Z"),
        ],
    )
    future = "more than 5 minutes in the future (now 2026-03-01T12:00:00Z)"
    assert [str(error) for error in outcome.errors] == [
        f"line 2: at: 2026-03-01T12:05:01Z is {future}",
        f"line 3: at: 2099-01-01T00:00:00Z is {future}",
        f"line 4: at: 2026-03-02T00:00:00Z is {future}",
        f"line 5: at: 2026-03-01T13:00:00Z is {future}",
    ]
    assert count(engine, UsageEvent) == 1


def test_an_id_stored_by_another_ingest_meanwhile_refuses_the_whole_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ingest(engine, [ORG, usage("e1", 3)]).ok
    # The other ingest commits between this one's look-up (which found nothing) and its insert.
    monkeypatch.setattr(StoredUsageLookup, "feed", lambda _self, _records: None)
    with pytest.raises(ConcurrentIngestError, match="1 usage event"):
        ingest(engine, [usage("e2"), usage("e1", 4)])
    assert count(engine, UsageEvent) == 1
