"""Invoices and invoice items: lines, totals, finalization, payment, and their endpoints.

Assumptions: invoice ``lines`` are included by default (first 10, ``has_more`` and the
``/v1/invoices/{id}/lines`` url), ``expand[]=lines`` is accepted and changes nothing; an
invoice item created from a bare ``amount`` has ``pricing=null`` (no inline price is invented);
while an invoice is a draft its metered lines are recomputed from the meter at finalization
("During finalization, Stripe updates the invoice to reflect the latest quantity"); a negative
total leaves ``amount_due=0`` and credits the customer's balance, and a customer credit balance
is applied to the next finalized invoice; payments are simulated (see ``EmulatorConfig.auto_pay``);
``POST /v1/invoices`` defaults to ``pending_invoice_items_behavior=exclude``.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from stripe_emulator.amounts import line_amount
from stripe_emulator.errors import invalid, missing
from stripe_emulator.forms import (
    Params,
    decimal_str,
    get_bool,
    get_decimal,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from stripe_emulator.metering import meter_total
from stripe_emulator.routing import route
from stripe_emulator.store import RENDERERS, Store, created_filter, new_id

LINES_SHOWN = 10

# ----- invoice items ------------------------------------------------------------------------


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
    """Pending items swept into an invoice: the customer's items that belong to no other
    subscription."""
    out = []
    for item in store.table("invoiceitem").values():
        if item.get("deleted") or item["invoice"] is not None or item["customer"] != customer_id:
            continue
        parent = item["parent"]
        owner = parent["subscription_details"]["subscription"] if parent else None
        if owner is None or owner == subscription_id:
            out.append(item)
    return out


# ----- lines ----------------------------------------------------------------------------------


def base_line(
    amount: int, currency: str, description: str | None, period: tuple[int, int]
) -> dict[str, Any]:
    return {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "parent": None,
        "period": {"end": period[1], "start": period[0]},
        "pretax_credit_amounts": [],
        "pricing": None,
        "quantity": None,
        "quantity_decimal": None,
        "subtotal": amount,
        "taxes": [],
    }


def subscription_line(
    *,
    subscription_id: str,
    item_id: str,
    price: dict[str, Any],
    quantity: Decimal,
    amount: int,
    description: str,
    period: tuple[int, int],
) -> dict[str, Any]:
    line = base_line(amount, price["currency"], description, period)
    unit = price.get("unit_amount_decimal")
    if unit is None:  # tiered: the average unit amount of this line
        unit = (
            decimal_str((Decimal(amount) / quantity).quantize(Decimal("1e-12")))
            if quantity
            else "0"
        )
    line["parent"] = {
        "type": "subscription_item_details",
        "invoice_item_details": None,
        "subscription_item_details": {
            "invoice_item": None,
            "proration": False,
            "proration_details": {"credited_items": None},
            "subscription": subscription_id,
            "subscription_item": item_id,
        },
    }
    line["pricing"] = {
        "price_details": {"price": price["id"], "product": price["product"]},
        "type": "price_details",
        "unit_amount_decimal": unit,
    }
    line["quantity"] = int(quantity)
    line["quantity_decimal"] = decimal_str(quantity)
    return line


def attach_item(_store: Store, invoice: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    line = base_line(
        item["amount"],
        item["currency"],
        item["description"],
        (item["period"]["start"], item["period"]["end"]),
    )
    parent = item["parent"]
    if parent is not None and parent["subscription_details"]["subscription_item"] is not None:
        details = parent["subscription_details"]
        line["parent"] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": item["id"],
                "proration": item["proration"],
                "proration_details": copy.deepcopy(item["proration_details"]),
                "subscription": details["subscription"],
                "subscription_item": details["subscription_item"],
            },
        }
    else:
        line["parent"] = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": item["proration"],
                "proration_details": copy.deepcopy(item["proration_details"]),
                "subscription": parent["subscription_details"]["subscription"] if parent else None,
            },
            "subscription_item_details": None,
        }
    line["pricing"] = copy.deepcopy(item["pricing"])
    line["quantity"] = item["quantity"]
    line["quantity_decimal"] = item["quantity_decimal"]
    line["metadata"] = dict(item["metadata"])
    line["discountable"] = item["discountable"]
    line["invoice"] = invoice["id"]
    item["invoice"] = invoice["id"]
    invoice["_lines"].append(line)
    return line


# ----- invoices -------------------------------------------------------------------------------


def new_invoice(
    store: Store,
    *,
    customer_id: str,
    subscription: dict[str, Any] | None,
    billing_reason: str,
    lines: list[dict[str, Any]],
    period: tuple[int, int],
    now: int,
    currency: str,
    sweep: bool = True,
    auto_advance: bool = True,
) -> dict[str, Any]:
    """Create a draft invoice from ``lines`` plus (when ``sweep``) the pending invoice items."""
    customer = store.get("customer", customer_id)
    grace = store.config.grace_period_seconds if store.config is not None else 3600
    invoice: dict[str, Any] = {
        "id": new_id("in"),
        "object": "invoice",
        "account_country": "US",
        "account_name": "Stripe Emulator",
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "automatically_finalizes_at": now + grace if auto_advance else None,
        "billing_reason": billing_reason,
        "collection_method": (subscription or {}).get("collection_method", "charge_automatically"),
        "created": now,
        "currency": currency,
        "customer": customer_id,
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period[1],
        "period_start": period[0],
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "shipping_cost": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": customer["test_clock"],
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "_lines": [],
    }
    if subscription is not None:
        invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
                "subscription_proration_date": None,
            },
        }
    for line in lines:
        line["invoice"] = invoice["id"]
        invoice["_lines"].append(line)
    if sweep:
        for item in pending_items(store, customer_id, subscription["id"] if subscription else None):
            attach_item(store, invoice, item)
    recompute_totals(invoice)
    store.add(invoice)
    store.emit("invoice.created", invoice, now)
    return invoice


def recompute_totals(invoice: dict[str, Any]) -> None:
    subtotal = sum(line["amount"] for line in invoice["_lines"])
    invoice["subtotal"] = invoice["subtotal_excluding_tax"] = subtotal
    invoice["total"] = invoice["total_excluding_tax"] = subtotal
    if invoice["status"] == "draft":
        invoice["amount_due"] = max(subtotal, 0)
        invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]


def refresh_metered_lines(store: Store, invoice: dict[str, Any]) -> None:
    for line in invoice["_lines"]:
        metered = line.get("_metered")
        if not metered:
            continue
        price = store.get("price", metered["price"])
        quantity = meter_total(
            store,
            invoice["customer"],
            metered["meter"],
            line["period"]["start"],
            line["period"]["end"],
        )
        amount = line_amount(price, quantity)
        line["amount"] = line["subtotal"] = amount
        line["quantity"] = int(quantity)
        line["quantity_decimal"] = decimal_str(quantity)
        if price.get("unit_amount_decimal") is None:
            unit = (
                (Decimal(amount) / quantity).quantize(Decimal("1e-12")) if quantity else Decimal(0)
            )
            line["pricing"]["unit_amount_decimal"] = decimal_str(unit)
    recompute_totals(invoice)


def finalize(store: Store, invoice: dict[str, Any], now: int) -> None:
    if invoice["status"] != "draft":
        raise invalid(
            f"This invoice is already {invoice['status']}.", "invoice", "invoice_not_editable"
        )
    refresh_metered_lines(store, invoice)
    customer = store.get("customer", invoice["customer"])
    balance = customer["balance"]
    invoice["starting_balance"] = balance
    due = invoice["total"] + balance
    invoice["amount_due"] = max(due, 0)
    customer["balance"] = min(due, 0)
    invoice["ending_balance"] = customer["balance"]
    invoice["amount_remaining"] = invoice["amount_due"]
    invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice["status"] = "open"
    invoice["automatically_finalizes_at"] = None
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/emulator/{invoice['id']}"
    store.emit("invoice.finalized", invoice, now)
    auto_pay = store.config.auto_pay if store.config is not None else True
    if invoice["amount_due"] == 0 or (
        auto_pay and invoice["collection_method"] == "charge_automatically"
    ):
        mark_paid(store, invoice, now)


def mark_paid(store: Store, invoice: dict[str, Any], now: int) -> None:
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["attempted"] = invoice["amount_due"] > 0
    invoice["attempt_count"] = 1 if invoice["amount_due"] > 0 else 0
    invoice["status"] = "paid"
    invoice["status_transitions"]["paid_at"] = now
    store.emit("invoice.paid", invoice, now)


def render_invoice(_store: Store, invoice: dict[str, Any], _expand: set[str]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in invoice.items() if not k.startswith("_")}
    lines = invoice["_lines"]
    out["lines"] = {
        "object": "list",
        "data": [_clean(line) for line in lines[:LINES_SHOWN]],
        "has_more": len(lines) > LINES_SHOWN,
        "total_count": len(lines),
        "url": f"/v1/invoices/{invoice['id']}/lines",
    }
    return out


def _clean(line: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in line.items() if not k.startswith("_")}


RENDERERS["invoice"] = render_invoice


def _invoice_now(store: Store, invoice: dict[str, Any]) -> int:
    return store.customer_now(invoice["customer"])


@route("POST", "/v1/invoices")
def create_invoice(store: Store, params: Params) -> dict[str, Any]:
    customer_id = req_str(params, "customer")
    store.get("customer", customer_id, "customer")
    behavior = get_enum(params, "pending_invoice_items_behavior", ("include", "exclude"), "exclude")
    now = store.customer_now(customer_id)
    invoice = new_invoice(
        store,
        customer_id=customer_id,
        subscription=None,
        billing_reason="manual",
        lines=[],
        period=(now, now),
        now=now,
        currency=(get_str(params, "currency") or "usd").lower(),
        sweep=behavior == "include",
        auto_advance=bool(get_bool(params, "auto_advance")),
    )
    invoice["description"] = get_str(params, "description")
    invoice["metadata"] = merge_metadata({}, params)
    return store.render(invoice, get_list(params, "expand"))


@route("GET", "/v1/invoices/{id}")
def retrieve_invoice(store: Store, params: Params, invoice_id: str) -> dict[str, Any]:
    return store.render(store.get("invoice", invoice_id), get_list(params, "expand"))


@route("GET", "/v1/invoices/{id}/lines")
def list_invoice_lines(store: Store, params: Params, invoice_id: str) -> dict[str, Any]:
    invoice = store.get("invoice", invoice_id)
    page = store.list_response(
        f"/v1/invoices/{invoice_id}/lines", invoice["_lines"], params, newest_first=False
    )
    page["data"] = [_clean(line) for line in page["data"]]
    return page


@route("POST", "/v1/invoices/{id}")
def update_invoice(store: Store, params: Params, invoice_id: str) -> dict[str, Any]:
    invoice = store.get("invoice", invoice_id)
    if "auto_advance" in params:
        if invoice["status"] != "draft":
            raise invalid("auto_advance can only be changed on draft invoices.", "auto_advance")
        invoice["auto_advance"] = bool(get_bool(params, "auto_advance"))
        grace = store.config.grace_period_seconds if store.config is not None else 3600
        invoice["automatically_finalizes_at"] = (
            max(invoice["created"] + grace, _invoice_now(store, invoice))
            if invoice["auto_advance"]
            else None
        )
    if "automatically_finalizes_at" in params and invoice["status"] == "draft":
        invoice["automatically_finalizes_at"] = get_int(params, "automatically_finalizes_at")
    if "description" in params:
        invoice["description"] = get_str(params, "description")
    invoice["metadata"] = merge_metadata(invoice["metadata"], params)
    return store.render(invoice, get_list(params, "expand"))


@route("POST", "/v1/invoices/{id}/finalize")
def finalize_invoice(store: Store, params: Params, invoice_id: str) -> dict[str, Any]:
    invoice = store.get("invoice", invoice_id)
    if "auto_advance" in params:
        invoice["auto_advance"] = bool(get_bool(params, "auto_advance"))
    finalize(store, invoice, _invoice_now(store, invoice))
    return store.render(invoice, get_list(params, "expand"))


@route("POST", "/v1/invoices/{id}/pay")
def pay_invoice(store: Store, params: Params, invoice_id: str) -> dict[str, Any]:
    invoice = store.get("invoice", invoice_id)
    now = _invoice_now(store, invoice)
    if invoice["status"] == "draft":
        finalize(store, invoice, now)
    if invoice["status"] == "open":
        mark_paid(store, invoice, now)
    elif invoice["status"] != "paid":
        raise invalid(
            f"Invoice is {invoice['status']} and cannot be paid.", "invoice", "invoice_not_editable"
        )
    return store.render(invoice, get_list(params, "expand"))


@route("POST", "/v1/invoices/{id}/void")
def void_invoice(store: Store, params: Params, invoice_id: str) -> dict[str, Any]:
    invoice = store.get("invoice", invoice_id)
    if invoice["status"] != "open":
        raise invalid("Only open invoices can be voided.", "invoice", "invoice_not_editable")
    now = _invoice_now(store, invoice)
    invoice["status"] = "void"
    invoice["amount_remaining"] = 0
    invoice["status_transitions"]["voided_at"] = now
    store.emit("invoice.voided", invoice, now)
    return store.render(invoice, get_list(params, "expand"))


@route("DELETE", "/v1/invoices/{id}")
def delete_invoice(store: Store, _params: Params, invoice_id: str) -> dict[str, Any]:
    invoice = store.get("invoice", invoice_id)
    if invoice["status"] != "draft":
        raise invalid("Only draft invoices can be deleted.", "invoice", "invoice_not_editable")
    for line in invoice["_lines"]:
        details = (
            (line["parent"] or {}).get("invoice_item_details")
            or (line["parent"] or {}).get("subscription_item_details")
            or {}
        )
        item_id = details.get("invoice_item")
        if item_id:
            store.table("invoiceitem")[item_id]["invoice"] = None
    invoice["deleted"] = True
    return {"id": invoice_id, "object": "invoice", "deleted": True}


@route("GET", "/v1/invoices")
def list_invoices(store: Store, params: Params) -> dict[str, Any]:
    customer = get_str(params, "customer")
    subscription = get_str(params, "subscription")
    status = get_str(params, "status")
    created = created_filter(params)
    if status not in (None, "draft", "open", "paid", "void", "uncollectible"):
        raise invalid("Invalid status", "status")
    items = [
        i
        for i in store.table("invoice").values()
        if not i.get("deleted")
        and customer in (None, i["customer"])
        and status in (None, i["status"])
        and created(i["created"])
        and (
            subscription is None
            or (i["parent"] or {}).get("subscription_details", {}).get("subscription")
            == subscription
        )
    ]
    return store.list_response("/v1/invoices", items, params)


def require(value: Any, name: str) -> Any:
    if value is None:
        raise missing(name)
    return value
