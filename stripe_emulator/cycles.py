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
"""

from __future__ import annotations

from decimal import Decimal
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
    """Bill and roll over every item of ``sub`` whose period ends at ``at``."""
    due = [i for i in items_of(store, sub) if i["current_period_end"] <= at]
    before = render_subscription(store, sub, set())["items"]
    period_start = min(i["current_period_start"] for i in due)
    lines = metered_lines(store, sub, due, at)
    ending = sub["cancel_at_period_end"]
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
        if recurring["usage_type"] == "licensed" and not ending:
            renewed.append(licensed_line(store, sub, item, price))
    if ending:
        sub["status"] = "canceled"
        sub["canceled_at"] = sub["ended_at"] = at
        store.emit("customer.subscription.deleted", sub, at)
    else:
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


def next_due(store: Store, clock_id: str | None) -> tuple[int, str, dict[str, Any]] | None:
    """The earliest pending effect for objects on ``clock_id`` (None = account clock)."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for sub in store.table("subscription").values():
        if sub["status"] == "canceled" or not _on_clock(store, sub["customer"], clock_id):
            continue
        items = items_of(store, sub)
        if not items:
            continue
        end = min(i["current_period_end"] for i in items)
        if best is None or end < best[0]:
            best = (end, "renew", sub)
    for invoice in store.table("invoice").values():
        at = invoice.get("automatically_finalizes_at")
        if (
            invoice["status"] == "draft"
            and invoice["auto_advance"]
            and at is not None
            and not invoice.get("deleted")
            and _on_clock(store, invoice["customer"], clock_id)
            and (best is None or at < best[0])
        ):
            best = (at, "finalize", invoice)
    return best


def run_due(store: Store, clock_id: str | None, until: int) -> int:
    """Run every effect due up to ``until`` in time order; returns how many ran."""
    ran = 0
    clock = store.table("test_helpers.test_clock").get(clock_id) if clock_id else None
    while True:
        found = next_due(store, clock_id)
        if found is None or found[0] > until:
            return ran
        at, kind, obj = found
        if clock is not None:
            clock["frozen_time"] = max(clock["frozen_time"], at)
        if kind == "renew":
            renew(store, obj, at)
        else:
            finalize(store, obj, at)
        ran += 1


def quantity_of(item: dict[str, Any]) -> Decimal:
    return Decimal(item["quantity"] or 0)
