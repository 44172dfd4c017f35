"""Cancellation in the emulator, to the cent: cancel now (with and without prorations and a final
invoice), cancel at the seat term end, withdrawal, re-subscription, and idempotent replays.

The world is the project's: 10 annual seats at $9/seat (900¢ each, 9,000¢ a term) and monthly
metered messages on a graduated price whose first 50 messages are free and the rest 2¢, on one
mixed-interval subscription anchored at 2026-03-10 12:00 UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorServer
from tests.stripe_emulator.conftest import DAY, Builders

EVENT = "cancel_messages"
SEAT_UNIT = 900
SEATS = 10


def ts(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp())  # type: ignore[misc]


MAR_10 = ts(2026, 3, 10, 12)
MAR_25 = ts(2026, 3, 25, 12)
APR_10 = ts(2026, 4, 10, 12)
SEP_10 = ts(2026, 9, 10, 12)
FEB_10_2027 = ts(2027, 2, 10, 12)
MAR_10_2027 = ts(2027, 3, 10, 12)
HOUR = 3600


def unused_credit(t: int) -> int:
    """−9,000¢ × (term_end − t)/(term_end − term_start), rounded once, half up — written out
    independently of the emulator."""
    exact = Decimal(SEAT_UNIT * SEATS) * (MAR_10_2027 - t) / (MAR_10_2027 - MAR_10)
    return -int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class World:
    client: stripe.StripeClient
    build: Builders
    seat_price: str
    message_price: str

    def subscribe(self, at: int = MAR_10) -> tuple[str, str, Any]:
        """A clock at ``at``, a customer on it, and the mixed-interval subscription."""
        clock, customer = self.build.clock_customer(at)
        sub = self.create(customer)
        return clock, customer, sub

    def create(self, customer: str) -> Any:
        return self.client.v1.subscriptions.create(
            {
                "customer": customer,
                "items": [
                    {"price": self.seat_price, "quantity": SEATS},
                    {"price": self.message_price},
                ],
            }
        )

    def advance(self, clock: str, target: int) -> None:
        """Move the clock in steps Stripe accepts (at most two monthly intervals at a time)."""
        now = self.client.v1.test_helpers.test_clocks.retrieve(clock).frozen_time
        while now < target:
            now = min(target, now + 59 * DAY)
            self.client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": now})

    def messages(self, customer: str, count: int, at: int) -> None:
        self.build.usage(EVENT, customer, count, at)

    def invoices(self, customer: str) -> list[Any]:
        found = self.client.v1.invoices.list({"customer": customer, "limit": 100}).data
        return sorted(found, key=lambda i: (i.created, i.id))

    def sub_invoices(self, customer: str, sub_id: str) -> list[Any]:
        return [
            i
            for i in self.invoices(customer)
            if i.parent and i.parent.subscription_details.subscription == sub_id
        ]


@pytest.fixture(scope="module")
def world(client: stripe.StripeClient, build: Builders) -> World:
    meter = build.meter(EVENT)
    message_price = build.metered_price(
        meter, [{"up_to": 50, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 2}]
    )
    return World(client, build, build.seat_price(SEAT_UNIT, "year"), message_price)


def amounts(invoice: Any, keep: Callable[[Any], bool] = lambda _line: True) -> list[int]:
    return sorted(line.amount for line in invoice.lines.data if keep(line))


def is_proration(line: Any) -> bool:
    return bool(line.parent.subscription_item_details.proration)


# ----- cancel now --------------------------------------------------------------------------------


def test_cancel_now_on_sep_10_credits_exactly_the_unused_seat_time(world: World) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, SEP_10)
    before = world.sub_invoices(customer, sub.id)
    canceled = world.client.v1.subscriptions.cancel(sub.id, {"invoice_now": True, "prorate": True})

    assert canceled.status == "canceled"
    assert canceled.canceled_at == canceled.ended_at == SEP_10
    final = world.client.v1.invoices.retrieve(canceled.latest_invoice)
    assert final.id not in {i.id for i in before}
    assert final.billing_reason == "subscription_cycle"
    assert final.status == "draft"
    # 181 of 365 days left: −9000 × 15,638,400 / 31,536,000 = −4463.01… → −4463
    assert unused_credit(SEP_10) == -4463
    credits = [line for line in final.lines.data if is_proration(line)]
    assert [c.amount for c in credits] == [-4463]
    assert credits[0].period.start == SEP_10
    assert credits[0].period.end == MAR_10_2027
    first_invoice = before[0]
    assert credits[0].parent.subscription_item_details.proration_details.credited_items.invoice == (
        first_invoice.id
    )
    # the Aug 10 → Sep 10 usage was billed by the cycle invoice at the same instant
    metered = [line for line in final.lines.data if not is_proration(line)]
    assert [(m.amount, m.period.start, m.period.end) for m in metered] == [(0, SEP_10, SEP_10)]
    assert final.total == -4463


def test_cancel_now_mid_period_bills_usage_with_the_whole_free_tier(world: World) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    world.messages(customer, 300, MAR_25 - HOUR)  # 50 free, 250 × 2¢ = 500¢
    canceled = world.client.v1.subscriptions.cancel(sub.id, {"invoice_now": True, "prorate": True})
    final = world.client.v1.invoices.retrieve(canceled.latest_invoice)
    usage = [line for line in final.lines.data if not is_proration(line)]
    assert [(u.amount, u.quantity, u.period.start, u.period.end) for u in usage] == [
        (500, 300, MAR_10, MAR_25)
    ]
    assert unused_credit(MAR_25) == -8630  # 350 of 365 days: −8630.137 → −8630
    assert amounts(final, is_proration) == [-8630]
    assert (final.period_start, final.period_end) == (MAR_10, MAR_25)

    # Usage sent within the grace period for [Mar 10, Mar 25) still lands on the draft.
    world.advance(clock, MAR_25 + HOUR // 2)
    world.messages(customer, 10, MAR_25 - 60)
    world.advance(clock, MAR_25 + 2 * HOUR)
    final = world.client.v1.invoices.retrieve(final.id)
    assert final.status == "paid"
    assert final.total == 520 - 8630
    assert final.amount_due == 0
    assert world.client.v1.customers.retrieve(customer).balance == 520 - 8630


def test_a_canceled_subscription_never_renews_nor_bills_later_usage(world: World) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    world.client.v1.subscriptions.cancel(sub.id, {"invoice_now": True})
    count = len(world.invoices(customer))
    world.advance(clock, MAR_25 + DAY)
    world.messages(customer, 5000, MAR_25 + DAY)
    world.advance(clock, MAR_10_2027 + DAY)
    assert len(world.invoices(customer)) == count
    assert world.client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError, match="already canceled"):
        world.client.v1.subscriptions.cancel(sub.id, {"invoice_now": True})


def test_without_invoice_now_the_credit_waits_for_the_customers_next_invoice(
    world: World,
) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    canceled = world.client.v1.subscriptions.cancel(sub.id, {"prorate": True})
    assert canceled.latest_invoice == sub.latest_invoice  # no final invoice
    pending = world.client.v1.invoice_items.list({"customer": customer, "pending": True}).data
    assert [p.amount for p in pending] == [-8630]
    again = world.create(customer)  # re-subscribes at Mar 25: 9,000¢ upfront, credit swept in
    first = world.client.v1.invoices.retrieve(again.latest_invoice)
    assert first.billing_reason == "subscription_create"
    assert amounts(first) == [-8630, 9000]


def test_without_invoice_now_or_prorate_pending_prorations_are_removed(world: World) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    seat_item = next(i for i in sub.items.data if i.price.id == world.seat_price)
    world.client.v1.subscription_items.update(seat_item.id, {"quantity": SEATS + 2})
    world.client.v1.invoice_items.create({"customer": customer, "amount": 700, "currency": "usd"})
    world.client.v1.subscriptions.cancel(sub.id)
    pending = world.client.v1.invoice_items.list({"customer": customer, "pending": True}).data
    assert [(p.amount, p.proration) for p in pending] == [(700, False)]


def test_a_replayed_cancel_returns_the_first_answer_and_bills_once(
    world: World, emulator: EmulatorServer
) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    options: stripe.RequestOptions = {"idempotency_key": f"lifecycle:cancel:{sub.id}"}
    params: dict[str, Any] = {"invoice_now": True, "prorate": True}
    first = world.client.v1.subscriptions.cancel(sub.id, params, options)  # type: ignore[arg-type]
    second = world.client.v1.subscriptions.cancel(sub.id, params, options)  # type: ignore[arg-type]
    assert second.latest_invoice == first.latest_invoice
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    finals = [i for i in world.sub_invoices(customer, sub.id) if i.id == first.latest_invoice]
    assert len(finals) == 1
    assert len(world.sub_invoices(customer, sub.id)) == 2  # the create invoice and the final one
    deleted = [
        e
        for e in emulator.state.events("customer.subscription.deleted")
        if e["data"]["object"]["id"] == sub.id
    ]
    assert len(deleted) == 1
    with pytest.raises(stripe.IdempotencyError):
        world.client.v1.subscriptions.cancel(sub.id, {"invoice_now": False}, options)


# ----- cancel at the term end ---------------------------------------------------------------


def test_cancel_at_the_anniversary_ends_with_a_usage_invoice_and_no_renewal(
    world: World, emulator: EmulatorServer
) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, SEP_10 + HOUR)
    updated = world.client.v1.subscriptions.update(
        sub.id, {"cancel_at": MAR_10_2027, "proration_behavior": "none"}
    )
    assert updated.status == "active"
    assert updated.cancel_at == MAR_10_2027
    assert updated.canceled_at == SEP_10 + HOUR
    assert updated.ended_at is None
    assert updated.cancel_at_period_end is False
    assert world.client.v1.invoice_items.list({"customer": customer, "pending": True}).data == []

    world.advance(clock, FEB_10_2027 + DAY)
    world.messages(customer, 120, FEB_10_2027 + DAY - HOUR)  # 70 × 2¢
    world.advance(clock, MAR_10_2027 + 2 * HOUR)
    ended = world.client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled"
    assert ended.ended_at == MAR_10_2027
    assert ended.canceled_at == SEP_10 + HOUR
    final = world.client.v1.invoices.retrieve(ended.latest_invoice)
    assert final.billing_reason == "subscription_cycle"
    assert (final.period_start, final.period_end) == (FEB_10_2027, MAR_10_2027)
    assert [(line.amount, line.price_id) for line in _priced(final)] == [
        (140, world.message_price)
    ]  # no seat renewal line
    assert final.status == "paid"
    cycle_ends = [i.period_end for i in world.sub_invoices(customer, sub.id)]
    assert max(cycle_ends) == MAR_10_2027  # nothing after the end
    world.advance(clock, MAR_10_2027 + 70 * DAY)
    assert max(i.period_end for i in world.sub_invoices(customer, sub.id)) == MAR_10_2027

    types = [
        e["type"]
        for e in emulator.state.events()
        if e["type"].startswith("customer.subscription.") and e["data"]["object"]["id"] == sub.id
    ]
    assert types[-1] == "customer.subscription.deleted"
    scheduled = next(
        e
        for e in emulator.state.events("customer.subscription.updated")
        if e["data"]["object"]["id"] == sub.id and "cancel_at" in e["data"]["previous_attributes"]
    )
    assert scheduled["data"]["previous_attributes"]["cancel_at"] is None
    assert scheduled["data"]["object"]["cancel_at"] == MAR_10_2027


def test_withdrawing_cancel_at_renews_the_seats(world: World) -> None:
    clock, _customer, sub = world.subscribe()
    world.advance(clock, SEP_10 + HOUR)
    world.client.v1.subscriptions.update(sub.id, {"cancel_at": MAR_10_2027})
    withdrawn = world.client.v1.subscriptions.update(sub.id, {"cancel_at": ""})
    assert withdrawn.cancel_at is None
    assert withdrawn.canceled_at is None
    world.advance(clock, MAR_10_2027 + 2 * HOUR)
    renewed = world.client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active"
    renewal = world.client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (renewal.period_end, renewal.billing_reason) == (MAR_10_2027, "subscription_cycle")
    seat_lines = [line for line in _priced(renewal) if line.price_id == world.seat_price]
    assert [(s.amount, s.period_start, s.period_end) for s in seat_lines] == [
        (9000, MAR_10_2027, ts(2028, 3, 10, 12))
    ]


def test_cancel_at_period_end_on_mixed_intervals_ends_at_the_first_monthly_end(
    world: World,
) -> None:
    clock, _customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    updated = world.client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    assert (updated.cancel_at, updated.cancel_at_period_end) == (APR_10, True)
    world.advance(clock, APR_10 + 2 * HOUR)
    ended = world.client.v1.subscriptions.retrieve(sub.id)
    assert (ended.status, ended.ended_at) == ("canceled", APR_10)


def test_a_cancel_at_inside_the_period_credits_and_a_later_one_shortens_the_term(
    world: World,
) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    world.client.v1.subscriptions.update(sub.id, {"cancel_at": SEP_10})
    pending = world.client.v1.invoice_items.list({"customer": customer, "pending": True}).data
    assert [p.amount for p in pending] == [unused_credit(SEP_10)]
    _, other, sub2 = world.subscribe()
    cut = ts(2027, 9, 10, 12)  # inside the second term: it is billed to Sep 10 only
    world.client.v1.subscriptions.update(sub2.id, {"cancel_at": cut})
    clock2 = world.client.v1.customers.retrieve(other).test_clock
    world.advance(clock2, MAR_10_2027 + 2 * HOUR)
    renewal = world.client.v1.invoices.retrieve(
        world.client.v1.subscriptions.retrieve(sub2.id).latest_invoice
    )
    seats = [line for line in _priced(renewal) if line.price_id == world.seat_price]
    exact = Decimal(9000) * (cut - MAR_10_2027) / (ts(2028, 3, 10, 12) - MAR_10_2027)
    assert [(s.amount, s.period_end) for s in seats] == [
        (int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)), cut)
    ]
    assert seats[0].amount == 4525  # 184 of the term's 366 days: 9000 × 184 / 366 = 4524.59…


def test_bad_cancel_at_requests_are_refused_and_change_nothing(world: World) -> None:
    clock, _customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    with pytest.raises(stripe.InvalidRequestError, match="future"):
        world.client.v1.subscriptions.update(sub.id, {"cancel_at": MAR_10})
    with pytest.raises(stripe.InvalidRequestError, match="only specify one"):
        world.client.v1.subscriptions.update(
            sub.id, {"cancel_at": MAR_10_2027, "cancel_at_period_end": True}
        )
    unchanged = world.client.v1.subscriptions.retrieve(sub.id)
    assert (unchanged.cancel_at, unchanged.canceled_at) == (None, None)


# ----- re-subscribe ----------------------------------------------------------------------------


def test_resubscribing_after_a_cancel_bills_only_the_new_periods_usage(world: World) -> None:
    clock, customer, sub = world.subscribe()
    world.advance(clock, MAR_25)
    world.messages(customer, 300, MAR_25 - HOUR)
    world.client.v1.subscriptions.cancel(sub.id, {"invoice_now": True, "prorate": True})
    again = world.create(customer)
    assert again.status == "active"
    assert again.id != sub.id
    world.advance(clock, MAR_25 + DAY)
    world.messages(customer, 80, MAR_25 + DAY - HOUR)  # 30 × 2¢ on the new subscription
    world.advance(clock, ts(2026, 4, 25, 12) + 2 * HOUR)
    cycle = [
        i
        for i in world.sub_invoices(customer, again.id)
        if i.billing_reason == "subscription_cycle"
    ]
    assert len(cycle) == 1
    usage = [line for line in _priced(cycle[0]) if line.price_id == world.message_price]
    assert [(u.amount, u.quantity, u.period_start) for u in usage] == [(60, 80, MAR_25)]


@dataclass(frozen=True)
class _Line:
    amount: int
    price_id: str | None
    quantity: int | None
    period_start: int
    period_end: int


def _priced(invoice: Any) -> list[_Line]:
    return [
        _Line(
            line.amount,
            line.pricing.price_details.price if line.pricing else None,
            line.quantity,
            line.period.start,
            line.period.end,
        )
        for line in invoice.lines.data
    ]
