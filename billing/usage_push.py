"""Usage push: each org's metered usage reported to Stripe exactly once in effect.

Design (a decision; SPEC.md §4 allowed daily pre-aggregated totals as one option): the catalog's
meters use Stripe's `last` formula, which bills "the final meter event received in a billing
period". Each push sends the *cumulative period-to-date total* of one org, meter and usage
period as one meter event with a deterministic identifier `usage:{org}:{meter}:{period}:r{n}`,
where the revision `n` grows only when the total changes. So:

- a retried or crashed push re-sends the identical identifier and value (Stripe deduplicates
  the identifier for 24 h; after that a repeat carries the same total and changes nothing);
- a correction before finalization (late event, fixed resource report) is a new revision whose
  total replaces the old one — nothing is ever added twice;
- one request per org and meter per push, however many days or events the period holds, and
  Stripe's usage period (anchored at the subscription's creation) needs no alignment with UTC
  days. Pushes are serialised per org (the task holds the org lock), so revisions arrive in
  order, and each revision's timestamp is `min(now, period_end − 1 s)`, never decreasing.

Once the period's invoice is final (read from Stripe: the invoice holding the metered item's
line for that period is no longer a draft) nothing more is reported to the meter: a later
change of the ledger total becomes a `usage_adjustment` invoice item on the next invoice,
priced as the difference of the meter line, and is visible to reconciliation.

The local push ledger (`usage_periods`, `usage_pushes`, `usage_adjustments`) shows per
org/meter/period what the ledger says, what was sent, what Stripe confirmed (`verify=True`
reads Stripe's meter event summaries) and what was invoiced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.book_cache import BookCache
from billing.catalog import catalog_entries, event_name, meter_key
from billing.errors import PermanentBillingError
from billing.expected_invoice import org_ledger
from billing.meters import Interval, Meter
from billing.periods import Period, term_containing, term_period, to_unix
from billing.pricebook import Terms
from billing.pricing import price_meter
from billing.stripe_gateway.records import (
    StripeInvoice,
    StripeInvoiceItem,
    StripeMeterEvent,
    StripeMeterEventSummary,
)
from models.ledger import OrgPlanChange
from models.push_records import PushStatus, UsageAdjustment, UsagePeriod, UsagePush
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
)

log = structlog.get_logger(__name__)

# Stripe refuses meter events older than 35 days; periods that ended before this are only ever
# settled through adjustments.
METER_EVENT_MAX_AGE = timedelta(days=35)
ADJUSTMENT_KIND = "usage_adjustment"


class UsageGateway(Protocol):
    """The part of the Stripe gateway usage push uses (a fake in unit tests)."""

    def create_meter_event(
        self,
        *,
        event_name: str,
        stripe_customer_id: str,
        value: int | Decimal,
        timestamp_at: datetime,
        identifier: str,
        idempotency_key: str | None = None,
    ) -> StripeMeterEvent: ...

    def list_invoices(
        self,
        *,
        stripe_customer_id: str | None = None,
        stripe_subscription_id: str | None = None,
        status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None,
        created_from_at: datetime | None = None,
        created_before_at: datetime | None = None,
    ) -> list[StripeInvoice]: ...

    def create_invoice_item(
        self,
        *,
        stripe_customer_id: str,
        amount: int,
        currency: str,
        description: str,
        idempotency_key: str,
        stripe_subscription_id: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> StripeInvoiceItem: ...

    def list_meter_event_summaries(
        self,
        stripe_meter_id: str,
        *,
        stripe_customer_id: str,
        start_at: datetime,
        end_at: datetime,
        value_grouping_window: Literal["day", "hour"] | None = None,
    ) -> list[StripeMeterEventSummary]: ...


@dataclass(frozen=True)
class MeterPushResult:
    meter: str
    period_start_at: datetime
    period_end_at: datetime
    ledger_quantity: Decimal
    sent_quantity: Decimal | None
    action: str  # sent | unchanged | adjusted | final | failed
    revision: int = 0
    confirmed_quantity: Decimal | None = None
    adjustment_amount: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class UsagePushOutcome:
    org_id: str
    action: str  # pushed | unchanged | not_provisioned | failed
    results: tuple[MeterPushResult, ...] = ()

    @property
    def meter_events_sent(self) -> int:
        return sum(1 for r in self.results if r.action == "sent")


@dataclass(frozen=True)
class _Subscription:
    stripe_customer_id: str
    stripe_subscription_id: str
    anchor_at: datetime  # start of the metered items' first period (Stripe's anchor)
    items: dict[Meter, str]  # meter -> stripe subscription item id


@dataclass(frozen=True)
class _Meter:
    """One org, meter and usage period being pushed, with the ledger's total for it."""

    org_id: str
    sub: _Subscription
    terms: Terms
    meter: Meter
    stripe_item_id: str
    period: Period
    quantity: Decimal
    now: datetime


