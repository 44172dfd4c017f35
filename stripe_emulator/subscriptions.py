"""Subscriptions and subscription items: creation, quantity and price changes, prorations.

Prorations (flexible billing mode) follow Stripe's documented example: a change at time ``t``
inside an item's period ``[s, e)`` yields a *credit* line for the old quantity's unused time
(``−amount(old) × (e−t)/(e−s)``, "Unused time on …") and a *debit* line for the new quantity's
remaining time (``+amount(new) × (e−t)/(e−s)``, "Remaining time on …"), each rounded once, half
up (see ``amounts``), so $10 → $20 halfway nets −500 + 1000 = +500 cents.  Credits carry
``proration_details.credited_items`` pointing at the invoice line that billed the old quantity.
``create_prorations`` leaves them as pending invoice items; ``always_invoice`` immediately
creates and finalizes a ``subscription_update`` invoice that sweeps them (and the subscription's
other pending items); ``none`` creates nothing.  Metered items are never prorated.

Assumptions: the first invoice (``subscription_create``) bills licensed items in advance, holds
no lines for metered items, and is finalized immediately; ``billing_cycle_anchor`` / trials /
``backdate_start_date`` are not implemented (the anchor is the creation time); items added
later are anchored to the subscription's anchor so that items of equal interval stay aligned;
mixed intervals are refused in classic billing mode.  Cancellation (``DELETE``, ``cancel_at``,
``cancel_at_period_end``) lives in ``cancellation``.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from stripe_emulator import caps
from stripe_emulator.amounts import exact_amount, prorated, round_cents
from stripe_emulator.errors import invalid, missing
from stripe_emulator.forms import (
    Params,
    get_bool,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from stripe_emulator.invoicing import (
    finalize,
    new_invoice,
    new_invoice_item,
    subscription_line,
)
from stripe_emulator.periods import add_interval, fmt_date
from stripe_emulator.routing import route
from stripe_emulator.store import RENDERERS, Store, new_id

BEHAVIORS = ("create_prorations", "always_invoice", "none")


def items_of(store: Store, sub: dict[str, Any]) -> list[dict[str, Any]]:
    table = store.table("subscription_item")
    return [table[i] for i in sub["_items"] if not table[i].get("deleted")]


def product_name(store: Store, price: dict[str, Any]) -> str:
    product = store.table("product").get(price["product"])
    return product["name"] if product else price["product"]


def licensed_description(store: Store, price: dict[str, Any], quantity: int) -> str:
    unit = Decimal(price.get("unit_amount_decimal") or 0) / 100
    interval = price["recurring"]["interval"]
    return f"{quantity} × {product_name(store, price)} (at ${unit:.2f} / {interval})"


def _recurring_price(store: Store, price_id: str | None, param: str) -> dict[str, Any]:
    if price_id is None:
        raise missing(param)
    price = store.get("price", price_id, param)
    if price["recurring"] is None:
        raise invalid(
            f"The price specified ({price_id}) is not recurring; use add_invoice_items.", param
        )
    if not price["active"]:
        raise invalid(f"The price specified ({price_id}) is inactive.", param)
    return price


def _quantity(node: Params, price: dict[str, Any], param: str, default: int | None) -> int | None:
    quantity = get_int(node, "quantity", param=param)
    if price["recurring"]["usage_type"] == "metered":
        if quantity is not None:
            raise invalid("Quantity should not be specified where usage_type is `metered`.", param)
        return None
    if quantity is None:
        return default
    if quantity < 0:
        raise invalid("Quantity must be non-negative.", param)
    return quantity


def _period_containing(anchor: int, price: dict[str, Any], t: int) -> tuple[int, int, int]:
    """Cycle number n and period ``[start, end)`` of the anchored schedule containing ``t``."""
    recurring = price["recurring"]
    n = 1
    start = anchor
    end = add_interval(anchor, recurring["interval"], recurring["interval_count"])
    while end <= t:
        n += 1
        start, end = (
            end,
            add_interval(anchor, recurring["interval"], recurring["interval_count"] * n),
        )
    return n, start, end


def new_item(
    store: Store,
    *,
    sub: dict[str, Any],
    price: dict[str, Any],
    quantity: int | None,
    now: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    cycles, start, end = _period_containing(sub["billing_cycle_anchor"], price, now)
    item = {
        "id": new_id("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": now,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": metadata,
        "price": price["id"],
        "quantity": quantity,
        "subscription": sub["id"],
        "tax_rates": [],
        "_cycles": cycles,
        "_last_billed": None,
    }
    store.add(item)
    sub["_items"].append(item["id"])
    return item


def render_item(store: Store, item: dict[str, Any], _expand: set[str]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}
    out["price"] = store.render(store.get("price", item["price"]), set())
    return out


def render_subscription(store: Store, sub: dict[str, Any], _expand: set[str]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in sub.items() if not k.startswith("_")}
    items = items_of(store, sub)
    out["items"] = {
        "object": "list",
        "data": [render_item(store, i, set()) for i in items],
        "has_more": False,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={sub['id']}",
    }
    return out


RENDERERS["subscription_item"] = render_item
RENDERERS["subscription"] = render_subscription


def licensed_line(
    store: Store, sub: dict[str, Any], item: dict[str, Any], price: dict[str, Any]
) -> dict[str, Any]:
    quantity = Decimal(item["quantity"] or 0)
    return subscription_line(
        subscription_id=sub["id"],
        item_id=item["id"],
        price=price,
        quantity=quantity,
        amount=round_cents(exact_amount(price, quantity)),
        description=licensed_description(store, price, int(quantity)),
        period=(item["current_period_start"], item["current_period_end"]),
    )


def remember_billing(invoice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map subscription item id → credited_items reference for the lines of ``invoice``."""
    out: dict[str, dict[str, Any]] = {}
    for line in invoice["_lines"]:
        details = (line["parent"] or {}).get("subscription_item_details")
        if details and not details["proration"] and not line.get("_metered"):
            out[details["subscription_item"]] = {
                "invoice": invoice["id"],
                "invoice_line_items": [line["id"]],
            }
    return out


