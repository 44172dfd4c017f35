"""Plain-language explanations of reconciled invoice lines, built from their stored traces (pure).

The reconciler stores, for each component of an invoice, both sides and a trace (matching,
traces and late_usage write them). Support reads them aloud to a customer: "why is my invoice
this amount?". So each line kind becomes a summary, numbered steps with the arithmetic, Stripe's
own lines in words, a verdict, and where rounding explains a cent, the rounding in one sentence.
Amounts are dollars and cents, units are named (from the price book's meter units), and seat
prorations are explained step by step from the `prorations` list, never from the first step's
description, which on a line of several increases names only the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.core.components import MINIMUM, SEAT_PRORATION, SEATS
from billing.core.money import round_line_amount
from billing.core.periods import Period, parse_instant
from billing.reconciliation.component_map import ADJUSTMENT
from billing.reconciliation.explain_format import (
    counted,
    day,
    duration,
    exact_money,
    instant,
    money,
    quantity,
    to_decimal,
    unit_price,
)
from billing.reconciliation.match import CUSTOMER_BALANCE, INVOICE_TOTAL, Status

SEAT_ROUNDING = (
    "Stripe rounds the credit and the charge of each seat change separately; "
    "a 1¢ difference per change is expected."
)
HOUR_SECONDS = 3_600


@dataclass(frozen=True)
class LateEvent:
    """A usage event of an already invoiced period, received after that invoice was final."""

    event_id: str
    meter: str
    quantity: Decimal
    at: datetime
    received_at: datetime


@dataclass(frozen=True)
class ExplainContext:
    """What the traces do not hold: the currency, the meters' units, the org's seat terms (for
    the term length of a proration) and late events (for an adjustment)."""

    currency: str = "usd"
    units: Mapping[str, str] = field(default_factory=dict)  # meter code -> unit, singular
    display_names: Mapping[str, str] = field(default_factory=dict)  # meter code -> name
    seat_terms: Sequence[Period] = ()
    late_events: Sequence[LateEvent] = ()


@dataclass(frozen=True)
class LineExplanation:
    component: str
    title: str
    summary: str
    steps: tuple[str, ...] = ()
    stripe: tuple[str, ...] = ()
    rounding: str | None = None
    verdict: str = ""


def explain_invoice(
    lines: Sequence[Mapping[str, Any]], context: ExplainContext
) -> list[LineExplanation]:
    """One explanation per stored line (`billing.reconciliation.queries.line_json` shape)."""
    return [explain_line(line, context, lines) for line in lines]


def explain_line(
    line: Mapping[str, Any],
    context: ExplainContext,
    siblings: Sequence[Mapping[str, Any]] = (),
) -> LineExplanation:
    component = str(line.get("component", ""))
    trace: Mapping[str, Any] = line.get("trace") or {}
    expected: Mapping[str, Any] = trace.get("expected") or {}
    if component == SEAT_PRORATION:
        body = _seat_proration(line, expected, context)
    elif component == SEATS:
        body = _seats(line, expected, context)
    elif component == MINIMUM:
        body = _minimum(line, context, siblings)
    elif component == ADJUSTMENT:
        body = _adjustment(line, expected, context)
    elif component in context.units or "tiers" in expected or "included" in expected:
        body = _meter(component, line, expected, context)
    else:
        body = _outside_ledger(component, line, context)
    stripe = tuple(_stripe_lines(component, trace, context))
    return LineExplanation(
        component=component,
        title=_title(component, context),
        summary=body.summary,
        steps=body.steps,
        stripe=stripe,
        rounding=body.rounding,
        verdict=_verdict(line, context),
    )


@dataclass(frozen=True)
class _Body:
    summary: str
    steps: tuple[str, ...] = ()
    rounding: str | None = None


def _title(component: str, context: ExplainContext) -> str:
    names = {
        SEATS: "Seats (upfront for the term)",
        SEAT_PRORATION: "Seats added during the term (prorated)",
        MINIMUM: "Minimum commitment top-up",
        ADJUSTMENT: "Late usage adjustment",
        CUSTOMER_BALANCE: "Customer balance applied",
        INVOICE_TOTAL: "Invoice total beside its lines",
    }
    return names.get(component) or context.display_names.get(component) or component


# --------------------------------------------------------------------------- seats


def _seats(line: Mapping[str, Any], expected: Mapping[str, Any], context: ExplainContext) -> _Body:
    count = to_decimal(expected.get("quantity")) or to_decimal(line.get("expected_quantity"))
    amount = line.get("expected_amount")
    if not count or amount is None:
        return _Body(
            f"No seat charge expected; Stripe bills "
            f"{money(line.get('stripe_amount'), context.currency)}."
        )
    term = expected.get("term") or {}
    each = unit_price(Decimal(amount) / count, context.currency)
    summary = (
        f"{counted(count, 'seat')} × {each} for the term {day(term.get('period_start'))} → "
        f"{day(term.get('period_end'))}, billed upfront: {money(amount, context.currency)}."
    )
    step = f"{quantity(count)} × {each} = {money(amount, context.currency)}"
    return _Body(summary, (step,))


def _seat_proration(
    line: Mapping[str, Any], expected: Mapping[str, Any], context: ExplainContext
) -> _Body:
    prorations: list[Mapping[str, Any]] = list(expected.get("prorations") or [])
    amount = line.get("expected_amount")
    if not prorations:
        return _Body(
            f"No seat change expected in this period; Stripe bills "
            f"{money(line.get('stripe_amount'), context.currency)} of prorations.",
            rounding=SEAT_ROUNDING,
        )
    steps = tuple(_proration_step(p, context) for p in prorations)
    counts = [prorations[0].get("from_quantity")] + [p.get("to_quantity") for p in prorations]
    chain = " → ".join(str(c) for c in counts)
    added = sum(
        int(p.get("to_quantity") or 0) - int(p.get("from_quantity") or 0) for p in prorations
    )
    end = day(prorations[-1].get("term_end_at"))
    total = money(amount, context.currency)
    if len(prorations) == 1:
        summary = (
            f"{_signed_seats(added)} ({chain}) on {instant(prorations[0].get('proration_at'))}, "
            f"prorated to the term end {end}: {total}."
        )
    else:
        summary = (
            f"{len(prorations)} seat changes ({chain}, {_signed_seats(added)} in all), each "
            f"prorated to the term end {end}: {total}."
        )
    return _Body(summary, steps, SEAT_ROUNDING)


def _signed_seats(delta: int) -> str:
    sign = "+" if delta >= 0 else "−"
    return f"{sign}{counted(abs(delta), 'seat')}"


def _proration_step(proration: Mapping[str, Any], context: ExplainContext) -> str:
    delta = int(proration.get("to_quantity") or 0) - int(proration.get("from_quantity") or 0)
    unit = to_decimal(proration.get("unit_amount_decimal")) or Decimal(0)
    amount = int(proration.get("amount") or 0)
    at, end = _when(proration.get("proration_at")), _when(proration.get("term_end_at"))
    head = f"{_signed_seats(delta)} on {instant(at)}"
    price = unit_price(unit, context.currency)
    if at is None or end is None:
        total = money(amount, context.currency)
        return f"{head}: {abs(delta)} × {price} for the rest of the term = {total}"
    remaining = int((end - at).total_seconds())
    term = next((t for t in context.seat_terms if at in t and t.period_end == end), None)
    if term is None:
        return (
            f"{head}: {abs(delta)} × {price} for the {duration(remaining)} left of the term "
            f"ending {instant(end)} = {money(amount, context.currency)}"
        )
    exact = Decimal(delta) * unit * remaining / term.seconds
    text = (
        f"{head}: {abs(delta)} × {price} × {duration(remaining)} / {duration(term.seconds)} "
        f"= {money(amount, context.currency)}"
    )
    if round_line_amount(exact) != amount:
        text += f" (the ledger's term gives {exact_money(exact, context.currency)})"
    return text


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- meters


def _meter(
    component: str, line: Mapping[str, Any], expected: Mapping[str, Any], context: ExplainContext
) -> _Body:
    cur = context.currency
    unit = context.units.get(component, "unit")
    used = to_decimal(expected.get("quantity")) or Decimal(0)
    included = to_decimal(expected.get("included")) or Decimal(0)
    billable = to_decimal(expected.get("billable")) or Decimal(0)
    amount = line.get("expected_amount")
    steps = [_usage_source(expected.get("events"), used, unit)]
    tiers: list[Mapping[str, Any]] = list(expected.get("tiers") or [])
    per = int(tiers[0].get("per") or 1) if tiers else 1
    price_unit = _price_unit(unit, per)
    if per != 1:
        steps.append(
            f"Stripe counts in {price_unit}s of {counted(per, unit)}: {counted(used, unit)} ÷ "
            f"{quantity(per)} = {counted(used / per, price_unit)}"
        )
    steps.append(f"{counted(included, unit)} included → {counted(billable, unit)} billable")
    for tier in tiers:
        step = _tier_step(tier, unit, price_unit, per, cur)
        if step:
            steps.append(step)
    exact = to_decimal(expected.get("exact_amount"))
    rounding = None
    if exact is not None and amount is not None and exact != Decimal(amount):
        rounding = (
            f"The exact {exact_money(exact, cur)} is rounded once, half up, "
            f"to {money(amount, cur)}."
        )
    if billable:
        summary = (
            f"{counted(used, unit)} used, {counted(included, unit)} included: "
            f"{counted(billable, unit)} billable = {money(amount, cur)}."
        )
    else:
        summary = (
            f"{counted(used, unit)} used, within the {counted(included, unit)} included: "
            f"{money(amount, cur)}."
        )
    return _Body(summary, tuple(steps), rounding)


def _usage_source(events: Any, used: Decimal, unit: str) -> str:
    if not isinstance(events, Mapping):
        return f"The ledger holds {counted(used, unit)} for the period"
    count = int(events.get("count") or 0)
    source = str(events.get("source") or "usage events")
    if source.startswith("resource report"):
        return (
            f"{counted(count, 'resource report')}: for each stack and each clock hour the peak "
            f"resource count, summed over the period = {counted(used, unit)}"
        )
    return f"{counted(count, 'usage event')} in the period, {counted(used, unit)} in all"


def _price_unit(unit: str, per: int) -> str:
    if per == 1:
        return unit
    if unit == "second" and per == HOUR_SECONDS:
        return "hour"
    return f"{quantity(per)}-{unit} block"


def _tier_step(
    tier: Mapping[str, Any], unit: str, price_unit: str, per: int, currency: str
) -> str | None:
    tier_quantity = to_decimal(tier.get("quantity")) or Decimal(0)
    if not tier_quantity:
        return None
    price = to_decimal(tier.get("unit_amount_decimal")) or Decimal(0)
    exact = to_decimal(tier.get("exact_amount")) or Decimal(0)
    flat = int(tier.get("flat_amount") or 0)
    if not price and not flat:
        return f"The first {counted(tier_quantity, unit)} are free (included)"
    in_price_units = tier_quantity / per
    text = (
        f"{counted(in_price_units, price_unit)} × {unit_price(price, currency)} per {price_unit}"
        f" = {exact_money(exact - flat, currency)}"
    )
    if flat:
        text += f", plus a flat {money(flat, currency)}"
    return text


# --------------------------------------------------------------------------- invoice items


def _minimum(
    line: Mapping[str, Any], context: ExplainContext, siblings: Sequence[Mapping[str, Any]]
) -> _Body:
    cur = context.currency
    top_up = int(line.get("expected_amount") or 0)
    usage = sum(
        int(s.get("expected_amount") or 0)
        for s in siblings
        if str(s.get("component")) in context.units
    )
    minimum = usage + top_up
    summary = (
        f"Usage charges of {money(usage, cur)} are under the {money(minimum, cur)} monthly "
        f"minimum: the top-up brings the month to the minimum, {money(top_up, cur)}."
    )
    step = f"{money(minimum, cur)} minimum − {money(usage, cur)} usage = {money(top_up, cur)}"
    return _Body(summary, (step,))


def _adjustment(
    line: Mapping[str, Any], expected: Mapping[str, Any], context: ExplainContext
) -> _Body:
    cur = context.currency
    steps: list[str] = []
    for late in expected.get("late_periods") or []:
        priced = ", ".join(
            f"{counted(item.get('quantity'), context.units.get(str(item.get('code')), 'unit'))}"
            f" → {money(int(item.get('amount') or 0), cur)}"
            for item in late.get("ledger_lines") or []
            if to_decimal(item.get("quantity"))
        )
        billed = sum(int(part.get("amount") or 0) for part in late.get("billed") or [])
        ledger = int(late.get("ledger_amount") or 0)
        steps.append(
            f"{late.get('period')}: the ledger now prices it at {money(ledger, cur)}"
            f"{f' ({priced})' if priced else ''}; Stripe billed {money(billed, cur)} for it "
            f"→ {'+' if ledger > billed else ''}{money(ledger - billed, cur)} here"
        )
    steps.extend(
        f"Late event {event.event_id}: "
        f"{counted(event.quantity, context.units.get(event.meter, 'unit'))} dated "
        f"{instant(event.at)}, arrived {instant(event.received_at)}"
        for event in context.late_events
    )
    summary = (
        f"Usage that arrived after its period's invoice was final, billed here: "
        f"{money(line.get('expected_amount'), cur)}."
    )
    return _Body(summary, tuple(steps))


def _outside_ledger(component: str, line: Mapping[str, Any], context: ExplainContext) -> _Body:
    cur = context.currency
    amount = money(line.get("stripe_amount"), cur)
    if component == INVOICE_TOTAL:
        return _Body(
            f"The invoice total differs from its lines by {amount}: a discount or tax the "
            f"ledger does not hold."
        )
    if component == CUSTOMER_BALANCE:
        return _Body(
            f"Stripe applied {amount} of customer balance to the amount due; the ledger "
            f"holds no balance."
        )
    return _Body(
        f"{amount} in Stripe that neither the ledger nor the price catalog explains "
        f"(an item added in Stripe by hand, for example)."
    )


# --------------------------------------------------------------------------- Stripe and verdict


def _stripe_lines(component: str, trace: Mapping[str, Any], context: ExplainContext) -> list[str]:
    stripe = trace.get("stripe") or {}
    found = []
    for item in stripe.get("lines") or []:
        amount = money(int(item.get("amount") or 0), context.currency)
        what = item.get("description") or item.get("id") or component
        qty = item.get("quantity")
        shown = f"{what}: {amount}"
        if qty is not None and component not in (MINIMUM, ADJUSTMENT):
            shown = f"{what} (quantity {quantity(qty)}): {amount}"
        found.append(shown)
    return found


def _verdict(line: Mapping[str, Any], context: ExplainContext) -> str:
    cur = context.currency
    expected, stripe = line.get("expected_amount"), line.get("stripe_amount")
    difference = int(line.get("difference_amount") or 0)
    both = f"Stripe {money(stripe, cur)}, expected {money(expected, cur)}"
    try:
        status = Status(str(line.get("status", "")))
    except ValueError:
        return str(line.get("explanation", ""))
    if status is Status.MISMATCHED and not difference:
        return (
            f"{both}, but the quantities differ: {quantity(line.get('stripe_quantity'))} in "
            f"Stripe, {quantity(line.get('expected_quantity'))} in the ledger."
        )
    verdicts = {
        Status.MATCHED: f"{both}: they agree.",
        Status.ROUNDING: f"{both}: {money(abs(difference), cur)} apart, from rounding.",
        Status.AWAITING_USAGE: f"{both}: not judged yet, Stripe is still counting usage.",
        Status.MISMATCHED: f"{both}: they differ by {money(difference, cur)}.",
        Status.MISSING_IN_STRIPE: f"Expected {money(expected, cur)}, but Stripe has no line.",
        Status.UNEXPECTED_IN_STRIPE: (
            f"Stripe bills {money(stripe, cur)} the ledger does not explain."
        ),
        Status.ERROR: str(line.get("explanation", "")),
    }
    return verdicts[status]
