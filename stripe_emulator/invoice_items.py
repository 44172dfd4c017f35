"""Invoice items: pending charges and credits (incl. prorations) and their endpoints.

Pending items are swept into the customer's next invoice: a subscription's invoices take the
customer's pending items that belong to that subscription, to no subscription, or to one that
was canceled.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from stripe_emulator.amounts import line_amount
from stripe_emulator.errors import invalid
from stripe_emulator.forms import (
    Params,
    decimal_str,
    get_bool,
    get_decimal,
    get_dict,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from stripe_emulator.invoice_lines import attach_item, recompute_totals
from stripe_emulator.routing import route
from stripe_emulator.store import Store, created_filter, new_id


def new_invoice_item(
    store: Store,
    *,
    customer_id: str,
    amount: int,
    currency: str,
    description: str | None,
    period: tuple[int, int],
    price: dict[str, Any] | None = None,
    quantity: Decimal = Decimal(1),
    unit_amount_decimal: Decimal | None = None,
    subscription_id: str | None = None,
    subscription_item_id: str | None = None,
    proration: bool = False,
    credited_items: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    now = store.customer_now(customer_id)
    parent = None
    if subscription_id is not None:
        parent = {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            },
        }
    pricing = None
    if price is not None:
        unit = unit_amount_decimal
        if unit is None:
            unit = Decimal(amount) / quantity if quantity else Decimal(0)
        pricing = {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": decimal_str(unit.quantize(Decimal("1e-12"))),
        }
    item = {
        "id": new_id("ii"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "date": now,
        "description": description,
        "discountable": not proration,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": metadata or {},
        "net_amount": amount,
        "parent": parent,
        "period": {"end": period[1], "start": period[0]},
        "pricing": pricing,
        "proration": proration,
        "proration_details": {"credited_items": credited_items},
        "quantity": int(quantity),
        "quantity_decimal": decimal_str(quantity),
        "tax_rates": [],
        "test_clock": store.customer_clock(customer_id),
    }
    return store.add(item)


@route("POST", "/v1/invoiceitems")
def create_invoice_item(store: Store, params: Params) -> dict[str, Any]:
    customer_id = req_str(params, "customer")
    customer = store.get("customer", customer_id, "customer")
    pricing = get_dict(params, "pricing")
    price_id = get_str(params, "price") or get_str(pricing, "price")
    price = store.get("price", price_id, "pricing[price]") if price_id else None
    quantity = get_decimal(params, "quantity") or Decimal(1)
    amount = get_int(params, "amount")
    unit_dec = get_decimal(params, "unit_amount_decimal")
    if unit_dec is None and get_int(params, "unit_amount") is not None:
        unit_dec = Decimal(get_int(params, "unit_amount") or 0)
    if sum(x is not None for x in (amount, price, unit_dec)) != 1:
        raise invalid(
            "Specify exactly one of amount, pricing[price] or unit_amount_decimal.", "amount"
        )
    currency = (get_str(params, "currency") or (price or {}).get("currency") or "usd").lower()
    if amount is None:
        if price is not None:
            amount = line_amount(price, quantity)
        else:
            assert unit_dec is not None
            amount = line_amount({"unit_amount_decimal": str(unit_dec)}, quantity)
    subscription_id = get_str(params, "subscription")
    if subscription_id is not None:
        store.get("subscription", subscription_id, "subscription")
    period = get_dict(params, "period")
    now = store.customer_now(customer_id)
    start = get_int(period, "start", param="period[start]") or now
    end = get_int(period, "end", param="period[end]") or start
    item = new_invoice_item(
        store,
        customer_id=customer["id"],
        amount=amount,
        currency=currency,
        description=get_str(params, "description"),
        period=(start, end),
        price=price,
        quantity=quantity,
        unit_amount_decimal=unit_dec,
        subscription_id=subscription_id,
        metadata=merge_metadata({}, params),
    )
    invoice_id = get_str(params, "invoice")
    if invoice_id is not None:
        invoice = store.get("invoice", invoice_id, "invoice")
        if invoice["status"] != "draft":
            raise invalid("Invoice items can only be added to draft invoices.", "invoice")
        attach_item(store, invoice, item)
        recompute_totals(invoice)
    return store.render(item, get_list(params, "expand"))


@route("GET", "/v1/invoiceitems/{id}")
def retrieve_invoice_item(store: Store, params: Params, item_id: str) -> dict[str, Any]:
    return store.render(store.get("invoiceitem", item_id), get_list(params, "expand"))


@route("POST", "/v1/invoiceitems/{id}")
def update_invoice_item(store: Store, params: Params, item_id: str) -> dict[str, Any]:
    item = store.get("invoiceitem", item_id)
    if item["invoice"] is not None:
        raise invalid("Only pending invoice items can be updated.", "id")
    if "description" in params:
        item["description"] = get_str(params, "description")
    if "amount" in params:
        item["amount"] = item["net_amount"] = get_int(params, "amount")
    item["metadata"] = merge_metadata(item["metadata"], params)
    return store.render(item, [])


@route("DELETE", "/v1/invoiceitems/{id}")
def delete_invoice_item(store: Store, _params: Params, item_id: str) -> dict[str, Any]:
    item = store.get("invoiceitem", item_id)
    if item["invoice"] is not None:
        raise invalid("Invoice items attached to an invoice cannot be deleted.", "id")
    item["deleted"] = True
    return {"id": item_id, "object": "invoiceitem", "deleted": True}


@route("GET", "/v1/invoiceitems")
def list_invoice_items(store: Store, params: Params) -> dict[str, Any]:
    customer = get_str(params, "customer")
    invoice = get_str(params, "invoice")
    pending = get_bool(params, "pending")
    created = created_filter(params)
    items = [
        i
        for i in store.table("invoiceitem").values()
        if not i.get("deleted")
        and customer in (None, i["customer"])
        and invoice in (None, i["invoice"])
        and (pending is None or (i["invoice"] is None) == pending)
        and created(i["date"])
    ]
    return store.list_response("/v1/invoiceitems", items, params)


def pending_items(
    store: Store, customer_id: str, subscription_id: str | None
) -> list[dict[str, Any]]:
    """Pending items swept into an invoice: the customer's items that belong to no other live
    subscription.  Items left pending by a canceled subscription "remain pending and can be
    billed on another invoice for the customer" (stripe-python 16.1.0, cancel docstring)."""
    out = []
    subscriptions = store.table("subscription")
    for item in store.table("invoiceitem").values():
        if item.get("deleted") or item["invoice"] is not None or item["customer"] != customer_id:
            continue
        parent = item["parent"]
        owner = parent["subscription_details"]["subscription"] if parent else None
        ended = owner is not None and subscriptions.get(owner, {}).get("status") == "canceled"
        if owner is None or owner == subscription_id or ended:
            out.append(item)
    return out