def _mark_billed(store: Store, invoice: dict[str, Any]) -> None:
    for item_id, ref in remember_billing(invoice).items():
        store.table("subscription_item")[item_id]["_last_billed"] = ref


@route("POST", "/v1/subscriptions")
def create_subscription(store: Store, params: Params) -> dict[str, Any]:
    customer_id = req_str(params, "customer")
    store.get("customer", customer_id, "customer")
    raw_items = get_list(params, "items")
    if not raw_items:
        raise missing("items")
    mode = get_enum(get_dict(params, "billing_mode"), "type", ("classic", "flexible"), "flexible")
    collection = get_enum(
        params,
        "collection_method",
        ("charge_automatically", "send_invoice"),
        "charge_automatically",
    )
    prices: list[tuple[dict[str, Any], int | None, dict[str, str]]] = []
    for index, node in enumerate(raw_items):
        price = _recurring_price(store, get_str(node, "price"), f"items[{index}][price]")
        quantity = _quantity(node, price, f"items[{index}][quantity]", 1)
        prices.append((price, quantity, merge_metadata({}, node)))
    currencies = {p["currency"] for p, _, _ in prices}
    if len(currencies) > 1:
        raise invalid("All prices on a subscription must have the same currency.", "items")
    intervals = {
        (p["recurring"]["interval"], p["recurring"]["interval_count"]) for p, _, _ in prices
    }
    if len(intervals) > 1 and mode == "classic":
        raise invalid(
            "Mixed intervals on one subscription require billing_mode[type]=flexible.", "items"
        )
    now = store.customer_now(customer_id)
    sub: dict[str, Any] = {
        "id": new_id("sub"),
        "object": "subscription",
        "application": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {
            "flexible": {"proration_discounts": "included"} if mode == "flexible" else None,
            "type": mode,
            "updated_at": now,
        },
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection,
        "created": now,
        "currency": currencies.pop(),
        "customer": customer_id,
        "days_until_due": get_int(params, "days_until_due"),
        "default_payment_method": None,
        "description": get_str(params, "description"),
        "discounts": [],
        "ended_at": None,
        "latest_invoice": None,
        "livemode": False,
        "metadata": merge_metadata({}, params),
        "pending_invoice_item_interval": None,
        "pending_update": None,
        "start_date": now,
        "status": "active",
        "test_clock": store.customer_clock(customer_id),
        "trial_end": None,
        "trial_start": None,
        "_items": [],
    }
    store.add(sub)
    lines = []
    for price, quantity, metadata in prices:
        item = new_item(store, sub=sub, price=price, quantity=quantity, now=now, metadata=metadata)
        if price["recurring"]["usage_type"] == "licensed":
            lines.append(licensed_line(store, sub, item, price))
    store.emit("customer.subscription.created", sub, now)
    invoice = new_invoice(
        store,
        customer_id=customer_id,
        subscription=sub,
        billing_reason="subscription_create",
        lines=lines,
        period=(now, now),
        now=now,
        currency=sub["currency"],
    )
    _mark_billed(store, invoice)
    sub["latest_invoice"] = invoice["id"]
    finalize(store, invoice, now)
    return store.render(sub, get_list(params, "expand"))


