"""SPEC §10's lifecycle through `billing simulate`: upgrades, downgrades at term end and at once,
cancellation now and at term end, a move onto a contract and a re-subscription, each against
the emulator with Stripe's invoices in cents and reconciliation's verdict on every one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.simulate.simulation import default_span, simulate
from worker.simulate.timeline import parse_timeline

HERE = Path(__file__).parent


def run(name: str, tmp_path: Path, end_at: datetime | None = None) -> dict[str, Any]:
    timeline = parse_timeline((HERE / f"{name}.jsonl").read_text().splitlines())
    span = default_span(timeline)
    assert span is not None
    return simulate(timeline, start_at=span[0], end_at=end_at or span[1], workdir=tmp_path)


def summary(result: dict[str, Any], org: str) -> list[tuple[str, str, int, list[tuple[str, int]]]]:
    """Each invoice that bills something, or that starts a subscription: (created, reason,
    total, non-zero lines). Empty monthly invoices of an idle subscription are left out."""
    rows = []
    for invoice in result["orgs"][org]["invoices"]:
        lines = [(line["component"], line["amount"]) for line in invoice["lines"] if line["amount"]]
        if lines or invoice["billing_reason"] == "subscription_create":
            rows.append((invoice["created"], invoice["billing_reason"], invoice["total"], lines))
    return rows


def verdicts(result: dict[str, Any], org: str) -> set[str]:
    """Every invoice's reconciliation status (each must have one)."""
    found = set()
    for invoice in result["orgs"][org]["invoices"]:
        assert invoice["reconciliation"] is not None, invoice["id"]
        assert not invoice["held"], invoice["id"]
        found.add(invoice["reconciliation"]["status"])
    return found


def test_upgrade_free_to_team_is_spec_s_worked_example(tmp_path: Path) -> None:
    result = run("upgrade", tmp_path, end_at=datetime(2027, 4, 10, 14, tzinfo=UTC))
    # SPEC §10: $0 (Free seats), $5.00 (250 × 2¢ on Free to Mar 10 12:00), $90.00 (the Team
    # term from Mar 10 12:00), $12.00 (600 × 2¢ on Team, Mar 10 12:00 → Apr 10 12:00).
    assert summary(result, "acme") == [
        ("2027-03-01T00:00:00Z", "subscription_create", 0, []),
        ("2027-03-10T12:00:00Z", "subscription_cycle", 500, [("copilot_messages", 500)]),
        ("2027-03-10T12:00:00Z", "subscription_create", 9000, [("seats", 9000)]),
        ("2027-04-10T12:00:00Z", "subscription_cycle", 1200, [("copilot_messages", 1200)]),
    ]
    last = result["orgs"]["acme"]["invoices"][-1]
    assert (last["period_start"], last["period_end"]) == (
        "2027-03-10T12:00:00Z",
        "2027-04-10T12:00:00Z",
    )
    assert verdicts(result, "acme") == {"matched"}
    sub = result["orgs"]["acme"]["subscription"]
    assert (sub["status"], sub["plan"], sub["interval"]) == ("active", "team", "year")


def test_cancel_now_credits_unused_seats_and_refuses_later_usage(tmp_path: Path) -> None:
    result = run("cancel_now", tmp_path)
    # 100 messages over Team's 500 × 2¢; 10 seats × $9 × (2028-01-01 − 2027-03-10 12:00) /
    # 365 d = 296.5 d → 7311.29¢ credited, rounded once.
    assert summary(result, "churn") == [
        ("2027-01-01T00:00:00Z", "subscription_create", 9000, [("seats", 9000)]),
        (
            "2027-03-10T12:00:00Z",
            "subscription_cycle",
            -7111,
            [("copilot_messages", 200), ("seat_credit", -7311)],
        ),
        # 25 messages dated before the end, arriving 10 days after it: never dropped, billed
        # on a one-off invoice (25 × 2¢), paid from the balance the credit left.
        ("2027-03-20T09:00:00Z", "manual", 50, [("adjustment", 50)]),
    ]
    assert result["orgs"]["churn"]["invoices"][-1]["amount_due"] == 0
    assert verdicts(result, "churn") == {"matched"}
    assert result["orgs"]["churn"]["subscription"]["status"] == "canceled"
    [refused] = result["refused"]
    assert refused["line"] == 4
    assert "after the org's subscription ended (2027-03-10T12:00:00Z, canceled)" in refused["error"]


def test_downgrade_and_cancel_at_term_end_then_resubscribe(tmp_path: Path) -> None:
    result = run("term_end", tmp_path)
    # The downgrade asked for in June takes effect at the anniversary: the Team year is not
    # renewed, December's usage is billed on Team (100 × 2¢), then Free from 2028-01-01.
    assert summary(result, "down") == [
        ("2027-01-01T00:00:00Z", "subscription_create", 9000, [("seats", 9000)]),
        ("2028-01-01T00:00:00Z", "subscription_cycle", 200, [("copilot_messages", 200)]),
        ("2028-01-01T00:00:00Z", "subscription_create", 0, []),
        ("2028-02-01T00:00:00Z", "subscription_cycle", 60, [("copilot_messages", 60)]),
    ]
    # Canceled at term end: the last period is billed, nothing renews; an org line after the
    # end subscribes it again, anchored at its own instant.
    assert summary(result, "leave") == [
        ("2027-01-01T00:00:00Z", "subscription_create", 3600, [("seats", 3600)]),
        ("2028-01-01T00:00:00Z", "subscription_cycle", 400, [("copilot_messages", 400)]),
        ("2028-01-15T00:00:00Z", "subscription_create", 0, []),
        ("2028-02-15T00:00:00Z", "subscription_cycle", 60, [("copilot_messages", 60)]),
    ]
    assert verdicts(result, "down") == {"matched"}
    assert verdicts(result, "leave") == {"matched"}


