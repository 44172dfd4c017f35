"""Invoices: creation from lines and pending items, finalization, payment, and the endpoints.

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
from stripe_emulator.errors import invalid
from stripe_emulator.forms import (
    Params,
    decimal_str,
    get_bool,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from stripe_emulator.invoice_items import new_invoice_item, pending_items
from stripe_emulator.invoice_lines import (
    attach_item,
    base_line,
    recompute_totals,
    subscription_line,
)
from stripe_emulator.metering import meter_total
from stripe_emulator.routing import route
from stripe_emulator.store import RENDERERS, Store, created_filter, new_id

LINES_SHOWN = 10


__all__ = ["attach_item", "base_line", "new_invoice_item", "subscription_line"]

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


def refresh_draft(store: Store, invoice: dict[str, Any]) -> None:
    """A draft's usage lines follow the usage reported for their period until it finalizes:
    "During the grace period, you can continue to report usage for the previous billing
    period" (https://docs.stripe.com/billing/subscriptions/usage-based/configure-grace-period).
    Stripe aggregates asynchronously; the emulator counts at once, unless the configuration says
    drafts show usage only at finalization (`draft_follows_usage=False`)."""
    follows = store.config.draft_follows_usage if store.config is not None else True
    if invoice["status"] == "draft" and follows:
        refresh_metered_lines(store, invoice)


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


def render_invoice(store: Store, invoice: dict[str, Any], _expand: set[str]) -> dict[str, Any]:
    refresh_draft(store, invoice)
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
    refresh_draft(store, invoice)
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
    if subscription is not None and customer is None:
        owner = store.table("subscription").get(subscription)
        customer = owner["customer"] if owner else ""

    def keep(i: dict[str, Any]) -> bool:
        return (
            not i.get("deleted")
            and customer in (None, i["customer"])
            and status in (None, i["status"])
            and created(i["created"])
            and (
                subscription is None
                or (i["parent"] or {}).get("subscription_details", {}).get("subscription")
                == subscription
            )
        )

    if customer is None:
        return store.list_table("/v1/invoices", "invoice", params, keep)
    items = [i for i in store.of_customer("invoice", customer) if keep(i)]
    return store.list_response("/v1/invoices", items, params)
