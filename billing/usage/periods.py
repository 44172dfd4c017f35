"""Which usage periods of an org are open, and what the ledger and Stripe say about them."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.components import MINIMUM_TOPUP
from billing.core.keys import meter_event_identifier
from billing.core.meters import Interval, Meter
from billing.core.periods import Period, term_containing, term_period
from billing.ledger.queries import org_ledger
from billing.pricing.charge import ledger_quantity
from billing.pricing.lifecycle import NO_PLAN
from billing.stripe_gateway.ports import InvoiceReader
from billing.stripe_gateway.records import StripeInvoice
from billing.usage.invoice_mirror import CREATED_MARGIN, match_periods, mirrored_periods
from models.invoice_mirror import StripeInvoiceMirror
from models.ledger import OrgPlanChange, ResourceReport, UsageEvent
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)


@dataclass(frozen=True)
class OrgSubscription:
    """An org's Stripe customer, subscription and metered items (Stripe's usage periods)."""

    stripe_customer_id: str
    stripe_subscription_id: str
    anchor_at: datetime  # start of the metered items' first period (Stripe's anchor)
    items: dict[Meter, str]  # meter -> stripe subscription item id
    # When the ledger ends this subscription (a plan change or a cancellation, SPEC §10): its
    # last usage period is cut short there.
    ends_at: datetime | None = None
    generation_at: datetime | None = None  # the ledger's start of this subscription
    ended: bool = False  # canceled: no later invoice will sweep a pending item
    # The minimum top-up's metered item (billing.usage.topup); None for a subscription
    # provisioned without one, whose top-up stays an invoice item (billing.usage.minimum).
    topup_item: str | None = None


def org_subscription(session: Session, org_id: str) -> OrgSubscription | None:
    customer = session.get(StripeCustomerRecord, org_id)
    sub = session.get(StripeSubscriptionRecord, org_id)
    if customer is None or sub is None:
        return None
    items = session.exec(
        select(StripeSubscriptionItemRecord).where(StripeSubscriptionItemRecord.org_id == org_id)
    ).all()
    plan_ats = session.exec(select(OrgPlanChange.at).where(OrgPlanChange.org_id == org_id)).all()
    return subscription_from(customer, sub, items, plan_ats)


def subscription_from(
    customer: StripeCustomerRecord,
    sub: StripeSubscriptionRecord,
    item_rows: Iterable[StripeSubscriptionItemRecord],
    plan_ats: Iterable[datetime],
) -> OrgSubscription | None:
    """The org's subscription from its records and the instants of its plan rows (None: not
    provisioned in Stripe)."""
    if customer.stripe_customer_id is None or sub.stripe_subscription_id is None:
        return None
    items: dict[Meter, str] = {}
    anchors: list[datetime] = []
    topup_item: str | None = None
    for row in item_rows:
        if row.component == MINIMUM_TOPUP:
            # An earlier subscription's item (its terms had a minimum, these do not) is not ours.
            if row.stripe_subscription_id == sub.stripe_subscription_id:
                topup_item = row.stripe_subscription_item_id
        elif row.component in set(Meter):
            items[Meter(row.component)] = row.stripe_subscription_item_id
            if row.current_period_start_at is not None:
                anchors.append(row.current_period_start_at)
    anchor = min(anchors) if anchors else sub.term_start_at
    if sub.plan == NO_PLAN:
        # Canceled: the record keeps the ended subscription; it ran from the plan row before
        # the cancellation to the cancellation (only late usage is pushed for it).
        started = max((at for at in plan_ats if at < sub.term_start_at), default=None)
        return OrgSubscription(
            customer.stripe_customer_id,
            sub.stripe_subscription_id,
            anchor,
            items,
            sub.term_start_at,
            started,
            ended=True,
            topup_item=topup_item,
        )
    ends_at = min((at for at in plan_ats if at > sub.term_start_at), default=None)
    return OrgSubscription(
        customer.stripe_customer_id,
        sub.stripe_subscription_id,
        anchor,
        items,
        ends_at,
        sub.term_start_at,
        topup_item=topup_item,
    )


# A ledger row committed while a push was reading may carry a `received_at` just before the
# push's `now`: a final period is looked at again for this long after its last look.
LATE_MARGIN = timedelta(minutes=15)


def late_final_periods(session: Session, org_ids: Collection[str]) -> dict[str, list[UsagePeriod]]:
    """By org, the orgs' final usage periods (of any age) that the ledger changed after they were
    last looked at: usage events of the period's meter dated in it, or resource reports dated
    before its end, received since. Each becomes an adjustment on the next invoice (SPEC §3,
    §10): late usage is never dropped."""
    final = (
        select(UsagePeriod)
        .where(
            col(UsagePeriod.org_id).in_(list(org_ids)),
            col(UsagePeriod.invoice_final_at).is_not(None),
        )
        .subquery()
    )
    usage = (
        select(final.c.id, sa.func.max(UsageEvent.received_at))
        .join(
            UsageEvent,
            sa.and_(
                col(UsageEvent.org_id) == final.c.org_id,
                col(UsageEvent.meter) == final.c.meter,
                col(UsageEvent.at) >= final.c.period_start_at,
                col(UsageEvent.at) < final.c.period_end_at,
                col(UsageEvent.received_at) > final.c.invoice_final_at,
            ),
        )
        .group_by(final.c.id)
    )
    resources = (
        select(final.c.id, sa.func.max(ResourceReport.received_at))
        .where(final.c.meter == Meter.IAC_RESOURCE_HOURS.value)
        .join(
            ResourceReport,
            sa.and_(
                col(ResourceReport.org_id) == final.c.org_id,
                col(ResourceReport.at) < final.c.period_end_at,
                col(ResourceReport.received_at) > final.c.invoice_final_at,
            ),
        )
        .group_by(final.c.id)
    )
    latest: dict[int, datetime] = {}
    for period_id, received_at in [*session.exec(usage).all(), *session.exec(resources).all()]:
        latest[period_id] = max(received_at, latest.get(period_id, received_at))
    found: dict[str, list[UsagePeriod]] = {}
    if not latest:
        return found
    rows = session.exec(select(UsagePeriod).where(col(UsagePeriod.id).in_(list(latest))))
    for row in rows:
        if row.id and latest[row.id] > row.updated_at - LATE_MARGIN:
            found.setdefault(row.org_id, []).append(row)
    return found


def periods_to_push(
    session: Session,
    sub: OrgSubscription,
    now: datetime,
    known: Iterable[UsagePeriod],
    late: Iterable[UsagePeriod],
) -> tuple[dict[tuple[str, datetime], UsagePeriod], list[Period]]:
    """The org's `known` periods (recent ones, by meter and start), and the periods to push
    now: the open ones, and the `late` final ones the ledger changed since (adjustments)."""
    states = {(row.meter, row.period_start_at): row for row in known}
    if sub.ends_at is not None:
        for row in states.values():  # a period pushed before the ledger ended its subscription
            if (
                row.invoice_final_at is None
                and row.period_start_at < sub.ends_at < row.period_end_at
            ):
                row.period_end_at = sub.ends_at
                session.add(row)
    periods = open_periods(sub, states.values(), now)
    for row in late:
        states.setdefault((row.meter, row.period_start_at), row)
        period = Period(row.period_start_at, row.period_end_at)
        if period not in periods:
            periods.append(period)
    return states, sorted(periods)


def open_periods(
    sub: OrgSubscription, states: Iterable[UsagePeriod], now: datetime
) -> list[Period]:
    """From the oldest usage period not known final up to the one containing `now`."""
    rows = list(states)
    current = term_containing(sub.anchor_at, Interval.MONTH, max(now, sub.anchor_at))
    open_starts = [r.period_start_at for r in rows if r.invoice_final_at is None]
    known_ends = [r.period_end_at for r in rows]
    # Periods never pushed start after the newest known one (or at the anchor).
    start = min([*open_starts, max(known_ends)]) if known_ends else sub.anchor_at
    periods: list[Period] = []
    index = 0
    while True:
        period = term_period(sub.anchor_at, Interval.MONTH, index)
        index += 1
        if period.period_start > current.period_start:
            return periods
        if sub.ends_at is not None:
            if period.period_start >= sub.ends_at:
                return periods
            period = Period(period.period_start, min(period.period_end, sub.ends_at))
        if period.period_end > start:
            periods.append(period)


def ledger_totals(
    session: Session, org_id: str, period: Period, now: datetime
) -> dict[Meter, Decimal]:
    """Usage in the period so far: events and resource-hours up to `now` (a full hour counts
    once it has begun)."""
    end = min(period.period_end, ceil_to(now, timedelta(hours=1)))
    if end <= period.period_start:
        return {}
    ledger = org_ledger(session, org_id, Period(period.period_start, end))
    if ledger is None:
        return {}
    totals = dict(ledger.usage)
    totals[Meter.IAC_RESOURCE_HOURS] = Decimal(ledger.resource_hours)
    return totals


def note_invoice(
    state: UsagePeriod,
    invoice: StripeInvoice | None,
    stripe_item_id: str,
    per: int,
    now: datetime,
) -> None:
    """Mark the period final once Stripe's invoice for it is past draft; keep what it billed
    (in ledger units: Stripe shows the price's unit, `per` of them)."""
    if state.invoice_final_at is not None or invoice is None or invoice.status == "draft":
        return
    state.invoice_final_at = now
    state.stripe_invoice_id = invoice.stripe_invoice_id
    state.invoiced_quantity = ledger_quantity(
        sum(
            (
                line.quantity_decimal or Decimal(0)
                for line in invoice.lines
                if line.stripe_subscription_item_id == stripe_item_id and not line.proration
            ),
            Decimal(0),
        ),
        per,
    )


def invoices_by_period(
    gateway: InvoiceReader,
    sub: OrgSubscription,
    periods: Sequence[Period],
    now: datetime,
    *,
    session: Session | None = None,
    mirrored: Sequence[StripeInvoiceMirror] | None = None,
) -> dict[datetime, StripeInvoice]:
    """The Stripe invoice billing each ended period's metered items, by period start: from the
    local invoice mirror when it can be trusted for every ended period (`session` given, and the
    subscription's `mirrored` rows if already read; see billing.usage.invoice_mirror), else from
    Stripe's listing of the subscription's invoices."""
    ended = [p for p in periods if p.period_end <= now]
    if not ended:
        return {}
    item_ids = set(sub.items.values())
    if session is not None:
        found = mirrored_periods(
            session, sub.stripe_subscription_id, item_ids, ended, now, mirrored
        )
        if found is not None:
            return found
        session.commit()  # nothing open while Stripe is read
    invoices = gateway.list_invoices(
        stripe_subscription_id=sub.stripe_subscription_id,
        created_from_at=ended[0].period_end - CREATED_MARGIN,
    )
    return match_periods(invoices, item_ids)


def new_state(
    session: Session, org_id: str, meter: str, period: Period, now: datetime
) -> UsagePeriod:
    """The bookkeeping row of a meter's period that was never pushed (added to the session)."""
    state = UsagePeriod(
        org_id=org_id,
        meter=str(meter),
        period_start_at=period.period_start,
        period_end_at=period.period_end,
        ledger_quantity=Decimal(0),
        updated_at=now,
    )
    session.add(state)
    return state


def next_push(
    session: Session, state: UsagePeriod, quantity: Decimal, now: datetime, latest: int | None
) -> UsagePush:
    """The period's next revision, to report the cumulative `quantity` (added to the session,
    `started`): its timestamp is `min(now, period_end − 1 s)`, never before the last one's.
    `latest` is the newest revision recorded for the period, sent or not (latest_revision): a
    revision Stripe refused for good is `failed`, and the next one must not reuse its identifier
    (nor its row)."""
    org_id, meter = state.org_id, state.meter
    period = Period(state.period_start_at, state.period_end_at)
    revision = max(state.sent_revision, latest or 0) + 1
    timestamp = min(now, period.period_end - timedelta(seconds=1))
    if state.sent_at is not None:
        timestamp = max(timestamp, min(state.sent_at, period.period_end - timedelta(seconds=1)))
    timestamp = max(timestamp, period.period_start).replace(microsecond=0)
    push = UsagePush(
        org_id=org_id,
        meter=meter,
        period_start_at=period.period_start,
        revision=revision,
        quantity=quantity,
        identifier=meter_event_identifier(org_id, meter, period.period_start, revision),
        event_timestamp_at=timestamp,
        status=WriteStatus.STARTED,
        created_at=now,
    )
    session.add(push)
    return push


def latest_revisions(
    session: Session, org_ids: Collection[str], since: datetime
) -> dict[tuple[str, str, datetime], int]:
    """The newest revision recorded, sent or not, per (org, meter, period start) of the orgs'
    periods starting at or after `since`. Read without a flush: the rows a push added so far
    are other meters' and periods' (one revision per meter and period a push), so they go to the
    database together at its commit."""
    with session.no_autoflush:
        rows = session.exec(
            select(
                UsagePush.org_id,
                UsagePush.meter,
                UsagePush.period_start_at,
                sa.func.max(UsagePush.revision),
            )
            .where(
                col(UsagePush.org_id).in_(list(org_ids)),
                col(UsagePush.period_start_at) >= since,
            )
            .group_by(col(UsagePush.org_id), col(UsagePush.meter), col(UsagePush.period_start_at))
        ).all()
    return {(org, meter, _aware(start)): revision for org, meter, start, revision in rows}


def _aware(at: datetime) -> datetime:
    """SQLite gives a grouped column back naive (it is UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def ceil_to(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    remainder = (at - epoch) % step
    return at if not remainder else at + (step - remainder)