class UsagePusher:
    """`push_org(org_id, now)` reports every open usage period of one org; safe to repeat."""

    def __init__(
        self, engine: Engine, gateway: UsageGateway, books: BookCache | None = None
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.books = books or BookCache()

    def push_org(
        self, org_id: str, now: datetime, *, verify: bool = False, within: Period | None = None
    ) -> UsagePushOutcome:
        """Push every open usage period of the org (only those overlapping `within`, if given);
        `verify` also reads back Stripe's aggregate for each period."""
        subscription = self._subscription(org_id)
        terms = self._terms(org_id, now)
        if subscription is None or terms is None or not subscription.items:
            return UsagePushOutcome(org_id, "not_provisioned")
        periods = self._open_periods(org_id, subscription, now)
        if within is not None:
            periods = [p for p in periods if p.overlaps(within)]
        invoices = self._invoices_by_period(subscription, periods, now)
        results: list[MeterPushResult] = []
        for period in periods:
            totals = self._ledger_totals(org_id, period, now)
            invoice = invoices.get(period.period_start)
            for meter, stripe_item_id in subscription.items.items():
                if meter not in terms.meters:
                    continue
                quantity = totals.get(meter, Decimal(0))
                results.append(
                    self._push_meter(
                        _Meter(
                            org_id,
                            subscription,
                            terms,
                            meter,
                            stripe_item_id,
                            period,
                            quantity,
                            now,
                        ),
                        invoice,
                        verify=verify,
                    )
                )
        if any(r.action == "failed" for r in results):
            action = "failed"
        elif any(r.action in ("sent", "adjusted") for r in results):
            action = "pushed"
        else:
            action = "unchanged"
        log.info(
            "usage.pushed",
            org_id=org_id,
            action=action,
            meter_events=sum(1 for r in results if r.action == "sent"),
            adjustments=sum(1 for r in results if r.action == "adjusted"),
        )
        return UsagePushOutcome(org_id, action, tuple(results))

    # ------------------------------------------------------------------ one meter

    def _push_meter(
        self, m: _Meter, invoice: StripeInvoice | None, *, verify: bool
    ) -> MeterPushResult:
        org_id, sub, terms, meter, stripe_item_id = (
            m.org_id,
            m.sub,
            m.terms,
            m.meter,
            m.stripe_item_id,
        )
        period, quantity, now = m.period, m.quantity, m.now
        with Session(self.engine, expire_on_commit=False) as session:
            state = self._period_row(session, m)
            if state.invoice_final_at is None and invoice is not None and invoice.status != "draft":
                line_quantity = sum(
                    (
                        line.quantity_decimal or Decimal(0)
                        for line in invoice.lines
                        if line.stripe_subscription_item_id == stripe_item_id and not line.proration
                    ),
                    Decimal(0),
                )
                state.invoice_final_at = now
                state.stripe_invoice_id = invoice.stripe_invoice_id
                state.invoiced_quantity = line_quantity
                session.add(state)
                session.commit()
            if state.invoice_final_at is not None:
                return self._adjust(session, m, state)
            if period.period_end <= now - METER_EVENT_MAX_AGE:
                return self._result(
                    m,
                    state,
                    "failed",
                    error="period ended over 35 days ago and its invoice was "
                    "not found final: settle it by hand",
                )
            pending = session.exec(
                select(UsagePush).where(
                    UsagePush.org_id == org_id,
                    UsagePush.meter == meter.value,
                    UsagePush.period_start_at == period.period_start,
                    UsagePush.status == PushStatus.STARTED,
                )
            ).first()
            if pending is None and state.sent_quantity == quantity:
                confirmed = self._verify(session, m, state) if verify else None
                return self._result(m, state, "unchanged", confirmed=confirmed)
            if pending is not None and pending.quantity != quantity:
                # A crash left a revision in doubt and the total moved on since: settle the old
                # one as superseded (if it reached Stripe, the new revision replaces it).
                pending.status = PushStatus.DONE
                pending.error = "superseded by a later revision before it was confirmed"
                pending.finished_at = now
                session.add(pending)
                session.commit()
                pending = None
            push = pending or self._start_push(session, m, state)
            try:
                self.gateway.create_meter_event(
                    event_name=event_name(terms.book, meter),
                    stripe_customer_id=sub.stripe_customer_id,
                    value=quantity,
                    timestamp_at=push.event_timestamp_at,
                    identifier=push.identifier,
                )
            except PermanentBillingError as exc:
                if exc.code not in ("duplicate_meter_event", "resource_already_exists"):
                    push.status = PushStatus.FAILED
                    push.error = str(exc)[:2000]
                    push.finished_at = now
                    session.add(push)
                    session.commit()
                    return self._result(m, state, "failed", error=str(exc))
                # Stripe already has this identifier: the earlier attempt got through.
            push.status = PushStatus.DONE
            push.finished_at = now
            state.sent_quantity = quantity
            state.sent_revision = push.revision
            state.sent_at = now
            state.ledger_quantity = quantity
            state.updated_at = now
            session.add_all([push, state])
            session.commit()
            confirmed = self._verify(session, m, state) if verify else None
            return self._result(m, state, "sent", revision=push.revision, confirmed=confirmed)

    def _start_push(self, session: Session, m: _Meter, state: UsagePeriod) -> UsagePush:
        org_id, meter, period, quantity, now = m.org_id, m.meter, m.period, m.quantity, m.now
        revision = state.sent_revision + 1
        last = session.exec(
            select(sa.func.max(UsagePush.event_timestamp_at)).where(
                UsagePush.org_id == org_id,
                UsagePush.meter == meter.value,
                UsagePush.period_start_at == period.period_start,
            )
        ).one()
        timestamp = min(now, period.period_end - timedelta(seconds=1))
        if last is not None:
            timestamp = max(timestamp, _aware(last))
        timestamp = max(timestamp, period.period_start).replace(microsecond=0)
        push = UsagePush(
            org_id=org_id,
            meter=meter.value,
            period_start_at=period.period_start,
            revision=revision,
            quantity=quantity,
            identifier=f"usage:{org_id}:{meter.value}:{to_unix(period.period_start)}:r{revision}",
            event_timestamp_at=timestamp,
            status=PushStatus.STARTED,
            created_at=now,
        )
        session.add(push)
        session.commit()  # recorded before the Stripe call
        return push

    def _adjust(self, session: Session, m: _Meter, state: UsagePeriod) -> MeterPushResult:
        """Usage that changed after the invoice was final: an invoice item on the next one."""
        org_id, sub, terms, meter = m.org_id, m.sub, m.terms, m.meter
        period, quantity, now = m.period, m.quantity, m.now
        billed = (state.invoiced_quantity or Decimal(0)) + state.adjusted_quantity
        delta = quantity - billed
        state.ledger_quantity = quantity
        if delta == 0:
            session.add(state)
            session.commit()
            return self._result(m, state, "final")
        price = terms.meters[meter]
        amount = price_meter(price, quantity).amount - price_meter(price, billed).amount
        sequence = 1 + int(
            session.exec(
                select(sa.func.count())
                .select_from(UsageAdjustment)
                .where(
                    UsageAdjustment.org_id == org_id,
                    UsageAdjustment.meter == meter.value,
                    UsageAdjustment.period_start_at == period.period_start,
                )
            ).one()
        )
        key = f"usage-adjust:{org_id}:{meter.value}:{to_unix(period.period_start)}:{sequence}"
        adjustment = UsageAdjustment(
            org_id=org_id,
            meter=meter.value,
            period_start_at=period.period_start,
            sequence=sequence,
            quantity_delta=delta,
            amount=amount,
            idempotency_key=key,
            status=PushStatus.STARTED,
            created_at=now,
        )
        session.add(adjustment)
        session.commit()  # recorded before the Stripe call
        if amount != 0:
            try:
                item = self.gateway.create_invoice_item(
                    stripe_customer_id=sub.stripe_customer_id,
                    amount=amount,
                    currency=terms.currency,
                    description=(
                        f"Late usage for {period.label()}: {meter.value} "
                        f"{'+' if delta > 0 else ''}{delta.normalize():f}"
                    ),
                    idempotency_key=key,
                    stripe_subscription_id=sub.stripe_subscription_id,
                    metadata={
                        "billing_kind": ADJUSTMENT_KIND,
                        "org_id": org_id,
                        "meter": meter.value,
                        "period_start": period.period_start.isoformat(),
                        "quantity_delta": f"{delta.normalize():f}",
                    },
                )
            except PermanentBillingError as exc:
                adjustment.status = PushStatus.FAILED
                adjustment.error = str(exc)[:2000]
                adjustment.finished_at = now
                session.add(adjustment)
                session.commit()
                return self._result(m, state, "failed", error=str(exc))
            adjustment.stripe_invoice_item_id = item.stripe_invoice_item_id
        adjustment.status = PushStatus.DONE
        adjustment.finished_at = now
        state.adjusted_quantity += delta
        state.updated_at = now
        session.add_all([adjustment, state])
        session.commit()
        log.info(
            "usage.adjusted",
            org_id=org_id,
            meter=meter.value,
            period=period.label(),
            quantity_delta=str(delta),
            amount=amount,
        )
        return self._result(m, state, "adjusted", adjustment=amount)

    def _verify(self, session: Session, m: _Meter, state: UsagePeriod) -> Decimal | None:
        sub, meter, period = m.sub, m.meter, m.period
        """Read Stripe's aggregate for the period (what Stripe will bill) into the ledger."""
        entry = catalog_entries(self.engine, [meter_key(self._book_of(state.org_id), meter)])
        stripe_meter_id = next(iter(entry.values())).stripe_meter_id if entry else None
        if stripe_meter_id is None:
            return None
        summaries = self.gateway.list_meter_event_summaries(
            stripe_meter_id,
            stripe_customer_id=sub.stripe_customer_id,
            start_at=_floor_minute(period.period_start),
            end_at=_ceil_minute(period.period_end),
        )
        confirmed = summaries[0].aggregated_value if summaries else Decimal(0)
        state.confirmed_quantity = confirmed
        state.confirmed_at = datetime.now(UTC) if state.sent_at is None else state.sent_at
        session.add(state)
        session.commit()
        return confirmed

    # ------------------------------------------------------------------ reads

    def _period_row(self, session: Session, m: _Meter) -> UsagePeriod:
        org_id, meter, period, quantity, now = m.org_id, m.meter, m.period, m.quantity, m.now
        state = session.exec(
            select(UsagePeriod).where(
                UsagePeriod.org_id == org_id,
                UsagePeriod.meter == meter.value,
                UsagePeriod.period_start_at == period.period_start,
            )
        ).first()
        if state is None:
            state = UsagePeriod(
                org_id=org_id,
                meter=meter.value,
                period_start_at=period.period_start,
                period_end_at=period.period_end,
                ledger_quantity=quantity,
                updated_at=now,
            )
            session.add(state)
            session.commit()
        return state

    def _open_periods(self, org_id: str, sub: _Subscription, now: datetime) -> list[Period]:
        """From the oldest usage period not known final up to the one containing `now`."""
        current = term_containing(sub.anchor_at, Interval.MONTH, max(now, sub.anchor_at))
        with Session(self.engine) as session:
            oldest_open = session.exec(
                select(sa.func.min(UsagePeriod.period_start_at)).where(
                    UsagePeriod.org_id == org_id, col(UsagePeriod.invoice_final_at).is_(None)
                )
            ).one()
            newest = session.exec(
                select(sa.func.max(UsagePeriod.period_start_at)).where(UsagePeriod.org_id == org_id)
            ).one()
        # Periods never seen start after the newest known one (or at the anchor).
        start = _aware(oldest_open) if oldest_open is not None else None
        if newest is not None:
            after_newest = term_containing(sub.anchor_at, Interval.MONTH, _aware(newest)).period_end
            start = min(start, after_newest) if start else after_newest
        start = start or sub.anchor_at
        periods: list[Period] = []
        index = 0
        while True:
            period = term_period(sub.anchor_at, Interval.MONTH, index)
            index += 1
            if period.period_end <= start:
                continue
            if period.period_start > current.period_start:
                return periods
            periods.append(period)

    def _invoices_by_period(
        self, sub: _Subscription, periods: Sequence[Period], now: datetime
    ) -> dict[datetime, StripeInvoice]:
        """The Stripe invoice billing each ended period's metered items, by period start."""
        ended = [p for p in periods if p.period_end <= now]
        if not ended:
            return {}
        invoices = self.gateway.list_invoices(
            stripe_subscription_id=sub.stripe_subscription_id,
            created_from_at=ended[0].period_end - timedelta(minutes=1),
        )
        item_ids = set(sub.items.values())
        found: dict[datetime, StripeInvoice] = {}
        for invoice in invoices:
            if invoice.status == "void":
                continue
            for line in invoice.lines:
                if line.stripe_subscription_item_id in item_ids and line.period_start_at:
                    found.setdefault(line.period_start_at, invoice)
        return found

    def _ledger_totals(self, org_id: str, period: Period, now: datetime) -> dict[Meter, Decimal]:
        """Usage in the period so far: events and resource-hours up to `now` (a full hour
        counts once it has begun)."""
        end = min(period.period_end, _ceil_hour(now))
        if end <= period.period_start:
            return {}
        with Session(self.engine) as session:
            ledger = org_ledger(session, org_id, Period(period.period_start, end))
        if ledger is None:
            return {}
        totals = dict(ledger.usage)
        totals[Meter.IAC_RESOURCE_HOURS] = Decimal(ledger.resource_hours)
        return totals

    def _terms(self, org_id: str, now: datetime) -> Terms | None:
        with Session(self.engine) as session:
            segment = session.exec(
                select(OrgPlanChange)
                .where(OrgPlanChange.org_id == org_id, OrgPlanChange.at <= now)
                .order_by(col(OrgPlanChange.at).desc())
            ).first()
        if segment is None:
            return None
        return self.books.terms(segment.book, segment.plan, segment.interval, org_id)

    def _book_of(self, org_id: str) -> str:
        with Session(self.engine) as session:
            sub = session.get(StripeSubscriptionRecord, org_id)
        return sub.book if sub else ""

    def _subscription(self, org_id: str) -> _Subscription | None:
        with Session(self.engine) as session:
            customer = session.get(StripeCustomerRecord, org_id)
            sub = session.get(StripeSubscriptionRecord, org_id)
            rows = session.exec(
                select(StripeSubscriptionItemRecord).where(
                    StripeSubscriptionItemRecord.org_id == org_id
                )
            ).all()
        if (
            customer is None
            or customer.stripe_customer_id is None
            or sub is None
            or sub.stripe_subscription_id is None
        ):
            return None
        items: dict[Meter, str] = {}
        anchors: list[datetime] = []
        for row in rows:
            if row.component in set(Meter):
                items[Meter(row.component)] = row.stripe_subscription_item_id
                if row.current_period_start_at is not None:
                    anchors.append(row.current_period_start_at)
        anchor = min(anchors) if anchors else sub.term_start_at
        return _Subscription(
            customer.stripe_customer_id, sub.stripe_subscription_id, _aware(anchor), items
        )

    @staticmethod
    def _result(
        m: _Meter,
        state: UsagePeriod,
        action: str,
        *,
        revision: int = 0,
        confirmed: Decimal | None = None,
        adjustment: int | None = None,
        error: str | None = None,
    ) -> MeterPushResult:
        return MeterPushResult(
            meter=m.meter.value,
            period_start_at=m.period.period_start,
            period_end_at=m.period.period_end,
            ledger_quantity=m.quantity,
            sent_quantity=state.sent_quantity,
            action=action,
            revision=revision or state.sent_revision,
            confirmed_quantity=confirmed,
            adjustment_amount=adjustment,
            error=error,
        )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _ceil_hour(at: datetime) -> datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


def _floor_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _ceil_minute(at: datetime) -> datetime:
    floor = _floor_minute(at)
    return floor if floor == at else floor + timedelta(minutes=1)
