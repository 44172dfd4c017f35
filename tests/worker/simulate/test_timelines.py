"""Timelines through `billing simulate`: the real worker against the emulator, amounts in cents.

Each timeline file beside this module is one customer story; each test states what Stripe must
have invoiced for it, line by line, and what reconciliation concluded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlmodel import Session, create_engine, select

from models.reconciliation import Reconciliation, ReconciliationLine
from tests.conftest import REDIS_TEST_URL
from worker.cli import main
from worker.simulate.simulation import default_span, simulate
from worker.simulate.timeline import parse_timeline

HERE = Path(__file__).parent


def run(name: str, tmp_path: Path) -> dict[str, Any]:
    timeline = parse_timeline((HERE / f"{name}.jsonl").read_text().splitlines())
    span = default_span(timeline)
    assert span is not None
    return simulate(timeline, start_at=span[0], end_at=span[1], workdir=tmp_path)


def invoices(result: dict[str, Any], org: str) -> list[dict[str, Any]]:
    return list(result["orgs"][org]["invoices"])


def amounts(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    """The invoice's non-zero lines as (component, cents)."""
    return [(line["component"], line["amount"]) for line in invoice["lines"] if line["amount"]]


def verdict(invoice: dict[str, Any]) -> tuple[str, int, int]:
    rec = invoice["reconciliation"]
    return rec["status"], rec["expected_total"], rec["stripe_total"]


def test_seat_increase_mid_term_is_prorated_on_the_next_monthly_invoice(tmp_path: Path) -> None:
    result = run("seat_increase", tmp_path)
    first, february = invoices(result, "acme")
    assert (first["billing_reason"], first["total"], amounts(first)) == (
        "subscription_create",
        9000,
        [("seats", 9000)],
    )
    assert verdict(first) == ("matched", 9000, 9000)
    # 2 seats × $9 × (365 d − 14 d 10 h) / 365 d = 1728.94¢ by the ledger; Stripe rounds the
    # credit (−8644.52¢) and the debit (10373.42¢) apart: one cent less, flagged `rounding`.
    assert february["created"] == "2027-02-01T00:00:00Z"
    assert amounts(february) == [
        ("copilot_messages", 400),
        ("seat_proration", -8645),
        ("seat_proration", 10373),
    ]
    assert february["total"] == 2128
    assert verdict(february) == ("rounding", 2129, 2128)
    assert february["status"] == "paid"
    assert not february["held"]


def test_usage_over_the_free_allowance(tmp_path: Path) -> None:
    result = run("overage", tmp_path)
    _, march = invoices(result, "free-co")
    # 30 messages × 2¢, 20 minutes × 0.8¢, 250 resources × 744 h − 150,000 included = 36,000
    # resource-hours × 0.01¢.
    assert amounts(march) == [
        ("copilot_messages", 60),
        ("runner_minutes", 16),
        ("iac_resource_hours", 360),
    ]
    iac = next(line for line in march["lines"] if line["component"] == "iac_resource_hours")
    assert iac["quantity"] == 186_000
    assert (march["total"], march["status"]) == (436, "paid")
    assert verdict(march) == ("matched", 436, 436)


def test_zenaton_minimum_tops_up_a_small_month_and_not_a_busy_one(tmp_path: Path) -> None:
    result = run("zenaton_minimum", tmp_path)
    _, small = invoices(result, "small")
    assert amounts(small) == [("execution_time", 130), ("minimum", 870)]
    assert (small["total"], small["status"], small["held"]) == (1000, "paid", False)
    assert verdict(small) == ("matched", 1000, 1000)
    _, busy = invoices(result, "busy")
    # Seed 000: busy 30 % of a 31-day month = 223.2 h × 13¢ = $29.02; above the minimum.
    assert amounts(busy) == [("execution_time", 2902)]
    assert verdict(busy) == ("matched", 2902, 2902)


