"""A draft invoice judged on the amounts Stripe will bill when it finalizes (pure).

During the grace period a draft may show a stale quantity on a metered line: Stripe bills the
meter's value at finalization, and may not show usage reported since on the draft yet
(https://docs.stripe.com/billing/subscriptions/usage-based/configure-grace-period). Where the
draft's quantity differs from the ledger's, the meter's current value (from Stripe's meter event
summaries, read by the reconciler) replaces it, and the line's amount is projected through the
price the draft line actually carries (the catalog's record of that Stripe price). The projected
line is then judged on amounts, like any other: a draft that will finalize at another amount
than the ledger's is never `matched`. When the draft's amount is not what that price gives for
the draft's own quantity, or the price is not one of the catalog's, nothing can be projected and
the line is a mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing.core.components import MINIMUM
from billing.core.money import format_decimal
from billing.pricing.book import MeterPrice
from billing.pricing.charge import ledger_quantity, price_meter
from billing.reconciliation.component_map import ComponentMap
from billing.reconciliation.match import InvoiceComparison, LineComparison, mismatch, rejudge
from billing.stripe_gateway.records import StripeInvoice


def project_draft(
    comparison: InvoiceComparison,
    invoice: StripeInvoice,
    components: ComponentMap,
    prices: Mapping[str, MeterPrice],
    meter_values: Mapping[str, Decimal],
) -> InvoiceComparison:
    """`meter_values`: Stripe's current value (its unit) per meter code whose draft line
    disagrees with the ledger; `prices`: the catalog's meter prices by Stripe price id."""
    lines = []
    for line in comparison.lines:
        value = meter_values.get(line.component)
        stripe_lines = [s for s in invoice.lines if components.component_of(s) == line.component]
        shown = line.stripe_quantity
        if line.component == MINIMUM:  # judged on amounts: the top-up meter's line quantity
            shown = sum((s.quantity_decimal or Decimal(0) for s in stripe_lines), Decimal(0))
        if value is None or shown == value:
            lines.append(line)  # the draft shows what the meter holds: judged as it is
            continue
        price_ids = sorted({s.stripe_price_id or "" for s in stripe_lines})
        if line.component == MINIMUM:
            lines.append(_projected_topup(line, value, shown, price_ids, components))
        else:
            lines.append(_projected(line, value, price_ids, prices))
    return InvoiceComparison(tuple(lines))


def _projected_topup(
    line: LineComparison,
    value: Decimal,
    shown: Decimal | None,
    price_ids: Sequence[str],
    components: ComponentMap,
) -> LineComparison:
    """The minimum top-up reported as usage (billing.usage.topup): its price bills 1 cent per
    unit, so the draft finalizes at the meter's value in cents."""
    evidence: dict[str, object] = {
        "draft_quantity": _num(shown),
        "draft_amount": line.stripe_amount,
        "stripe_meter_value": _num(value),
        "stripe_price_ids": list(price_ids),
    }
    ours = len(price_ids) == 1 and components.meter_by_price_id.get(price_ids[0]) == MINIMUM
    if not ours or (line.stripe_amount or 0) != shown or value != value.to_integral_value():
        return mismatch(
            line,
            f"{line.component}: the draft shows {_num(shown)} ({line.stripe_amount}¢), Stripe's "
            f"top-up meter holds {_num(value)}, and the draft's price "
            f"{', '.join(price_ids) or 'none'} is not the catalog's 1¢ top-up price: its amount "
            "at finalization cannot be projected",
            evidence,
        )
    projected = int(value)
    evidence["projected_amount"] = projected
    note = (
        f"{line.component}: the draft shows {_num(shown)} ({line.stripe_amount}¢); Stripe's "
        f"top-up meter now holds {_num(value)}, billed at {projected}¢ when the draft finalizes"
    )
    return rejudge(line, None, projected, note, evidence)


def _projected(
    line: LineComparison,
    value: Decimal,
    price_ids: Sequence[str],
    prices: Mapping[str, MeterPrice],
) -> LineComparison:
    evidence: dict[str, object] = {
        "draft_quantity": _num(line.stripe_quantity),
        "draft_amount": line.stripe_amount,
        "stripe_meter_value": _num(value),
        "stripe_price_ids": list(price_ids),
    }
    price = prices.get(price_ids[0]) if len(price_ids) == 1 else None
    if price is None:
        return mismatch(
            line,
            f"{line.component}: the draft shows {_num(line.stripe_quantity)}, Stripe's meter "
            f"holds {_num(value)}, and the draft's price {', '.join(price_ids) or 'none'} is not "
            "one the catalog knows: its amount at finalization cannot be projected",
            evidence,
        )
    shown = line.stripe_quantity or Decimal(0)
    priced_now = price_meter(price, ledger_quantity(shown, price.per)).amount
    if priced_now != (line.stripe_amount or 0):
        return mismatch(
            line,
            f"{line.component}: the draft bills {_num(shown)} at {line.stripe_amount}¢, but its "
            f"price {price_ids[0]} gives {priced_now}¢ by the catalog: Stripe's price differs "
            "from the catalog's",
            {**evidence, "catalog_amount_for_draft_quantity": priced_now},
        )
    projected = price_meter(price, ledger_quantity(value, price.per)).amount
    evidence["projected_amount"] = projected
    note = (
        f"{line.component}: the draft shows {_num(shown)} ({line.stripe_amount}¢); Stripe's meter "
        f"now holds {_num(value)}, which its price {price_ids[0]} bills at {projected}¢ when the "
        "draft finalizes"
    )
    return rejudge(line, value, projected, note, evidence)


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)
