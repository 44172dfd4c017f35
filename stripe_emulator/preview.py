"""``POST /v1/invoices/create_preview``: the upcoming invoice, computed on a throw-away copy.

The preview runs the real operations (item changes with prorations, then the next renewal) on a
deep copy of the store that emits no events, so it matches what the same calls would produce.
``preview_mode=next`` (default) previews the invoice the change would create immediately
(``always_invoice``) or otherwise the next renewal invoice, with pending items and prorations;
``recurring`` previews the next renewal without pending items or prorations.  Usage is the
meter total so far.  Assumption: the preview carries ``id="upcoming_in_…"``,
``status="draft"``, ``billing_reason="upcoming"``, and
``parent.subscription_details.subscription_proration_date`` when prorations were previewed.
"""

from __future__ import annotations

import copy
from typing import Any

from stripe_emulator.cycles import renew
from stripe_emulator.errors import invalid, missing
from stripe_emulator.forms import Params, get_dict, get_enum, get_int, get_list, get_str
from stripe_emulator.invoicing import new_invoice
from stripe_emulator.routing import route
from stripe_emulator.store import Store, new_id
from stripe_emulator.subscriptions import BEHAVIORS, create_subscription, items_of, update_items


def shadow_copy(store: Store) -> Store:
    shadow = copy.copy(store)
    shadow.objects = {k: v if k == "event" else copy.deepcopy(v) for k, v in store.objects.items()}
    shadow.outbox = []
    shadow.preview = True
    return shadow


@route("POST", "/v1/invoices/create_preview")
def create_preview(store: Store, params: Params) -> dict[str, Any]:
    customer_id = get_str(params, "customer")
    sub_id = get_str(params, "subscription")
    details = get_dict(params, "subscription_details")
    mode = get_enum(params, "preview_mode", ("next", "recurring"), "next")
    behavior = get_enum(details, "proration_behavior", BEHAVIORS, "create_prorations")
    if sub_id is not None:
        sub = store.get("subscription", sub_id, "subscription")
        customer_id = customer_id or sub["customer"]
        if customer_id != sub["customer"]:
            raise invalid("The subscription does not belong to this customer.", "customer")
    if customer_id is None:
        raise missing("customer")
    store.get("customer", customer_id, "customer")
    shadow = shadow_copy(store)
    now = shadow.customer_now(customer_id)
    raw_items = get_list(details, "items")
    proration_date = get_int(
        details, "proration_date", param="subscription_details[proration_date]"
    )
    if sub_id is None and raw_items:
        created = create_subscription(shadow, {"customer": customer_id, "items": raw_items})
        invoice = shadow.get("invoice", created["latest_invoice"])
        return _present(shadow, invoice, None)
    if sub_id is None:
        invoice = new_invoice(
            shadow,
            customer_id=customer_id,
            subscription=None,
            billing_reason="upcoming",
            lines=[],
            period=(now, now),
            now=now,
            currency="usd",
        )
        return _present(shadow, invoice, None)
    sub = shadow.get("subscription", sub_id)
    if raw_items:
        change_params = {
            "proration_behavior": "none" if behavior == "none" else "create_prorations"
        }
        if proration_date is not None:
            change_params["proration_date"] = str(proration_date)
        entries = [(n, f"subscription_details[items][{i}]") for i, n in enumerate(raw_items)]
        update_items(shadow, sub, entries, change_params)
        if behavior == "always_invoice":
            invoice = new_invoice(
                shadow,
                customer_id=customer_id,
                subscription=sub,
                billing_reason="subscription_update",
                lines=[],
                period=(now, now),
                now=now,
                currency=sub["currency"],
            )
            return _present(shadow, invoice, proration_date or now)
    if mode == "recurring":
        for item in shadow.table("invoiceitem").values():
            if item["invoice"] is None:
                item["deleted"] = True
    if sub["status"] == "canceled" or not items_of(shadow, sub):
        raise invalid(
            "No upcoming invoices for a canceled subscription.",
            "subscription",
            "invoice_upcoming_none",
        )
    end = min(i["current_period_end"] for i in items_of(shadow, sub))
    invoice = renew(shadow, sub, end)
    return _present(shadow, invoice, proration_date if raw_items else None)


def _present(shadow: Store, invoice: dict[str, Any], proration_date: int | None) -> dict[str, Any]:
    out = shadow.render(invoice, [])
    out["id"] = f"upcoming_{new_id('in')}"
    out["status"] = "draft"
    out["number"] = None
    out["billing_reason"] = "upcoming"
    out["amount_paid"] = 0
    out["amount_due"] = max(out["total"], 0)
    out["amount_remaining"] = out["amount_due"]
    out["status_transitions"] = {
        "finalized_at": None,
        "marked_uncollectible_at": None,
        "paid_at": None,
        "voided_at": None,
    }
    out["lines"]["url"] = "/v1/invoices/upcoming/lines"
    for line in out["lines"]["data"]:
        line["invoice"] = out["id"]
    if out["parent"] is not None and proration_date is not None:
        out["parent"]["subscription_details"]["subscription_proration_date"] = proration_date
    return out
