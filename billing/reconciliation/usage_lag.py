"""Whether Stripe's meters already hold the usage totals we pushed for a draft's period.

Stripe aggregates meter events asynchronously: its meter event summaries and draft invoices
"might not immediately reflect recently received meter events"
(https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage). A draft is judged
only once the summaries over its period show, for every meter, the total we sent
(`usage_periods.sent_quantity`, in the meter's unit). Until then, and until a deadline well
inside Stripe's one-hour finalization grace period, the reconciliation is `awaiting_usage`:
stored, never held, never `matched`, and checked again. Past the deadline the draft is judged as
it is, and held if it differs: money is never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlmodel import Session, col, select

from billing.core.components import MINIMUM, MINIMUM_TOPUP
from billing.core.meters import Meter
from billing.core.money import format_decimal
from billing.core.periods import Period
from billing.pricing.book import Terms
from billing.pricing.charge import meter_value
from billing.reconciliation.match import LineComparison
from models.push_records import UsagePeriod

_METERS = frozenset(meter.value for meter in Meter)

# How long after a draft's period ends the reconciliation waits for Stripe's meters to show
# what was pushed: a third of Stripe's default one-hour grace period, leaving time to act on a
# held draft.
DEFAULT_USAGE_DEADLINE = timedelta(minutes=20)


@dataclass(frozen=True)
class LaggingMeter:
    meter: str
    sent_value: Decimal  # what we pushed, in the meter's unit
    stripe_value: Decimal  # what Stripe's summaries hold now


@dataclass(frozen=True)
class UsageLag:
    """The meters whose summaries do not show our pushed totals yet, and until when we wait."""

    meters: tuple[LaggingMeter, ...]
    deadline_at: datetime

    def waiting(self, now: datetime) -> bool:
        return bool(self.meters) and now < self.deadline_at

    def note(self) -> str:
        """In plain words, for support staff."""
        shown = "; ".join(
            f"{m.meter}: we sent {format_decimal(m.sent_value)}, Stripe shows "
            f"{format_decimal(m.stripe_value)} so far"
            for m in self.meters
        )
        return (
            "Not judged yet: Stripe is still counting the usage we sent for this period "
            f"({shown}). Stripe adds up usage with a delay, so this draft is checked again "
            f"shortly; it is not held meanwhile. If Stripe still differs at "
            f"{self.deadline_at:%Y-%m-%d %H:%M} UTC, the draft is judged as it is then, and "
            "held if it is wrong."
        )


def pushed_totals(
    session: Session, org_id: str, period: Period, terms: Terms
) -> dict[str, Decimal]:
    """Meter code → the total we sent for the period, as Stripe's meter holds it (`minimum`:
    the top-up's meter, billing.usage.topup)."""
    rows = session.exec(
        select(UsagePeriod).where(
            UsagePeriod.org_id == org_id,
            UsagePeriod.period_start_at == period.period_start,
            col(UsagePeriod.sent_quantity).is_not(None),
        )
    ).all()
    totals = {}
    for row in rows:
        if row.meter == MINIMUM_TOPUP and row.sent_quantity is not None:
            totals[MINIMUM] = row.sent_quantity  # cents, the top-up meter's unit
            continue
        price = terms.meters.get(Meter(row.meter)) if row.meter in _METERS else None
        if price is None or row.sent_quantity is None:
            continue
        totals[row.meter] = meter_value(row.sent_quantity, price.per)
    return totals


def draft_differs(line: LineComparison) -> bool:
    """Whether a metered draft line shows another quantity than the ledger's (the minimum
    top-up, judged on amounts, another amount)."""
    if line.component == MINIMUM:
        return line.stripe_amount != line.expected_amount
    return line.expected_quantity is not None and line.stripe_quantity != line.expected_quantity


def usage_lag(
    pushed: Mapping[str, Decimal],
    lines: Iterable[LineComparison],
    stripe_meter_ids: Mapping[str, str],
    read_value: Callable[[str], Decimal],
    deadline_at: datetime,
) -> UsageLag:
    """Compare each pushed total with Stripe's current value (`read_value(stripe_meter_id)`,
    the summaries over the period). Only meters whose draft line differs from the ledger are
    read: a draft showing the ledger's quantity already reflects what we sent, and those
    summaries are read anyway to project the draft (billing.reconciliation.drafts), so the
    check costs no extra Stripe request."""
    differing = {line.component for line in lines if draft_differs(line)}
    lagging = []
    for meter, sent in sorted(pushed.items()):
        stripe_meter_id = stripe_meter_ids.get(meter)
        if stripe_meter_id is None or meter not in differing:
            continue
        value = read_value(stripe_meter_id)
        if value != sent:
            lagging.append(LaggingMeter(meter, sent, value))
    return UsageLag(tuple(lagging), deadline_at)
