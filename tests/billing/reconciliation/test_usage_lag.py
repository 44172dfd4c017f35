"""Drafts judged only once Stripe's meters show the usage totals we pushed, end to end against an
emulator that aggregates meter events an hour after it receives them (SPEC §4.1).

No test waits: the hour passing is modelled by moving the emulator's receipt stamps back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.reconciliation.match import LineComparison, Status
from billing.reconciliation.reconciler import HoldPolicy
from billing.reconciliation.usage_lag import LaggingMeter, usage_lag
from billing.usage.push import UsagePusher
from models.push_records import UsagePeriod
from models.reconciliation import Reconciliation
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.billing.reconciliation.test_reconciler_emulator import (
    FEB_1,
    GRACE,
    JAN_20,
    Org,
    World,
    build_world,
)

HOUR = 3600.0


@pytest.fixture
def lag_world(engine: Engine) -> Iterator[World]:
    with EmulatorServer(EmulatorConfig(meter_aggregation_delay_seconds=HOUR)) as emulator:
        yield build_world(emulator, engine)


def _pushed_and_drafted(world: World, org_id: str) -> tuple[Org, dict]:
    """The org's January usage pushed by the real pusher (recorded in usage_periods), then
    Stripe's cycle draft at February 1st, before Stripe aggregated the push."""
    org = world.org(org_id)
    org.advance(JAN_20)
    UsagePusher(world.engine, world.gateway).push_org(org_id, JAN_20)
    with Session(world.engine) as session:
        sent = session.exec(
            select(UsagePeriod.sent_quantity).where(
                UsagePeriod.org_id == org_id, UsagePeriod.meter == "copilot_messages"
            )
        ).one()
    assert sent == Decimal(800)
    org.advance(FEB_1 + timedelta(seconds=10))
    return org, org.invoice("subscription_cycle", FEB_1)


def _aggregated(world: World) -> None:
    """As if the emulator's aggregation delay had passed for every event received so far."""
    with world.emulator.state.lock:
        for records in world.emulator.state.store.meter_events.values():
            for record in records:
                record.received_monotonic -= HOUR


def _stored(world: World, reconciliation_id: int) -> Reconciliation:
    with Session(world.engine) as session:
        row = session.get(Reconciliation, reconciliation_id)
        assert row is not None
        return row


def test_a_draft_awaits_the_pushed_usage_then_matches_and_is_never_held(
    lag_world: World,
) -> None:
    org, draft = _pushed_and_drafted(lag_world, "org_lag_ok")
    first = org.reconcile(draft, FEB_1 + timedelta(minutes=1), hold=True)
    assert first.status is Status.AWAITING_USAGE
    assert not first.held
    row = _stored(lag_world, first.reconciliation_id)
    assert (row.status, row.held) == ("awaiting_usage", False)
    assert row.note is not None
    assert "copilot_messages: we sent 800, Stripe shows 0 so far" in row.note
    assert "not held" in row.note
    assert lag_world.client.v1.invoices.retrieve(draft["id"]).auto_advance is True

    _aggregated(lag_world)
    # The sweep picks the draft again (as the re-check task does) and judges it now.
    swept = lag_world.reconciler.sweep(FEB_1 + timedelta(minutes=5), timedelta(days=2))
    (again,) = [o for o in swept.reconciled if o.stripe_invoice_id == draft["id"]]
    assert again.status is Status.MATCHED
    assert not again.held
    copilot = next(line for line in again.lines if line.component == "copilot_messages")
    assert (copilot.stripe_quantity, copilot.stripe_amount) == (800, 600)

    org.advance(FEB_1 + GRACE + timedelta(seconds=10))
    final = org.invoice("subscription_cycle", FEB_1)
    assert (final["status"], final["total"]) == ("paid", 600)
    assert org.reconcile(final, FEB_1 + GRACE).status is Status.MATCHED


def test_past_the_deadline_a_draft_still_missing_usage_is_judged_and_held(
    lag_world: World,
) -> None:
    org, draft = _pushed_and_drafted(lag_world, "org_lag_late")
    waiting = org.reconcile(draft, FEB_1 + timedelta(minutes=19), hold=True)
    assert waiting.status is Status.AWAITING_USAGE
    assert not waiting.held
    # 20 minutes after the period: Stripe still shows none of the 800 messages we sent.
    judged = org.reconcile(draft, FEB_1 + timedelta(minutes=20), hold=True)
    assert judged.status is Status.MISMATCHED
    assert judged.held
    copilot = next(line for line in judged.lines if line.component == "copilot_messages")
    assert (copilot.stripe_quantity, copilot.expected_quantity) == (0, 800)
    org.advance(FEB_1 + 3 * GRACE)
    after = org.invoice("subscription_cycle", FEB_1)
    assert (after["status"], after["auto_advance"]) == ("draft", False)


