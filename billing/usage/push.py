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
change of the ledger total becomes an adjustment on the next invoice (billing.usage.adjustments).

Every meter event is a `usage_pushes` row committed (`started`) before the calls of one org's
push and completed after them; `usage_periods` shows per org/meter/period what the ledger says,
what was sent, what Stripe confirmed (`verify=True` reads Stripe's meter event summaries) and
what was invoiced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.components import MINIMUM
from billing.core.errors import PermanentBillingError
from billing.core.keys import event_name, meter_event_identifier, meter_key
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.pricing.book import Terms
from billing.pricing.book_cache import BookCache
from billing.pricing.charge import ledger_quantity, meter_value
from billing.setup.catalog import catalog_entries
from billing.stripe_gateway.records import (
    StripeInvoice,
    StripeMeterEvent,
    StripeMeterEventSummary,
)
from billing.usage.adjustments import AdjustmentGateway, AdjustmentTarget, adjust_final_period
from billing.usage.minimum import ensure_minimum
from billing.usage.periods import (
    OrgSubscription,
    ceil_to,
    ledger_totals,
    note_invoice,
    open_periods,
    org_subscription,
)
from models.ledger import OrgPlanChange
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)

# Stripe refuses meter events older than 35 days; periods that ended before this are only ever
# settled through adjustments.
METER_EVENT_MAX_AGE = timedelta(days=35)
# Stripe's own codes for an identifier it already has (the emulator answers the first).
_ALREADY_RECEIVED = ("duplicate_meter_event", "resource_already_exists")


class UsageGateway(AdjustmentGateway, Protocol):
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

    def list_meter_event_summaries(
        self,
        stripe_meter_id: str,
        *,
        stripe_customer_id: str,
        start_at: datetime,
        end_at: datetime,
        value_grouping_window: Literal["day", "hour"] | None = None,
    ) -> list[StripeMeterEventSummary]: ...


class MeterPushAction(StrEnum):
    """What a push did for one meter and usage period."""

    SENT = "sent"  # a meter event with the new total reached Stripe
    UNCHANGED = "unchanged"  # Stripe already has the ledger's total
    ADJUSTED = "adjusted"  # the invoice is final: the difference became an invoice item
    FINAL = "final"  # the invoice is final and already bills the ledger's total
    FAILED = "failed"  # Stripe refused for good, or the period is too old to report: see `error`


class UsagePushAction(StrEnum):
    """What one usage push of an org did, all meters and periods together."""

    PUSHED = "pushed"  # at least one meter event or adjustment reached Stripe
    UNCHANGED = "unchanged"
    NOT_PROVISIONED = "not_provisioned"  # no Stripe subscription with metered items yet
    FAILED = "failed"  # at least one meter, period or minimum failed


@dataclass(frozen=True)
class MeterPushResult:
    meter: str
    period_start_at: datetime
    period_end_at: datetime
    ledger_quantity: Decimal
    sent_quantity: Decimal | None
    action: MeterPushAction
    revision: int = 0
    confirmed_quantity: Decimal | None = None
    adjustment_amount: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class MinimumResult:
    period_start_at: datetime
    usage_amount: int
    top_up_amount: int  # the period's whole top-up now on Stripe
    changed_by: int  # added by this push (0 when it already was right)
    error: str | None = None


@dataclass(frozen=True)
class UsagePushOutcome:
    org_id: str
    action: UsagePushAction
    results: tuple[MeterPushResult, ...] = ()
    minimums: tuple[MinimumResult, ...] = ()

    @property
    def meter_events_sent(self) -> int:
        return sum(1 for r in self.results if r.action is MeterPushAction.SENT)