def test_a_scheduled_change_and_cancellation_are_shown_before_they_happen(tmp_path: Path) -> None:
    result = run("term_end", tmp_path, end_at=datetime(2027, 6, 16, tzinfo=UTC))
    down = result["orgs"]["down"]["subscription"]
    assert (down["plan"], down["cancel_at"]) == ("team", "2028-01-01T00:00:00Z")
    assert down["scheduled_change"] == {
        "at": "2028-01-01T00:00:00Z",
        "book": "devtools",
        "plan": "free",
        "interval": "month",
    }
    leave = result["orgs"]["leave"]["subscription"]
    assert leave["cancel_at"] == "2028-01-01T00:00:00Z"
    assert leave["scheduled_change"] == {"at": "2028-01-01T00:00:00Z", "cancel": True}


def test_moving_onto_a_contract_mid_term(tmp_path: Path) -> None:
    result = run("contract", tmp_path)
    org = "org_enterprise_example"
    # Team's unused time: 5 × $9 × 266 d / 365 d = 3279.45¢; the contract's 5 seats × $7.50;
    # then 1,000 messages over the contract's 20,000 × 1.5¢ and the $500 minimum's top-up.
    assert summary(result, org) == [
        ("2027-01-01T00:00:00Z", "subscription_create", 4500, [("seats", 4500)]),
        (
            "2027-04-10T00:00:00Z",
            "subscription_cycle",
            -2879,
            [("copilot_messages", 400), ("seat_credit", -3279)],
        ),
        ("2027-04-10T00:00:00Z", "subscription_create", 3750, [("seats", 3750)]),
        (
            "2027-05-10T00:00:00Z",
            "subscription_cycle",
            50000,
            [("copilot_messages", 1500), ("minimum", 48500)],
        ),
    ]
    # The final invoice's negative total became customer balance, applied to the next invoice:
    # expected, because it comes from a credit the ledger expected.
    assert result["orgs"][org]["invoices"][-1]["amount_due"] == 50000 - 2879
    assert verdicts(result, org) == {"matched"}


def test_an_immediate_downgrade_under_the_book_s_policy(tmp_path: Path) -> None:
    result = run("downgrade_now", tmp_path)
    assert summary(result, "shrink") == [
        ("2027-01-01T00:00:00Z", "subscription_create", 9000, [("seats", 9000)]),
        ("2027-03-10T12:00:00Z", "subscription_cycle", -7311, [("seat_credit", -7311)]),
        ("2027-03-10T12:00:00Z", "subscription_create", 0, []),
        ("2027-04-10T12:00:00Z", "subscription_cycle", 60, [("copilot_messages", 60)]),
    ]
    assert result["orgs"]["shrink"]["invoices"][-1]["amount_due"] == 0  # paid by the credit
    assert verdicts(result, "shrink") == {"matched"}


def test_a_seat_change_in_the_last_minute_renews_at_the_right_count(tmp_path: Path) -> None:
    """Issue 13: 12 seats 30 s before the renewal, reaching the worker in time (`on-time`) or
    30 s after Stripe renewed (`late`): both renewals bill 12 seats × $9. The late one is
    corrected on the renewal draft, as its own line, before Stripe finalizes it."""
    result = run("last_minute_seats", tmp_path, end_at=datetime(2028, 1, 1, 2, tzinfo=UTC))
    assert summary(result, "on-time")[-1] == (
        "2028-01-01T00:00:00Z",
        "subscription_cycle",
        10800,
        [("seats", 10800)],
    )
    assert summary(result, "late")[-1] == (
        "2028-01-01T00:00:00Z",
        "subscription_cycle",
        10800,
        [("seats", 9000), ("seats", 1800)],
    )
    renewal = result["orgs"]["late"]["invoices"][-1]
    assert renewal["status"] == "paid"  # finalized with the correction on it
    assert verdicts(result, "on-time") == {"matched"}
    assert verdicts(result, "late") == {"matched"}


def test_an_upgrade_exactly_at_a_period_boundary(tmp_path: Path) -> None:
    """Stripe's cycle invoice at Apr 1 bills March's usage; the cancellation at the same
    instant makes a final invoice of an empty period holding the seat credit alone
    (5 × $9 × 275 d / 365 d = 3390.41¢); the new term is billed upfront."""
    result = run("boundary", tmp_path, end_at=datetime(2027, 4, 1, 2, tzinfo=UTC))
    assert sorted(summary(result, "edge")) == [
        ("2027-01-01T00:00:00Z", "subscription_create", 4500, [("seats", 4500)]),
        ("2027-04-01T00:00:00Z", "subscription_create", 4500, [("seats", 4500)]),
        ("2027-04-01T00:00:00Z", "subscription_cycle", -3390, [("seat_credit", -3390)]),
        ("2027-04-01T00:00:00Z", "subscription_cycle", 400, [("copilot_messages", 400)]),
    ]
    assert verdicts(result, "edge") == {"matched"}