def test_the_top_up_is_a_meter_line_and_goes_to_zero_once_grace_usage_reaches_the_minimum(
    tmp_path: Path,
) -> None:
    result = run("zenaton_topup_meter", tmp_path)
    _, under, under_june = invoices(result, "under")
    assert amounts(under) == [("execution_time", 130), ("minimum", 870)]
    # The top-up meter's line: 870 units at 1¢ (an invoice item would show quantity 1).
    topup = next(line for line in under["lines"] if line["component"] == "minimum")
    assert (topup["quantity"], topup["amount"]) == (870, 870)
    assert verdict(under) == ("matched", 1000, 1000)
    assert amounts(under_june) == [("minimum", 1000)]  # June without usage: topped up to $10
    assert verdict(under_june) == ("matched", 1000, 1000)
    _, crossing, _ = invoices(result, "crossing")
    # The close (00:05) sent 870; c-2 arrives at 00:30, in the grace period: 93.33 h × 13¢ =
    # $12.13 is over the minimum, so the next push sends 0 and the draft finalizes without it.
    assert amounts(crossing) == [("execution_time", 1213)]
    topup = next(line for line in crossing["lines"] if line["component"] == "minimum")
    assert (topup["quantity"], topup["amount"]) == (0, 0)
    assert verdict(crossing) == ("matched", 1213, 1213)
    assert (crossing["status"], crossing["held"]) == ("paid", False)


def test_an_invoice_item_added_by_hand_holds_the_draft(tmp_path: Path) -> None:
    result = run("hand_edit", tmp_path)
    _, may = invoices(result, "acme")
    assert amounts(may) == [("copilot_messages", 200), ("other", 500)]
    assert (may["total"], may["status"], may["held"]) == (700, "draft", True)
    assert verdict(may) == ("unexpected_in_stripe", 200, 700)


def test_late_usage_is_billed_on_the_right_invoice_or_as_an_adjustment(tmp_path: Path) -> None:
    result = run("late_arrival", tmp_path)
    _, june, july = invoices(result, "late-co")
    # l-2 (40 messages) arrives at 00:30 on 1 July, inside Stripe's grace period but after the
    # 00:05 push: the sweep at 00:30 finds June's draft short of the ledger and holds it, the
    # 01:05 push reports it, the sweep at 01:15 finds the draft right and releases it.
    assert amounts(june) == [("copilot_messages", 180)]
    assert verdict(june) == ("matched", 180, 180)
    assert june["status"] == "paid"
    # l-3 (25 messages) arrives on 4 July, after June's invoice was final: an adjustment on
    # July's invoice, 25 × 2¢.
    assert amounts(july) == [("adjustment", 50)]
    assert verdict(july) == ("matched", 50, 50)


def test_late_usage_41_days_late_is_an_adjustment_two_invoices_later(tmp_path: Path) -> None:
    result = run("late_usage_41_days", tmp_path)
    _, june, july, august = invoices(result, "slow")
    assert amounts(june) == [("copilot_messages", 100)]  # 100 messages, 50 over × 2¢
    assert amounts(july) == []
    # s-2 (25 messages of 30 June) arrives on 10 August, after July's invoice was drafted:
    # an adjustment of 25 × 2¢ on August's invoice, expected from the ledger.
    assert amounts(august) == [("adjustment", 50)]
    assert verdict(august) == ("matched", 50, 50)
    assert august["status"] == "paid"


def test_late_zenaton_usage_corrects_the_minimum_on_the_next_invoice(tmp_path: Path) -> None:
    result = run("zenaton_late_minimum", tmp_path)
    _, may_small, june_small = invoices(result, "small")
    assert amounts(may_small) == [("execution_time", 130), ("minimum", 870)]
    # 5 late hours (+65¢) leave May under the minimum: the top-up drops by 65¢, net 0, and
    # June (no usage) is topped up to $10.
    assert amounts(june_small) == [("minimum", 1000), ("adjustment", 65), ("adjustment", -65)]
    assert verdict(june_small) == ("matched", 1000, 1000)
    assert not june_small["held"]
    _, may_grown, june_grown = invoices(result, "grown")
    assert amounts(may_grown) == [("execution_time", 130), ("minimum", 870)]
    # 100 late hours: May is 110 h × 13¢ = $14.30, above the minimum: +$13.00 of usage and
    # the $8.70 top-up taken back, +$4.30 in all.
    assert amounts(june_grown) == [("minimum", 1000), ("adjustment", 1300), ("adjustment", -870)]
    assert verdict(june_grown) == ("matched", 1430, 1430)
    assert june_grown["status"] == "paid"


def test_a_customer_balance_applied_by_hand_is_flagged(tmp_path: Path) -> None:
    result = run("customer_balance_by_hand", tmp_path)
    _, may = invoices(result, "acme")
    assert amounts(may) == [("copilot_messages", 200)]
    # The lines match the ledger, but the customer pays 50¢ of the 200¢ the ledger bills.
    assert (may["total"], may["amount_due"]) == (200, 50)
    assert verdict(may) == ("unexpected_in_stripe", 200, 50)


