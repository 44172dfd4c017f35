"""The names of what an invoice bills besides the meter codes, and how Stripe prorates seats.

Each literal is defined here once: `seats` is at the same time a subscription item's component
(its metadata), a part of the seat catalog keys, an expected invoice line's code and a
reconciled component; the `billing_kind` metadata tags the invoice items we create so that
reconciliation recognises them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

SEATS = "seats"  # the seat component and line code
SEAT_PRORATION = "seat_proration"  # a coalesced seat step's prorated line
MINIMUM = "minimum"  # the minimum-commitment top-up line
# The minimum top-up reported as usage: the code of its Stripe meter, of its metered price's
# subscription item (component) and of its `usage_periods` rows; it bills 1 cent per unit, and
# reconciliation sorts its lines into the `minimum` component (billing.usage.topup).
MINIMUM_TOPUP = "minimum_topup"
SEAT_CREDIT = "seat_credit"  # unused prepaid seat time credited when a change ends a term early
CREDIT = "credit"  # the credits applied to a period's usage charge (a negative line)

BILLING_KIND = "billing_kind"  # the metadata key of the invoice items we create


class BillingKind(StrEnum):
    """What an invoice item we created is for (its `billing_kind` metadata value)."""

    USAGE_ADJUSTMENT = "usage_adjustment"  # late usage of a period already invoiced
    MINIMUM_COMMITMENT = "minimum_commitment"  # the top-up of a month under its minimum
    SEAT_RENEWAL = "seat_renewal"  # seats a renewal draft missed (billing.seats.renewal)
    LATE_USAGE_AFTER_END = "late_usage_after_end"  # a one-off invoice (billing.usage.after_end)
    CREDIT = "credit"  # credits paying a period's usage charge (billing.usage.credits)


# Stripe's `proration_behavior` of a subscription item update or an invoice preview.
ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]
