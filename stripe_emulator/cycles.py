"""Time-based effects: subscription item renewals, draft invoice finalization, in time order.

At the end of an item's period Stripe renews it: metered items are billed in arrears for the
period that ended, licensed items in advance for the new one.  Items of one subscription whose
periods end at the same instant share one ``subscription_cycle`` invoice; with mixed intervals
an item whose period ends at another instant gets its own invoice at that instant (Stripe:
"a single, combined invoice when item-level billing periods align and separate invoices when
billing periods diverge").  Each invoice sweeps the customer's pending invoice items that
belong to this subscription or to none, starts as a draft with ``auto_advance=true`` and
finalizes ``grace_period_seconds`` later (its metered lines are refreshed then).

Assumption: a metered price bills one line per subscription item and period (its amount is the
whole graduated-tier computation, rounded once), not one line per tier; reconcile by summing
lines per ``pricing.price_details.price``.  Events: ``customer.subscription.updated`` then
``invoice.created`` at the period end, ``invoice.finalized`` (and ``invoice.paid``) later.
A subscription with ``cancel_at`` is due then too, and ends there instead of renewing
(``cancellation``).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from stripe_emulator.amounts import line_amount
from stripe_emulator.invoicing import finalize, new_invoice, subscription_line
from stripe_emulator.metering import meter_total
from stripe_emulator.periods import add_interval
from stripe_emulator.store import Store
from stripe_emulator.subscriptions import (
    _mark_billed,
    items_of,
    licensed_line,
    product_name,
    render_subscription,
)


def metered_lines(
    store: Store, sub: dict[str, Any], items: list[dict[str, Any]], end: int
) -> list[dict[str, Any]]:
    """Arrears lines for the metered ``items`` over ``[current_period_start, end)``."""
    lines = []
    for item in items:
        price = store.get("price", item["price"])
        if price["recurring"]["usage_type"] != "metered":
            continue
        start = item["current_period_start"]
        meter_id = price["recurring"]["meter"]
        quantity = meter_total(store, sub["customer"], meter_id, start, end)
        line = subscription_line(
            subscription_id=sub["id"],
            item_id=item["id"],
            price=price,
            quantity=quantity,
            amount=line_amount(price, quantity),
            description=f"{product_name(store, price)} (usage)",
            period=(start, end),
        )
        line["_metered"] = {"price": price["id"], "meter": meter_id}
        lines.append(line)
    return lines


def renew(store: Store, sub: dict[str, Any], at: int) -> dict[str, Any]:
    """Bill and roll over every item of ``sub`` whose period ends at ``at``; at its
    ``cancel_at`` the subscription ends instead (``cancellation``)."""
    from stripe_emulator import cancellation  # noqa: PLC0415 - cancellation builds on this module

    if sub["cancel_at"] is not None and at >= sub["cancel_at"]:
        return cancellation.end_at_cancel_at(store, sub, at)
    due = [i for i in items_of(store, sub) if i["current_period_end"] <= at]
    before = render_subscription(store, sub, set())["items"]
    period_start = min(i["current_period_start"] for i in due)
    lines = metered_lines(store, sub, due, at)
    renewed = []
    for item in due:
        price = store.get("price", item["price"])
        recurring = price["recurring"]
        item["_cycles"] += 1
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] = add_interval(
            sub["billing_cycle_anchor"],
            recurring["interval"],
            recurring["interval_count"] * item["_cycles"],
        )
        cut = cancellation.shorten_to_cancel_at(store, sub, item, price)
        if cut is not None:
            renewed.append(cut)
        elif recurring["usage_type"] == "licensed":
            renewed.append(licensed_line(store, sub, item, price))
    store.emit("customer.subscription.updated", sub, at, {"items": before})
    invoice = new_invoice(
        store,
        customer_id=sub["customer"],
        subscription=sub,
        billing_reason="subscription_cycle",
        lines=lines + renewed,
        period=(period_start, at),
        now=at,
        currency=sub["currency"],
    )
    _mark_billed(store, invoice)
    sub["latest_invoice"] = invoice["id"]
    return invoice


def _on_clock(store: Store, customer_id: str, clock_id: str | None) -> bool:
    return store.customer_clock(customer_id) == clock_id


def run_due(store: Store, clock_id: str | None, until: int) -> int:
    """Run every effect due up to ``until`` in time order; returns how many ran.

    One pass over the subscriptions and invoices builds a queue of due effects ordered by
    time (a renewal before a finalization at the same instant, then creation order);
    running an effect queues the ones it creates (the draft it finalizes later, the item's
    next period end). Popped effects are checked again, since an earlier effect may have
    changed them.
    """
    ran = 0
    clock = store.table("test_helpers.test_clock").get(clock_id) if clock_id else None
    queue: list[tuple[int, int, int, str, str]] = []
    order = itertools.count()

    def queue_subscription(sub: dict[str, Any]) -> None:
        end = _renewal_at(store, sub, clock_id)
        if end is not None and end <= until:
            heapq.heappush(queue, (end, 0, next(order), "renew", sub["id"]))

    def queue_invoice(invoice: dict[str, Any]) -> None:
        at = _finalization_at(store, invoice, clock_id)
        if at is not None and at <= until:
            heapq.heappush(queue, (at, 1, next(order), "finalize", invoice["id"]))

    for sub in list(store.table("subscription").values()):
        queue_subscription(sub)
    for invoice in list(store.table("invoice").values()):
        queue_invoice(invoice)
    while queue:
        at, _, _, kind, object_id = heapq.heappop(queue)
        if kind == "renew":
            sub = store.table("subscription")[object_id]
            if _renewal_at(store, sub, clock_id) != at:
                continue  # changed since it was queued
        else:
            invoice = store.table("invoice")[object_id]
            if _finalization_at(store, invoice, clock_id) != at:
                continue
        if clock is not None:
            clock["frozen_time"] = max(clock["frozen_time"], at)
        if kind == "renew":
            drafted = renew(store, sub, at)
            queue_invoice(drafted)
            queue_subscription(sub)
        else:
            finalize(store, invoice, at)
        ran += 1
    return ran


def due_at(store: Store, clock_id: str | None) -> list[int]:
    """Every instant at which a renewal or a draft's finalization is due on ``clock_id``."""
    times = [_renewal_at(store, sub, clock_id) for sub in store.table("subscription").values()]
    times += [_finalization_at(store, inv, clock_id) for inv in store.table("invoice").values()]
    return sorted({t for t in times if t is not None})


def _renewal_at(store: Store, sub: dict[str, Any], clock_id: str | None) -> int | None:
    if sub["status"] == "canceled" or not _on_clock(store, sub["customer"], clock_id):
        return None
    ends = [i["current_period_end"] for i in items_of(store, sub)]
    if sub["cancel_at"] is not None:
        ends.append(sub["cancel_at"])
    return min(ends) if ends else None


def _finalization_at(store: Store, invoice: dict[str, Any], clock_id: str | None) -> int | None:
    at = invoice.get("automatically_finalizes_at")
    if (
        invoice["status"] != "draft"
        or not invoice["auto_advance"]
        or at is None
        or invoice.get("deleted")
        or not _on_clock(store, invoice["customer"], clock_id)
    ):
        return None
    return int(at)