def test_a_draft_we_held_stays_held_while_awaiting_and_is_released_once_right(
    lag_world: World,
) -> None:
    org, draft = _pushed_and_drafted(lag_world, "org_lag_held")
    held = org.reconcile(draft, FEB_1 + timedelta(minutes=25), hold=True)  # past the deadline
    assert (held.status, held.held) == (Status.MISMATCHED, True)
    # A correction pushed later lags again: not judged, and the hold is left as it was.
    lag_world.reconciler.usage_deadline = timedelta(minutes=40)
    waiting = org.reconcile(draft, FEB_1 + timedelta(minutes=30), hold=True)
    assert (waiting.status, waiting.held) == (Status.AWAITING_USAGE, True)
    assert lag_world.client.v1.invoices.retrieve(draft["id"]).auto_advance is False
    _aggregated(lag_world)
    released = org.reconcile(draft, FEB_1 + timedelta(minutes=31), hold=True)
    assert (released.status, released.held) == (Status.MATCHED, False)
    assert lag_world.client.v1.invoices.retrieve(draft["id"]).auto_advance is True


def test_awaiting_usage_can_never_hold_a_draft() -> None:
    with pytest.raises(ValueError, match="never held"):
        HoldPolicy.parse("mismatched,awaiting_usage")
    assert not HoldPolicy().holds(Status.AWAITING_USAGE)


def _line(component: str, expected: int, shown: int | None) -> LineComparison:
    return (
        LineComparison(component, Status.MISMATCHED, Decimal(expected), None, None, None, "", {})
        if shown is None
        else LineComparison(
            component, Status.MATCHED, Decimal(expected), None, Decimal(shown), None, "", {}
        )
    )


def test_only_meters_whose_draft_differs_are_read_and_a_lag_waits_until_the_deadline() -> None:
    reads: list[str] = []
    stripe_values = {"mtr_msg": Decimal(300), "mtr_run": Decimal(50)}

    def read(meter_id: str) -> Decimal:
        reads.append(meter_id)
        return stripe_values[meter_id]

    deadline = FEB_1 + timedelta(minutes=20)
    lag = usage_lag(
        {"copilot_messages": Decimal(800), "runner_minutes": Decimal(50)},
        [_line("copilot_messages", 800, 300), _line("runner_minutes", 50, 50)],
        {"copilot_messages": "mtr_msg", "runner_minutes": "mtr_run"},
        read,
        deadline,
    )
    assert reads == ["mtr_msg"]  # the runner line shows the ledger's 50: nothing to confirm
    assert lag.meters == (LaggingMeter("copilot_messages", Decimal(800), Decimal(300)),)
    assert lag.waiting(deadline - timedelta(seconds=1))
    assert not lag.waiting(deadline)
    assert "we sent 800, Stripe shows 300 so far" in lag.note()
    settled = usage_lag(
        {"copilot_messages": Decimal(800)},
        [_line("copilot_messages", 800, None)],  # no line on the draft yet
        {"copilot_messages": "mtr_msg"},
        lambda _meter_id: Decimal(800),
        deadline,
    )
    assert not settled.meters
    assert not settled.waiting(FEB_1)


def test_a_top_up_meter_behind_its_pushed_value_waits_like_a_meter() -> None:
    """The minimum's line is judged on amounts: its top-up meter (billing.usage.topup) is read
    only when the draft's amount differs, and waits while Stripe has not counted the push."""
    reads: list[str] = []
    held = {"mtr_topup": Decimal(0)}

    def read(meter_id: str) -> Decimal:
        reads.append(meter_id)
        return held[meter_id]

    def minimum(expected: int, shown: int) -> LineComparison:
        return LineComparison("minimum", Status.MISMATCHED, None, expected, None, shown, "", {})

    deadline = FEB_1 + timedelta(minutes=20)
    ids = {"minimum": "mtr_topup"}
    lag = usage_lag({"minimum": Decimal(870)}, [minimum(870, 0)], ids, read, deadline)
    assert lag.meters == (LaggingMeter("minimum", Decimal(870), Decimal(0)),)
    assert lag.waiting(FEB_1)
    reads.clear()
    right = usage_lag({"minimum": Decimal(870)}, [minimum(870, 870)], ids, read, deadline)
    assert (right.meters, reads) == ((), [])  # the draft already bills 870¢: nothing read