def _proration_time(params: Params, item: dict[str, Any], now: int) -> int:
    t = get_int(params, "proration_date")
    if t is None:
        return now
    if not item["current_period_start"] <= t < item["current_period_end"]:
        raise invalid(
            "proration_date must fall within the item's current billing period.", "proration_date"
        )
    return t


def prorate(
    store: Store,
    sub: dict[str, Any],
    item: dict[str, Any],
    change: tuple[dict[str, Any], int, dict[str, Any], int],
    t: int,
) -> list[dict[str, Any]]:
    """Credit/debit pending invoice items for replacing (old price, qty) by (new price, qty)."""
    old_price, old_qty, new_price, new_qty = change
    if old_price["recurring"]["usage_type"] == "metered" or (
        old_price is new_price and old_qty == new_qty
    ):
        return []
    start, end = item["current_period_start"], item["current_period_end"]
    remaining, length = end - t, end - start
    created = []
    for sign, price, qty, label in (
        (-1, old_price, old_qty, "Unused"),
        (1, new_price, new_qty, "Remaining"),
    ):
        if qty <= 0:
            continue
        exact = prorated(exact_amount(price, Decimal(qty)), remaining, length)
        amount = sign * round_cents(exact)
        created.append(
            new_invoice_item(
                store,
                customer_id=sub["customer"],
                amount=amount,
                currency=price["currency"],
                description=(
                    f"{label} time on {qty} × {product_name(store, price)} after {fmt_date(t)}"
                ),
                period=(t, end),
                price=price,
                quantity=Decimal(qty),
                unit_amount_decimal=Decimal(amount) / Decimal(qty),
                subscription_id=sub["id"],
                subscription_item_id=item["id"],
                proration=True,
                credited_items=item["_last_billed"] if sign < 0 else None,
            )
        )
    return created


def invoice_now(
    store: Store, sub: dict[str, Any], now: int, proration_date: int | None
) -> dict[str, Any]:
    invoice = new_invoice(
        store,
        customer_id=sub["customer"],
        subscription=sub,
        billing_reason="subscription_update",
        lines=[],
        period=(now, now),
        now=now,
        currency=sub["currency"],
    )
    invoice["parent"]["subscription_details"]["subscription_proration_date"] = proration_date
    sub["latest_invoice"] = invoice["id"]
    finalize(store, invoice, now)
    return invoice


