"""The minimum top-up as usage: one more meter event in the org's push (SPEC.md §2.2).

A subscription provisioned with the book's `minimum_topup` metered item (billing.setup: a `last`
meter, priced at 1 cent per unit) has its top-up reported like a meter: once a usage period has
ended, the push sends `minimum − usage charge` in cents (billing.pricing.charge's usage lines,
from the same ledger totals as the meters' events, before credits) as the period's cumulative
value, with the meters' revision scheme (`usage:{org}:minimum_topup:{period}:r{n}`, a
`usage_periods` row and a `usage_pushes` row recorded before and after, in the same stream
request as the org's other meter events). Stripe bills "the final meter event received in a
billing period" of a `last` meter, so the draft's top-up line is the last value sent: usage that
reaches the minimum later in the grace period sends 0. The month close then makes no invoice-item
call for the top-up.

Once the period's invoice is final, the top-up is no longer reported: what its line billed is
kept (`usage_periods.invoiced_quantity`), and a late change becomes an adjustment invoice item on
the next invoice (billing.usage.minimum, `billing_kind=usage_adjustment`, `meter=minimum`), as
before. A subscription without the item (provisioned before it existed) keeps the invoice-item
top-up on its drafts (billing.usage.minimum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime, timedelta
from decimal import Decimal

from sqlmodel import Session

from billing.core.components import MINIMUM_TOPUP
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.stripe_writes import mark
from billing.pricing.book import Terms
from billing.stripe_gateway.records import StripeInvoice
from billing.usage.meter_send import MeterSend
from billing.usage.minimum import minimum_top_up
from billing.usage.periods import OrgSubscription, new_state, next_push, note_invoice
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import WriteStatus

States = MutableMapping[tuple[str, datetime], UsagePeriod]


def period_final(states: Mapping[tuple[str, datetime], UsagePeriod], period: Period) -> bool:
    """Whether any meter of the period is known final (its invoice is past draft)."""
    return any(
        state.invoice_final_at is not None
        for (_, start), state in states.items()
        if start == period.period_start
    )


def plan_topup(  # noqa: PLR0917 - one period of one org's push, and what is known of it
    session: Session,
    org_id: str,
    sub: OrgSubscription,
    terms: Terms,
    period: Period,
    usage: Mapping[Meter, Decimal],
    states: States,
    invoice: StripeInvoice | None,
    pending: UsagePush | None,
    latest: Callable[[], int | None],
    now: datetime,
    max_age: timedelta,
) -> MeterSend | None:
    """The period's top-up meter event to send (its rows added, `started`), or None: no top-up
    item, the period not over, nothing to top up and nothing sent, Stripe already holding the
    value, or the invoice final (the top-up's line is then noted, for billing.usage.minimum's
    adjustment)."""
    if sub.topup_item is None or period.period_end > now:
        return None  # (terms without a minimum still send 0 over a top-up sent before)
    key = (MINIMUM_TOPUP, period.period_start)
    state = states.get(key)
    final = period_final(states, period)
    wanted = Decimal(minimum_top_up(terms, usage)[1])
    if state is None:
        if final or wanted == 0:
            return None  # nothing was reported, and nothing is to be
        state = new_state(session, org_id, MINIMUM_TOPUP, period, now)
        states[key] = state
    note_invoice(state, invoice, sub.topup_item, 1, now)
    if state.invoice_final_at is None and final:
        # Final by another meter's line with no invoice read in this push: Stripe billed what
        # was sent (as a lifecycle change closing the periods assumes).
        state.invoice_final_at, state.invoiced_quantity = now, state.sent_quantity
    if state.invoice_final_at is not None:
        if pending is not None:
            # The invoice finalized before the revision was confirmed: what its line billed is
            # what counts now (noted above), so the row ends here.
            mark(pending, WriteStatus.DONE, now, note="superseded: the invoice is final")
            session.add(pending)
        return None
    if period.period_end <= now - max_age:
        return None  # too old for a meter event and not known final: the meters report it
    if pending is None and (state.sent_quantity or Decimal(0)) == wanted:
        return None
    if pending is not None and pending.quantity != wanted:
        mark(
            pending,
            WriteStatus.DONE,
            now,
            note="superseded by a later revision before it was confirmed",
        )
        session.add(pending)
        pending = None
    if pending is None:
        pending = next_push(session, state, wanted, now, latest())
    return MeterSend(MINIMUM_TOPUP, period, state, pending)


def metered_top_up(states: Mapping[tuple[str, datetime], UsagePeriod], period: Period) -> int:
    """What the final invoice's top-up line billed for the period, in cents (0: none)."""
    state = states.get((MINIMUM_TOPUP, period.period_start))
    if state is None or state.invoiced_quantity is None:
        return 0
    return int(state.invoiced_quantity)
