"""How an org's Stripe invoice lines are sorted into components (pure).

`seats` (the seat price's non-proration lines), `seat_proration` (the seat item's proration
lines, credit and debit summed), `seat_credit` (a proration credit alone at its instant: the
unused time of a term a plan change or cancellation ended), one per meter (lines whose price is
the org's metered price for it), `minimum`, `credit` and `adjustment` (invoice items tagged with
`billing_kind`), and everything else `unexpected`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from billing.core.components import (
    BILLING_KIND,
    CREDIT,
    MINIMUM,
    SEAT_CREDIT,
    SEAT_PRORATION,
    SEATS,
    BillingKind,
)
from billing.stripe_gateway.records import StripeInvoiceLine

ADJUSTMENT = "adjustment"
UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class ComponentMap:
    """How Stripe ids map to components for one org (from the catalog and the org's items)."""

    seat_price_ids: frozenset[str] = frozenset()
    seat_item_ids: frozenset[str] = frozenset()
    meter_by_price_id: Mapping[str, str] = field(default_factory=dict)

    def component_of(self, line: StripeInvoiceLine) -> str:
        kind = line.metadata.get(BILLING_KIND)
        if kind == BillingKind.USAGE_ADJUSTMENT:
            return ADJUSTMENT
        if kind == BillingKind.MINIMUM_COMMITMENT:
            return MINIMUM
        if kind == BillingKind.CREDIT:
            return CREDIT
        if kind == BillingKind.SEAT_RENEWAL:
            return SEATS  # seats a renewal draft missed, added to it (billing.seats.renewal)
        is_seat = (
            line.stripe_price_id in self.seat_price_ids
            or line.stripe_subscription_item_id in self.seat_item_ids
        )
        if is_seat:
            return SEAT_PRORATION if line.proration else SEATS
        if line.stripe_price_id and line.stripe_price_id in self.meter_by_price_id:
            return self.meter_by_price_id[line.stripe_price_id]
        return UNEXPECTED

    def components_of(self, lines: Sequence[StripeInvoiceLine]) -> list[str]:
        """Each line's component. A seat proration credit with no seat proration debit at its
        instant is `seat_credit`: the unused time of a term a cancellation or plan change ended
        (a quantity change prorates a credit and a debit at the same instant)."""
        found = [self.component_of(line) for line in lines]
        at_instant = Counter(
            line.period_start_at
            for line, component in zip(lines, found, strict=True)
            if component == SEAT_PRORATION
        )
        return [
            SEAT_CREDIT
            if component == SEAT_PRORATION
            and line.amount <= 0
            and at_instant[line.period_start_at] == 1
            else component
            for line, component in zip(lines, found, strict=True)
        ]
