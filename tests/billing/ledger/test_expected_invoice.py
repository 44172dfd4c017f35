"""Expected invoices from the ledger, per org and for a whole period, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from billing.core.periods import month_period
from billing.ledger.expected_invoice import ExpectedInvoice, UnknownOrgError
from billing.ledger.ingest import Ingestor
from billing.ledger.queries import expected_invoice, expected_invoices_for_period
from models.db import unit_of_work

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def ev(**fields: Any) -> str:
    return json.dumps(fields)


def load(engine: Engine, *lines: str) -> None:
    with unit_of_work(engine) as session:
        outcome = Ingestor(session).ingest(list(lines), NOW)
    assert outcome.ok, outcome.errors


def preview(engine: Engine, org: str, period: str) -> ExpectedInvoice:
    with unit_of_work(engine) as session:
        return expected_invoice(session, org, month_period(period))


def amounts(invoice: ExpectedInvoice) -> list[tuple[str, int | str, int]]:
    return [
        (
            line.code,
            int(line.quantity) if line.quantity == int(line.quantity) else str(line.quantity),
            line.amount,
        )
        for line in invoice.lines
    ]


TEAM_MID_MONTH = [
    # A term starting mid-month: the upfront charge falls in January only.
    ev(type="org", org="acme", plan="team", seats=10, at="2026-01-15T09:00:00Z"),
    # A decrease followed by an increase: charged only above the high-water mark of 10.
    ev(type="seats", org="acme", count=6, at="2026-02-02T00:00:00Z"),
    ev(type="seats", org="acme", count=12, at="2026-02-03T10:00:00Z"),
    ev(type="seats", org="acme", count=13, at="2026-02-03T10:02:00Z"),  # same 5-minute window
    ev(type="seats", org="acme", count=9, at="2026-06-01T00:00:00Z"),
    ev(
        type="usage",
        id="m1",
        org="acme",
        meter="copilot_messages",
        quantity=700,
        at="2026-02-04T12:00:00Z",
    ),
    ev(
        type="usage",
        id="r1",
        org="acme",
        meter="runner_minutes",
        quantity=1_020.5,
        at="2026-02-28T23:59:59Z",
    ),
    ev(
        type="usage",
        id="r2",
        org="acme",
        meter="runner_minutes",
        quantity=5,
        at="2026-03-01T00:00:00Z",
    ),
    # The seed's EKS cluster: 50 resources for 10 hours = 500 resource-hours.
    ev(type="resources", org="acme", stack="eks", count=50, at="2026-02-05T00:00:00Z"),
    ev(type="resources", org="acme", stack="eks", count=0, at="2026-02-05T10:00:00Z"),
]


@pytest.mark.parametrize(
    ("period", "expected", "total"),
    [
        (
            "2026-01",
            [
                ("seats", 10, 9_000),
                ("copilot_messages", 0, 0),
                ("runner_minutes", 0, 0),
                ("iac_resource_hours", 0, 0),
            ],
            9_000,
        ),
        (
            "2026-02",
            [
                # 3 seats above the HWM from 10:02, 29,890,680 s of 31,536,000: 2559.12
                ("seat_proration", 3, 2_559),
                ("copilot_messages", 700, 400),
                ("runner_minutes", "1020.5", 16),  # 20.5 × 0.8 = 16.4
                ("iac_resource_hours", 500, 0),
            ],
            2_975,
        ),
        (
            "2027-01",
            # Renewal on 15 January: the count at renewal (9), no more high-water mark.
            [
                ("seats", 9, 8_100),
                ("copilot_messages", 0, 0),
                ("runner_minutes", 0, 0),
                ("iac_resource_hours", 0, 0),
            ],
            8_100,
        ),
    ],
)
def test_team_org_month_by_month(
    engine: Engine, period: str, expected: list[tuple[str, int | str, int]], total: int
) -> None:
    load(engine, *TEAM_MID_MONTH)
    invoice = preview(engine, "acme", period)
    assert amounts(invoice) == expected
    assert invoice.total_amount == total


def test_proration_line_explains_itself(engine: Engine) -> None:
    load(engine, *TEAM_MID_MONTH)
    line = preview(engine, "acme", "2026-02").line("seat_proration")
    assert line is not None
    assert (line.from_quantity, line.to_quantity) == (10, 13)
    assert line.proration_at == datetime(2026, 2, 3, 10, 2, tzinfo=UTC)
    assert line.period_end == datetime(2027, 1, 15, 9, tzinfo=UTC)


def test_resource_hours_carry_forward_and_overage(engine: Engine) -> None:
    load(
        engine,
        ev(type="org", org="free1", plan="free", at="2026-03-01T00:00:00Z"),
        # 250 resources from 20 March, held through April (30 days): 180,000 resource-hours.
        ev(type="resources", org="free1", stack="prod", count=250, at="2026-03-20T00:00:00Z"),
        ev(type="resources", org="free1", stack="dev", count=50, at="2026-04-10T00:30:00Z"),
        ev(type="resources", org="free1", stack="dev", count=0, at="2026-04-10T10:30:00Z"),
    )
    line = preview(engine, "free1", "2026-04").line("iac_resource_hours")
    assert line is not None
    assert (line.quantity, line.billable, line.amount) == (180_550, 30_550, 306)  # 305.5 -> 306


def test_zenaton_minimum_commitment_tops_up_usage(engine: Engine) -> None:
    load(
        engine,
        ev(type="org", org="zen", book="zenaton", plan="payg", at="2026-01-01T00:00:00Z"),
        ev(type="org", org="zen_busy", book="zenaton", plan="payg", at="2026-01-01T00:00:00Z"),
        ev(
            type="usage",
            id="t1",
            org="zen",
            meter="execution_time",
            quantity=3_600,
            at="2026-01-05T00:00:00Z",
        ),
        # An agent busy 30 % of a 31-day month: $29.02 (seed 000).
        ev(
            type="usage",
            id="t2",
            org="zen_busy",
            meter="execution_time",
            quantity=803_520,
            at="2026-01-05T00:00:00Z",
        ),
    )
    assert amounts(preview(engine, "zen", "2026-01")) == [
        ("execution_time", 3_600, 13),
        ("minimum", 1, 987),
    ]
    assert amounts(preview(engine, "zen_busy", "2026-01")) == [("execution_time", 803_520, 2_902)]


def test_contract_overrides_apply(engine: Engine) -> None:
    load(
        engine,
        ev(
            type="org",
            org="org_enterprise_example",
            plan="enterprise",
            seats=100,
            at="2026-01-01T00:00:00Z",
        ),
        ev(
            type="usage",
            id="c1",
            org="org_enterprise_example",
            meter="copilot_messages",
            quantity=20_100,
            at="2026-01-02T00:00:00Z",
        ),
    )
    invoice = preview(engine, "org_enterprise_example", "2026-01")
    assert amounts(invoice) == [
        ("seats", 100, 75_000),
        ("copilot_messages", 20_100, 150),
        ("runner_minutes", 0, 0),
        ("iac_resource_hours", 0, 0),
        ("minimum", 1, 49_850),  # on the usage lines only, not on the seats
    ]


def test_plan_change_mid_month_uses_the_terms_at_the_end_of_the_period(engine: Engine) -> None:
    load(
        engine,
        ev(type="org", org="up", plan="free", at="2026-01-01T00:00:00Z"),
        ev(
            type="usage",
            id="u1",
            org="up",
            meter="copilot_messages",
            quantity=600,
            at="2026-02-02T00:00:00Z",
        ),
        ev(type="org", org="up", plan="team", seats=4, at="2026-02-10T00:00:00Z"),
    )
    assert amounts(preview(engine, "up", "2026-02")) == [
        ("seats", 4, 3_600),
        ("copilot_messages", 600, 200),  # team allowance: 500
        ("runner_minutes", 0, 0),
        ("iac_resource_hours", 0, 0),
    ]
    assert amounts(preview(engine, "up", "2026-01"))[0] == ("copilot_messages", 0, 0)


def test_unknown_org_or_org_created_after_the_period(engine: Engine) -> None:
    load(engine, ev(type="org", org="late", plan="free", at="2026-05-01T00:00:00Z"))
    with pytest.raises(UnknownOrgError, match="unknown org 'ghost'"):
        preview(engine, "ghost", "2026-04")
    with pytest.raises(UnknownOrgError, match="no subscription"):
        preview(engine, "late", "2026-04")


def test_every_org_at_once_matches_one_by_one(engine: Engine) -> None:
    load(
        engine,
        *TEAM_MID_MONTH,
        ev(type="org", org="free1", plan="free", at="2026-01-01T00:00:00Z"),
        ev(type="resources", org="free1", stack="prod", count=250, at="2026-01-20T00:00:00Z"),
        ev(type="org", org="zen", book="zenaton", plan="payg", at="2026-01-01T00:00:00Z"),
        ev(type="org", org="later", plan="free", at="2026-03-01T00:00:00Z"),
    )
    period = month_period("2026-02")
    with unit_of_work(engine) as session:
        everyone = {
            invoice.org_id: invoice for invoice in expected_invoices_for_period(session, period)
        }
        one_by_one = {
            org: expected_invoice(session, org, period) for org in ("acme", "free1", "zen")
        }
    assert everyone == one_by_one
    assert everyone["free1"].line("iac_resource_hours").quantity == 250 * 28 * 24  # type: ignore[union-attr]