def test_a_seat_step_that_reached_stripe_after_the_draft_is_expected_on_the_next_invoice(
    tmp_path: Path,
) -> None:
    result = run("seat_step_after_draft", tmp_path)
    _, february, march = invoices(result, "edge")
    # 10 → 12 seats at 23:58 on 31 January; the coalescing window closes after Stripe drafted
    # February's invoice, so the proration is swept into March's.
    assert amounts(february) == []
    assert verdict(february) == ("matched", 0, 0)
    assert amounts(march) == [("seat_proration", -8236), ("seat_proration", 9883)]
    assert verdict(march) == ("matched", 1647, 1647)
    rules = _timing_rules(tmp_path)
    assert {(invoice, rule) for invoice, rule in rules} == {
        (february["id"], "seat_step_reached_stripe_after_draft"),
        (march["id"], "seat_step_reached_stripe_after_draft"),
    }


def _timing_rules(workdir: Path) -> list[tuple[str, str]]:
    """(invoice, rule) of every timing rule in the latest reconciliation of each invoice."""
    engine = create_engine(f"sqlite:///{workdir / 'billing-simulation.db'}")
    found = []
    with Session(engine) as session:
        rows = session.exec(select(Reconciliation).order_by(Reconciliation.id)).all()
        latest = {row.stripe_invoice_id: row.id for row in rows}
        for invoice_id, rec_id in latest.items():
            lines = session.exec(
                select(ReconciliationLine).where(ReconciliationLine.reconciliation_id == rec_id)
            ).all()
            for line in lines:
                expected = json.loads(line.trace_json).get("expected") or {}
                found.extend((invoice_id, r["rule"]) for r in expected.get("timing_rules", []))
    engine.dispose()
    return found


def test_refused_lines_are_listed_and_the_run_goes_on(tmp_path: Path) -> None:
    result = run("refused", tmp_path)
    refused = {row["line"]: row["error"] for row in result["refused"]}
    assert sorted(refused) == [3, 4, 5, 6, 7]
    assert refused[3].startswith("not a JSON object")
    assert "meter" in refused[4]
    assert "bananas" in refused[4]
    assert "nobody" in refused[5]
    assert "{customer:ghost}" in refused[6]
    assert refused[7].startswith("received_at:")
    _, august = invoices(result, "acme")
    assert amounts(august) == [("copilot_messages", 20)]  # r-1 alone: 10 over × 2¢


