"""The expected invoice as a pure function: ledger data in (plain dataclasses), lines out.

Amounts are written out in cents; each case says where its figure comes from.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.core.meters import Meter
from billing.core.periods import Period, month_period
from billing.ledger.expected_invoice import OrgLedger, PlanSegment, compute_expected_invoice
from billing.pricing.book_cache import BookCache
from billing.pricing.proration import SeatChange

TEAM_START = datetime(2026, 1, 15, 9, tzinfo=UTC)
LEAP_TERM = datetime(2024, 1, 15, tzinfo=UTC)  # its year holds 29 February: 366 days
Q = Decimal

TEAM = OrgLedger(
    org_id="acme",
    plan_segments=(PlanSegment(TEAM_START, "devtools", "team", "year"),),
    seat_changes=(
        SeatChange(TEAM_START, 10),
        SeatChange(datetime(2026, 2, 2, tzinfo=UTC), 6),
        SeatChange(datetime(2026, 2, 3, 10, tzinfo=UTC), 12),
        SeatChange(datetime(2026, 2, 3, 10, 2, tzinfo=UTC), 13),  # same 5-minute window
    ),
    usage={Meter.COPILOT_MESSAGES: Q(700), Meter.RUNNER_MINUTES: Q("1020.5")},
    resource_hours=500,
)


def zenaton(seconds: int) -> OrgLedger:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    return OrgLedger(
        org_id="zen",
        plan_segments=(PlanSegment(start, "zenaton", "payg", "month"),),
        usage={Meter.EXECUTION_TIME: Q(seconds)},
    )


@pytest.mark.parametrize(
    ("ledger", "period", "lines"),
    [
        pytest.param(
            replace(TEAM, usage={}, resource_hours=0),  # January's ledger: no usage yet
            month_period("2026-01"),
            [
                ("seats", Q(10), 9_000),  # 10 seats × $9 for the year, upfront
                ("copilot_messages", Q(0), 0),
                ("runner_minutes", Q(0), 0),
                ("iac_resource_hours", Q(0), 0),
            ],
            id="term-start-upfront-seats",
        ),
        pytest.param(
            TEAM,
            month_period("2026-02"),
            [
                # 3 seats above the high-water mark of 10, from 10:02 for 29,890,680 s of the
                # term's 31,536,000: 2,700 × 29,890,680 / 31,536,000 = 2,559.12
                ("seat_proration", Q(3), 2_559),
                ("copilot_messages", Q(700), 400),  # 200 over the 500 included × 2¢
                ("runner_minutes", Q("1020.5"), 16),  # 20.5 × 0.8¢ = 16.4
                ("iac_resource_hours", Q(500), 0),  # within 1,500,000 included
            ],
            id="coalesced-step-and-overage",
        ),
        pytest.param(
            OrgLedger(
                org_id="leap",
                plan_segments=(PlanSegment(LEAP_TERM, "devtools", "team", "year"),),
                seat_changes=(
                    SeatChange(LEAP_TERM, 10),
                    SeatChange(datetime(2024, 7, 15, tzinfo=UTC), 11),
                ),
                usage={Meter.RUNNER_MINUTES: Q("1000.625")},
            ),
            month_period("2024-07"),
            [
                ("seat_proration", Q(1), 452),  # 900 × 184 / 366 days = 452.46
                ("copilot_messages", Q(0), 0),
                ("runner_minutes", Q("1000.625"), 1),  # 0.625 × 0.8¢ = 0.5: half up
                ("iac_resource_hours", Q(0), 0),
            ],
            id="leap-year-term-and-rounding-half-up",
        ),
        pytest.param(
            zenaton(36_000),
            month_period("2026-10"),
            [
                ("execution_time", Q(36_000), 130),  # 10 hours × 13¢
                ("minimum", Q(1), 870),  # topped up to the $10 minimum
            ],
            id="minimum-top-up",
        ),
        pytest.param(
            zenaton(803_520),
            month_period("2026-10"),
            [("execution_time", Q(803_520), 2_902)],  # 223.2 hours × 13¢ = 2,901.6
            id="above-the-minimum",
        ),
    ],
)
def test_lines(ledger: OrgLedger, period: Period, lines: list[tuple[str, Decimal, int]]) -> None:
    invoice = compute_expected_invoice(ledger, period, BookCache())
    assert invoice is not None
    assert [(line.code, line.quantity, line.amount) for line in invoice.lines] == lines
    assert invoice.total_amount == sum(amount for _, _, amount in lines)


def test_no_invoice_before_the_first_plan() -> None:
    assert compute_expected_invoice(TEAM, month_period("2025-12"), BookCache()) is None


def test_the_terms_at_the_end_of_the_period_price_the_usage() -> None:
    upgraded = OrgLedger(
        org_id="acme",
        plan_segments=(
            PlanSegment(datetime(2026, 3, 1, tzinfo=UTC), "devtools", "free", "month"),
            PlanSegment(datetime(2026, 3, 20, tzinfo=UTC), "devtools", "team", "year"),
        ),
        seat_changes=(SeatChange(datetime(2026, 3, 1, tzinfo=UTC), 2),),
        usage={Meter.COPILOT_MESSAGES: Q(600)},
    )
    invoice = compute_expected_invoice(upgraded, month_period("2026-03"), BookCache())
    assert invoice is not None
    assert invoice.plan == "team"
    line = invoice.line("copilot_messages")
    assert line is not None
    assert line.amount == 200  # Team includes 500 (Free would bill 550 × 2¢ = 1,100)
    seats = invoice.line("seats")
    assert seats is not None
    assert (seats.quantity, seats.amount) == (Q(2), 1_800)  # the Team term starts on 20 March