@dataclass
class _Send:
    """A meter event to send: its period state and its `usage_pushes` row."""

    meter: Meter
    period: Period
    state: UsagePeriod
    push: UsagePush
    error: str | None = None


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
        with Session(self.engine, expire_on_commit=False) as session:
            sub = org_subscription(session, org_id)
            terms = self._terms(session, org_id, now)
            if sub is None or terms is None or not sub.items:
                return UsagePushOutcome(org_id, UsagePushAction.NOT_PROVISIONED)
            states = {
                (row.meter, row.period_start_at): row
                for row in session.exec(
                    select(UsagePeriod).where(
                        UsagePeriod.org_id == org_id,
                        col(UsagePeriod.period_end_at) > now - METER_EVENT_MAX_AGE * 3,
                    )
                )
            }
            periods = open_periods(sub, states.values(), now)
            if within is not None:
                periods = [p for p in periods if p.overlaps(within)]
            invoices = self._invoices_by_period(sub, periods, now)
            unfinished = {
                (row.meter, row.period_start_at): row
                for row in session.exec(
                    select(UsagePush).where(
                        UsagePush.org_id == org_id, UsagePush.status == WriteStatus.STARTED
                    )
                )
            }
            results: list[MeterPushResult] = []
            sends: list[_Send] = []
            period_totals: dict[datetime, dict[Meter, Decimal]] = {}
            for period in periods:
                totals = ledger_totals(session, org_id, period, now)
                period_totals[period.period_start] = totals
                for meter, stripe_item_id in sub.items.items():
                    if meter not in terms.meters:
                        continue
                    quantity = totals.get(meter, Decimal(0))
                    key = (meter.value, period.period_start)
                    state = states.get(key) or _new_state(session, org_id, meter, period, now)
                    states[key] = state
                    note_invoice(
                        state,
                        invoices.get(period.period_start),
                        stripe_item_id,
                        terms.meters[meter].per,
                        now,
                    )
                    if state.invoice_final_at is not None:
                        target = AdjustmentTarget(
                            org_id,
                            sub.stripe_customer_id,
                            sub.stripe_subscription_id,
                            terms,
                            meter,
                            period,
                            now,
                        )
                        results.append(self._adjust(session, target, state, quantity))
                        continue
                    if period.period_end <= now - METER_EVENT_MAX_AGE:
                        results.append(
                            _result(
                                meter,
                                period,
                                state,
                                quantity,
                                MeterPushAction.FAILED,
                                error="ended over 35 days ago and its invoice "
                                "was not found final: settle it by hand",
                            )
                        )
                        continue
                    pending = unfinished.get(key)
                    if pending is None and state.sent_quantity == quantity:
                        results.append(
                            _result(meter, period, state, quantity, MeterPushAction.UNCHANGED)
                        )
                        continue
                    if pending is not None and pending.quantity != quantity:
                        # A crash left a revision in doubt and the total moved on: the new
                        # revision replaces it whether or not it reached Stripe.
                        pending.status = WriteStatus.DONE
                        pending.error = "superseded by a later revision before it was confirmed"
                        pending.finished_at = now
                        session.add(pending)
                        pending = None
                    push = pending or _new_push(session, state, quantity, now)
                    sends.append(_Send(meter, period, state, push))
            session.commit()  # every `started` row is recorded before any Stripe call
            for send in sends:
                self._send(send, sub, terms, now)
                session.add_all([send.push, send.state])
            session.commit()
            for send in sends:
                sent = MeterPushAction.FAILED if send.error else MeterPushAction.SENT
                results.append(
                    _result(
                        send.meter,
                        send.period,
                        send.state,
                        send.push.quantity,
                        sent,
                        revision=send.push.revision,
                        error=send.error,
                    )
                )
            if verify:
                results = [self._verify(session, sub, terms, r, states) for r in results]
                session.commit()
            minimums = self._minimums(
                session,
                org_id=org_id,
                sub=sub,
                terms=terms,
                periods=periods,
                invoices=invoices,
                states=states,
                period_totals=period_totals,
                now=now,
            )
        if any(m.error for m in minimums):
            results.append(
                MeterPushResult(
                    MINIMUM,
                    periods[0].period_start,
                    periods[-1].period_end,
                    Decimal(0),
                    None,
                    MeterPushAction.FAILED,
                    error="; ".join(m.error for m in minimums if m.error),
                )
            )
        actions = {r.action for r in results}
        action = (
            UsagePushAction.FAILED
            if MeterPushAction.FAILED in actions
            else UsagePushAction.PUSHED
            if actions & {MeterPushAction.SENT, MeterPushAction.ADJUSTED}
            else UsagePushAction.UNCHANGED
        )
        log.info(
            "usage.pushed",
            org_id=org_id,
            action=action,
            meter_events=sum(1 for r in results if r.action is MeterPushAction.SENT),
            adjustments=sum(1 for r in results if r.action is MeterPushAction.ADJUSTED),
        )
        return UsagePushOutcome(org_id, action, tuple(results), tuple(minimums))

    # ------------------------------------------------------------------ Stripe writes

    def _minimums(
        self,
        session: Session,
        *,
        org_id: str,
        sub: OrgSubscription,
        terms: Terms,
        periods: Sequence[Period],
        invoices: Mapping[datetime, StripeInvoice],
        states: Mapping[tuple[str, datetime], UsagePeriod],
        period_totals: Mapping[datetime, Mapping[Meter, Decimal]],
        now: datetime,
    ) -> list[MinimumResult]:
        """The minimum-commitment top-up of every ended period Stripe has invoiced: on the
        draft during the grace period, pending for the next invoice once it is final."""
        if terms.minimum_amount <= 0:
            return []
        found: list[MinimumResult] = []
        for period in periods:
            invoice = invoices.get(period.period_start)
            if period.period_end > now or invoice is None:
                continue  # not over yet, or Stripe has not drafted its invoice
            final = any(
                state.invoice_final_at is not None
                for (_, start), state in states.items()
                if start == period.period_start
            )
            done = ensure_minimum(
                session,
                self.gateway,
                org_id=org_id,
                stripe_customer_id=sub.stripe_customer_id,
                stripe_subscription_id=sub.stripe_subscription_id,
                stripe_invoice_id=None if final else invoice.stripe_invoice_id,
                terms=terms,
                period=period,
                usage=period_totals.get(period.period_start, {}),
                now=now,
            )
            if done is not None:
                found.append(
                    MinimumResult(
                        period.period_start,
                        done.usage_amount,
                        done.amount,
                        done.changed_by,
                        done.error,
                    )
                )
        return found

    def _send(self, send: _Send, sub: OrgSubscription, terms: Terms, now: datetime) -> None:
        push, state = send.push, send.state
        try:
            self.gateway.create_meter_event(
                event_name=event_name(terms.book, send.meter),
                stripe_customer_id=sub.stripe_customer_id,
                value=meter_value(push.quantity, terms.meters[send.meter].per),
                timestamp_at=push.event_timestamp_at,
                identifier=push.identifier,
            )
        except PermanentBillingError as exc:
            if exc.code not in _ALREADY_RECEIVED:
                push.status = WriteStatus.FAILED
                push.error = str(exc)[:2000]
                push.finished_at = now
                send.error = str(exc)
                return
            # Stripe already has this identifier: an earlier attempt got through.
        push.status = WriteStatus.DONE
        push.finished_at = now
        state.sent_quantity = push.quantity
        state.sent_revision = push.revision
        state.sent_at = now
        state.ledger_quantity = push.quantity
        state.updated_at = now

    def _adjust(
        self, session: Session, target: AdjustmentTarget, state: UsagePeriod, quantity: Decimal
    ) -> MeterPushResult:
        done = adjust_final_period(session, self.gateway, target, state, quantity)
        action = (
            MeterPushAction.FAILED
            if done.error
            else MeterPushAction.ADJUSTED
            if done.quantity_delta
            else MeterPushAction.FINAL
        )
        return _result(
            target.meter,
            target.period,
            state,
            quantity,
            action,
            adjustment=done.amount,
            error=done.error,
        )

    # ------------------------------------------------------------------ Stripe reads

    def _invoices_by_period(
        self, sub: OrgSubscription, periods: Sequence[Period], now: datetime
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

    def _verify(
        self,
        session: Session,
        sub: OrgSubscription,
        terms: Terms,
        result: MeterPushResult,
        states: Mapping[tuple[str, datetime], UsagePeriod],
    ) -> MeterPushResult:
        """Read Stripe's aggregate for the period (what Stripe will bill) into the ledger."""
        state = states.get((result.meter, result.period_start_at))
        entries = catalog_entries(self.engine, [meter_key(terms.book, Meter(result.meter))])
        stripe_meter_id = next(iter(entries.values())).stripe_meter_id if entries else None
        if state is None or stripe_meter_id is None:
            return result
        summaries = self.gateway.list_meter_event_summaries(
            stripe_meter_id,
            stripe_customer_id=sub.stripe_customer_id,
            start_at=result.period_start_at.replace(second=0, microsecond=0),
            end_at=ceil_to(result.period_end_at, timedelta(minutes=1)),
        )
        value = summaries[0].aggregated_value if summaries else Decimal(0)
        confirmed = ledger_quantity(value, terms.meters[Meter(result.meter)].per)
        state.confirmed_quantity = confirmed
        state.confirmed_at = state.sent_at or datetime.now(UTC)
        session.add(state)
        return MeterPushResult(**{**result.__dict__, "confirmed_quantity": confirmed})

    # ------------------------------------------------------------------ ledger reads

    def _terms(self, session: Session, org_id: str, now: datetime) -> Terms | None:
        segment = session.exec(
            select(OrgPlanChange)
            .where(OrgPlanChange.org_id == org_id, OrgPlanChange.at <= now)
            .order_by(col(OrgPlanChange.at).desc())
        ).first()
        if segment is None:
            return None
        return self.books.terms(segment.book, segment.plan, segment.interval, org_id)


# --------------------------------------------------------------------------- helpers


def _new_state(
    session: Session, org_id: str, meter: Meter, period: Period, now: datetime
) -> UsagePeriod:
    state = UsagePeriod(
        org_id=org_id,
        meter=meter.value,
        period_start_at=period.period_start,
        period_end_at=period.period_end,
        ledger_quantity=Decimal(0),
        updated_at=now,
    )
    session.add(state)
    return state


def _new_push(session: Session, state: UsagePeriod, quantity: Decimal, now: datetime) -> UsagePush:
    org_id, meter = state.org_id, Meter(state.meter)
    period = Period(state.period_start_at, state.period_end_at)
    revision = state.sent_revision + 1
    timestamp = min(now, period.period_end - timedelta(seconds=1))
    if state.sent_at is not None:
        timestamp = max(timestamp, min(state.sent_at, period.period_end - timedelta(seconds=1)))
    timestamp = max(timestamp, period.period_start).replace(microsecond=0)
    push = UsagePush(
        org_id=org_id,
        meter=meter.value,
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


def _result(
    meter: Meter,
    period: Period,
    state: UsagePeriod,
    quantity: Decimal,
    action: MeterPushAction,
    *,
    revision: int = 0,
    adjustment: int | None = None,
    error: str | None = None,
) -> MeterPushResult:
    return MeterPushResult(
        meter=meter.value,
        period_start_at=period.period_start,
        period_end_at=period.period_end,
        ledger_quantity=quantity,
        sent_quantity=state.sent_quantity,
        action=action,
        revision=revision or state.sent_revision,
        adjustment_amount=adjustment,
        error=error,
    )