def test_cli_json_follows_spec_11(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(HERE / "overage.jsonl"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {
        "start",
        "end",
        "refused",
        "orgs",
        "stripe_requests",
        "meter_events_sent",
    }
    assert (result["start"], result["end"]) == ("2027-03-01T00:00:00Z", "2027-04-06T11:00:00Z")
    org = result["orgs"]["free-co"]
    assert set(org["subscription"]) == {
        "status",
        "book",
        "plan",
        "interval",
        "cancel_at",
        "scheduled_change",
    }
    invoice = org["invoices"][1]
    assert set(invoice) == {
        "id",
        "status",
        "billing_reason",
        "period_start",
        "period_end",
        "created",
        "total",
        "amount_due",
        "held",
        "lines",
        "reconciliation",
    }
    assert set(invoice["lines"][0]) == {"component", "description", "quantity", "amount"}
    assert set(invoice["reconciliation"]) == {"status", "expected_total", "stripe_total"}
    assert result["stripe_requests"] > 0
    assert result["meter_events_sent"] > 0


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(HERE / "overage.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "free-co" in out
    assert "$4.36" in out
    assert "matched" in out


def test_a_seat_decrease_takes_effect_at_the_annual_renewal(tmp_path: Path) -> None:
    result = run("seat_decrease_at_renewal", tmp_path)
    bills = invoices(result, "shrink")
    assert [inv["created"][:10] for inv in bills][:2] == ["2027-01-01", "2027-02-01"]
    assert amounts(bills[0]) == [("seats", 9000)]
    # No mid-term credit: every monthly invoice until the renewal is zero.
    assert all(inv["total"] == 0 for inv in bills[1:-1])
    renewal = bills[-1]
    assert renewal["created"] == "2028-01-01T00:00:00Z"
    # 7 seats renewed (the high-water mark of 10 ended with the term), and December's 20
    # messages over the allowance.
    assert amounts(renewal) == [("copilot_messages", 40), ("seats", 6300)]
    assert verdict(renewal) == ("matched", 6340, 6340)
    assert not renewal["held"]


@pytest.mark.integration
def test_the_same_timeline_on_real_celery_workers(tmp_path: Path) -> None:
    """With a Redis, the jobs run on Celery worker processes (reading the simulated clock
    from Redis) and Stripe bills exactly the same."""
    url = REDIS_TEST_URL.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(url).flushdb()
    timeline = parse_timeline((HERE / "overage.jsonl").read_text().splitlines())
    span = default_span(timeline)
    assert span is not None
    result = simulate(timeline, start_at=span[0], end_at=span[1], redis_url=url, workdir=tmp_path)
    _, march = invoices(result, "free-co")
    assert amounts(march) == [
        ("copilot_messages", 60),
        ("runner_minutes", 16),
        ("iac_resource_hours", 360),
    ]
    assert verdict(march) == ("matched", 436, 436)


@pytest.fixture(scope="module")
def credits_timeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """zenaton_credits.jsonl, run once for the tests of its two orgs."""
    return run("zenaton_credits", tmp_path_factory.mktemp("credits"))


def test_zenaton_credit_pays_usage_and_the_minimum_then_runs_out(
    credits_timeline: dict[str, Any],
) -> None:
    result = credits_timeline
    first, may, june, july = invoices(result, "credited")
    assert (first["billing_reason"], first["total"], amounts(first)) == (
        "subscription_create",
        0,
        [],
    )
    # May: 100 h × 13¢ = $13.00, all paid by the $30 credit ($17.00 left).
    assert amounts(may) == [("execution_time", 1300), ("credit", -1300)]
    assert (may["total"], may["status"], may["held"]) == (0, "paid", False)
    assert verdict(may) == ("matched", 0, 0)
    # June: 200 h = $26.00; the last $17.00 of the credit pays part of it.
    assert amounts(june) == [("execution_time", 2600), ("credit", -1700)]
    assert (june["total"], june["status"]) == (900, "paid")
    assert verdict(june) == ("matched", 900, 900)
    # July: 10 h = $1.30 under the $10 minimum, no credit left: topped up, nothing credited.
    assert amounts(july) == [("execution_time", 130), ("minimum", 870)]
    assert (july["total"], july["status"]) == (1000, "paid")
    assert verdict(july) == ("matched", 1000, 1000)
    credit_lines = [line for line in may["lines"] if line["component"] == "credit"]
    assert credit_lines[0]["description"] == "Credit applied to usage for 2027-05"


def test_a_credit_pays_the_minimum_and_lapses_part_used(credits_timeline: dict[str, Any]) -> None:
    result = credits_timeline
    _, may, june, july = invoices(result, "expiring")
    # $25 granted on 3 May, expiring on 1 July. May: 5 h = 65¢, minimum top-up 935¢: the
    # $10.00 usage charge (the minimum before credits) is credited in full.
    assert amounts(may) == [("execution_time", 65), ("minimum", 935), ("credit", -1000)]
    assert verdict(may) == ("matched", 0, 0)
    # June (ends on the expiry, so still covered): no usage, the $10 minimum, credited.
    assert amounts(june) == [("minimum", 1000), ("credit", -1000)]
    assert verdict(june) == ("matched", 0, 0)
    # July ends after the expiry: the $5.00 left has lapsed, the minimum is billed.
    assert amounts(july) == [("execution_time", 130), ("minimum", 870)]
    assert (july["total"], july["status"]) == (1000, "paid")
    assert verdict(july) == ("matched", 1000, 1000)


def test_late_usage_of_a_credited_month_is_billed_in_full_and_the_credit_goes_on(
    credits_timeline: dict[str, Any],
) -> None:
    _, may, june, july = invoices(credits_timeline, "late")
    assert amounts(may) == [("execution_time", 130), ("minimum", 870), ("credit", -1000)]
    assert verdict(may) == ("matched", 0, 0)
    # 100 hours of May arrive on 3 June, after May's invoice is final: May's credit stays as
    # applied, the late usage (+$13.00, the $8.70 top-up taken back) is an adjustment, and
    # June's own charge (the $10 minimum) is credited from the $20 left.
    assert amounts(june) == [
        ("minimum", 1000),  # the top-up meter's line, before the invoice items
        ("adjustment", 1300),
        ("adjustment", -870),
        ("credit", -1000),
    ]
    assert verdict(june) == ("matched", 430, 430)
    # July: the last $10 of the credit.
    assert amounts(july) == [("minimum", 1000), ("credit", -1000)]
    assert verdict(july) == ("matched", 0, 0)
