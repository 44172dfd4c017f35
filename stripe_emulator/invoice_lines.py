"""Invoice line items: building subscription and invoice-item lines, and invoice totals."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from stripe_emulator.forms import decimal_str
from stripe_emulator.store import Store, new_id


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


def recompute_totals(invoice: dict[str, Any]) -> None:
    subtotal = sum(line["amount"] for line in invoice["_lines"])
    invoice["subtotal"] = invoice["subtotal_excluding_tax"] = subtotal
    invoice["total"] = invoice["total_excluding_tax"] = subtotal
    if invoice["status"] == "draft":
        invoice["amount_due"] = max(subtotal, 0)
        invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]
