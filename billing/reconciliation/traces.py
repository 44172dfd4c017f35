"""How each side of a reconciled line is explained in its trace (pure): the ledger's steps
for meters and seat steps, and the Stripe lines behind a component."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing.core.money import format_decimal
from billing.core.periods import isoformat_z
from billing.ledger.expected_invoice import ExpectedLine
from billing.pricing.book import Terms
from billing.pricing.charge import price_meter
from billing.stripe_gateway.records import StripeInvoiceLine


@dataclass(frozen=True)
class MeterFacts:
    """What the ledger holds for one meter in the period: the first step of a trace."""

    event_count: int
    quantity_total: Decimal
    source: str = "usage events"


def proration_trace(line: ExpectedLine) -> dict[str, Any]:
    return {
        "from_quantity": line.from_quantity,
        "to_quantity": line.to_quantity,
        "proration_at": isoformat_z(line.proration_at) if line.proration_at else None,
        "term_end_at": isoformat_z(line.period_end) if line.period_end else None,
        "unit_amount_decimal": num(line.unit_amount_decimal),
        "amount": line.amount,
        "rule": "added seats × seat price × remaining seconds of the term / term seconds, "
        "rounded half up once",
    }


def meter_trace(
    line: ExpectedLine, terms: Terms | None, facts: MeterFacts | None
) -> dict[str, Any]:
    steps: list[str] = []
    trace: dict[str, Any] = {}
    if facts is not None:
        trace["events"] = {
            "source": facts.source,
            "count": facts.event_count,
            "quantity_total": num(facts.quantity_total),
        }
        # Reports carry counts, not quantities: their total is the line's resource-hours.
        total = (
            line.quantity if facts.source.startswith("resource reports") else facts.quantity_total
        )
        steps.append(f"{facts.event_count} {facts.source} → total {num(total)}")
    trace["included"] = num(line.included)
    trace["billable"] = num(line.billable)
    steps.append(f"included {num(line.included)} → billable {num(line.billable)}")
    price = (
        None
        if terms is None
        else next((p for m, p in terms.meters.items() if m.value == line.code), None)
    )
    if price is not None:
        charge = price_meter(price, line.quantity)
        trace["tiers"] = [
            {
                "up_to": "inf" if use.up_to is None else use.up_to,
                "quantity": num(use.quantity),
                "unit_amount_decimal": num(use.unit_amount_decimal),
                "per": price.per,
                "flat_amount": use.flat_amount,
                "exact_amount": num(use.exact_amount),
            }
            for use in charge.tiers
        ]
        exact = sum((use.exact_amount for use in charge.tiers), Decimal(0))
        for use in charge.tiers:
            per = f" per {price.per}" if price.per != 1 else ""
            steps.append(
                f"tier ≤{'inf' if use.up_to is None else use.up_to}: {num(use.quantity)} × "
                f"{num(use.unit_amount_decimal)}¢{per} = {num(use.exact_amount)}¢"
            )
        trace["exact_amount"] = num(exact)
        steps.append(f"{num(exact)}¢ rounded half up once → {line.amount}¢")
    trace["steps"] = steps
    return trace


def stripe_side(component: str, lines: Sequence[StripeInvoiceLine]) -> dict[str, Any]:
    return {
        "lines": [
            {
                "id": line.stripe_invoice_line_id,
                "quantity": None if line.quantity_decimal is None else num(line.quantity_decimal),
                "amount": line.amount,
                "price": line.stripe_price_id,
                "proration": line.proration,
                "invoice_item": line.stripe_invoice_item_id,
                "period_start": isoformat_z(line.period_start_at) if line.period_start_at else None,
                "period_end": isoformat_z(line.period_end_at) if line.period_end_at else None,
                "description": line.description,
            }
            for line in lines
        ],
        "component": component,
    }


def span(line: ExpectedLine) -> dict[str, str | None]:
    return {
        "period_start": isoformat_z(line.period_start) if line.period_start else None,
        "period_end": isoformat_z(line.period_end) if line.period_end else None,
    }


def num(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)