def apply_item_change(
    store: Store,
    *,
    sub: dict[str, Any],
    node: Params,
    param: str,
    behavior: str,
    params: Params,
    now: int,
) -> None:
    """Apply one ``items[n]`` entry (update, delete or add) with its prorations."""

    def name(key: str) -> str:
        return f"{param}[{key}]" if param else key

    item_id = get_str(node, "id")
    if item_id is None:
        price = _recurring_price(store, get_str(node, "price"), name("price"))
        quantity = _quantity(node, price, name("quantity"), 1)
        item = new_item(
            store,
            sub=sub,
            price=price,
            quantity=quantity,
            now=now,
            metadata=merge_metadata({}, node),
        )
        if behavior != "none" and quantity:
            prorate(
                store, sub, item, (price, 0, price, quantity), _proration_time(params, item, now)
            )
        return
    item = store.get("subscription_item", item_id, name("id"))
    if item["subscription"] != sub["id"]:
        raise invalid(f"Item {item_id} does not belong to this subscription.", name("id"))
    old_price = store.get("price", item["price"])
    old_qty = item["quantity"] or 0
    if get_bool(node, "deleted"):
        if behavior != "none":
            prorate(
                store,
                sub,
                item,
                (old_price, old_qty, old_price, 0),
                _proration_time(params, item, now),
            )
        item["deleted"] = True
        sub["_items"].remove(item_id)
        return
    new_price = old_price
    if get_str(node, "price") and get_str(node, "price") != old_price["id"]:
        new_price = _recurring_price(store, get_str(node, "price"), name("price"))
    quantity = _quantity(node, new_price, name("quantity"), item["quantity"])
    if behavior != "none":
        prorate(
            store,
            sub,
            item,
            (old_price, old_qty, new_price, quantity or 0),
            _proration_time(params, item, now),
        )
    item["price"] = new_price["id"]
    item["quantity"] = quantity
    item["metadata"] = merge_metadata(item["metadata"], node)


def update_items(
    store: Store, sub: dict[str, Any], entries: list[tuple[Params, str]], params: Params
) -> None:
    behavior = get_enum(params, "proration_behavior", BEHAVIORS, "create_prorations")
    assert behavior is not None
    now = store.customer_now(sub["customer"])
    if sub["status"] == "canceled":
        raise invalid("A canceled subscription can only update its metadata.", "subscription")
    invoicing = behavior == "always_invoice" and bool(entries)
    count = caps.admit_item_changes(store, sub, [node for node, _ in entries], invoicing, now)
    before = render_subscription(store, sub, set())["items"]
    for node, param in entries:
        apply_item_change(
            store, sub=sub, node=node, param=param, behavior=behavior, params=params, now=now
        )
    if invoicing:
        invoice_now(store, sub, now, get_int(params, "proration_date") or now)
    count()
    if entries:
        store.emit("customer.subscription.updated", sub, now, {"items": before})


@route("GET", "/v1/subscriptions/{id}")
def retrieve_subscription(store: Store, params: Params, sub_id: str) -> dict[str, Any]:
    return store.render(store.get("subscription", sub_id), get_list(params, "expand"))


@route("POST", "/v1/subscriptions/{id}")
def update_subscription(store: Store, params: Params, sub_id: str) -> dict[str, Any]:
    from stripe_emulator import cancellation  # noqa: PLC0415 - cancellation builds on this module

    sub = store.get("subscription", sub_id)
    raw = get_list(params, "items")
    update_items(store, sub, [(n, f"items[{i}]") for i, n in enumerate(raw)], params)
    previous: dict[str, Any] = {}
    if "metadata" in params:
        previous["metadata"] = dict(sub["metadata"])
        sub["metadata"] = merge_metadata(sub["metadata"], params)
    previous.update(cancellation.schedule(store, sub, params, store.customer_now(sub["customer"])))
    for key in ("description", "collection_method", "days_until_due"):
        if key in params:
            previous[key] = sub[key]
            sub[key] = get_int(params, key) if key == "days_until_due" else get_str(params, key)
    if previous:
        store.emit(
            "customer.subscription.updated", sub, store.customer_now(sub["customer"]), previous
        )
    return store.render(sub, get_list(params, "expand"))


@route("GET", "/v1/subscriptions")
def list_subscriptions(store: Store, params: Params) -> dict[str, Any]:
    customer = get_str(params, "customer")
    status = get_str(params, "status")
    price = get_str(params, "price")
    items = [
        s
        for s in store.table("subscription").values()
        if customer in (None, s["customer"])
        and (
            status == "all"
            or (status is None and s["status"] != "canceled")
            or status == s["status"]
        )
        and (price is None or any(i["price"] == price for i in items_of(store, s)))
    ]
    return store.list_response("/v1/subscriptions", items, params)
