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

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.components import CREDIT, MINIMUM
from billing.core.keys import event_name, meter_key
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.stripe_writes import mark, write_to_stripe
from billing.pricing.book import Terms
from billing.pricing.book_cache import BookCache
from billing.pricing.charge import ledger_quantity, meter_value
from billing.pricing.lifecycle import NO_PLAN
from billing.setup.catalog import catalog_entries
from billing.stripe_gateway.ports import InvoiceReader
from billing.stripe_gateway.records import (
    StripeInvoice,
    StripeMeterEvent,
    StripeMeterEventSummary,
)
from billing.usage.adjustments import AdjustmentGateway, AdjustmentTarget, adjust_final_period
from billing.usage.after_end import OneOffGateway, invoice_after_end
from billing.usage.credits import CreditResult, period_credits
from billing.usage.minimum import MinimumResult, period_minimums
from billing.usage.periods import (
    OrgSubscription,
    ceil_to,
    invoices_by_period,
    ledger_totals,
    new_state,
    next_push,
    note_invoice,
    org_subscription,
    periods_to_push,
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


class UsageGateway(AdjustmentGateway, OneOffGateway, InvoiceReader, Protocol):
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
class UsagePushOutcome:
    org_id: str
    action: UsagePushAction
    results: tuple[MeterPushResult, ...] = ()
    minimums: tuple[MinimumResult, ...] = ()
    credits: tuple[CreditResult, ...] = ()

    @property
    def meter_events_sent(self) -> int:
        return sum(1 for r in self.results if r.action is MeterPushAction.SENT)


@dataclass
class _Run:
    """One push of one org: what the steps read and found so far."""

    org_id: str
    now: datetime
    sub: OrgSubscription
    terms: Terms
    states: dict[tuple[str, datetime], UsagePeriod]  # by (meter, period start)
    periods: list[Period]
    invoices: dict[datetime, StripeInvoice] = field(default_factory=dict)  # by period start
    period_totals: dict[datetime, dict[Meter, Decimal]] = field(default_factory=dict)
    results: list[MeterPushResult] = field(default_factory=list)


@dataclass(frozen=True)
class _Send:
    """A meter event to send: its period state and its `usage_pushes` row."""

    meter: Meter
    period: Period
    state: UsagePeriod
    push: UsagePush


class UsagePusher:
    """`push_org(org_id, now)` reports every open usage period of one org; safe to repeat.

    The steps share one session, committed before every Stripe call: nothing of the database
    stays open while Stripe answers.
    """

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
            run = self._open(session, org_id, now, within)
            if run is None:
                return UsagePushOutcome(org_id, UsagePushAction.NOT_PROVISIONED)
            run.invoices = invoices_by_period(
                self.gateway, run.sub, run.periods, now, session=session
            )
            sends = self._plan(session, run)
            self._send_all(session, run, sends)
            if verify:
                run.results = [self._verify(session, run, result) for result in run.results]
                session.commit()
            if run.sub.ended and any(r.action == MeterPushAction.ADJUSTED for r in run.results):
                invoice_after_end(session, self.gateway, org_id, run.sub, now)
            minimums = period_minimums(
                session,
                self.gateway,
                org_id=org_id,
                sub=run.sub,
                terms=run.terms,
                periods=run.periods,
                invoices=run.invoices,
                states=run.states,
                period_totals=run.period_totals,
                now=now,
            )
            credits = period_credits(session, self.gateway, run)  # on the minimum (SPEC §10)
        return self._outcome(run, minimums, credits)

    # ------------------------------------------------------------------ steps

    def _open(
        self, session: Session, org_id: str, now: datetime, within: Period | None
    ) -> _Run | None:
        """The org's subscription, terms and the usage periods still open (None: nothing is
        provisioned to push to)."""
        sub = org_subscription(session, org_id)
        terms = self._terms(session, org_id, now if sub is None else sub.generation_at or now)
        if sub is None or terms is None or not sub.items:
            return None
        states, periods = periods_to_push(
            session, sub, org_id, now, since=now - METER_EVENT_MAX_AGE * 3
        )
        if within is not None:
            periods = [p for p in periods if p.overlaps(within)]
        session.commit()  # the reads end here: Stripe's invoices are read next
        return _Run(org_id, now, sub, terms, states, periods)

    def _plan(self, session: Session, run: _Run) -> list[_Send]:
        """Per period and meter: adjust a final period, or decide the meter event to send.
        Every `started` row is committed before the first meter event is sent."""
        unfinished = {
            (row.meter, row.period_start_at): row
            for row in session.exec(
                select(UsagePush).where(
                    UsagePush.org_id == run.org_id, UsagePush.status == WriteStatus.STARTED
                )
            )
        }
        sends: list[_Send] = []
        for period in run.periods:
            totals = ledger_totals(session, run.org_id, period, run.now)
            run.period_totals[period.period_start] = totals
            for meter, stripe_item_id in run.sub.items.items():
                if meter not in run.terms.meters:
                    continue
                planned = self._plan_meter(
                    session,
                    run,
                    period,
                    meter,
                    stripe_item_id,
                    totals.get(meter, Decimal(0)),
                    unfinished.get((meter.value, period.period_start)),
                )
                if isinstance(planned, _Send):
                    sends.append(planned)
                else:
                    run.results.append(planned)
        session.commit()
        return sends

    def _plan_meter(  # noqa: PLR0917 - one meter of one period, and what is known of it
        self,
        session: Session,
        run: _Run,
        period: Period,
        meter: Meter,
        stripe_item_id: str,
        quantity: Decimal,
        pending: UsagePush | None,
    ) -> MeterPushResult | _Send:
        key = (meter.value, period.period_start)
        state = run.states.get(key) or new_state(session, run.org_id, meter, period, run.now)
        run.states[key] = state
        per = run.terms.meters[meter].per
        note_invoice(state, run.invoices.get(period.period_start), stripe_item_id, per, run.now)
        if state.invoice_final_at is not None:
            return self._adjust(session, run, meter, period, state, quantity)
        if period.period_end <= run.now - METER_EVENT_MAX_AGE:
            return _result(
                meter,
                period,
                state,
                quantity,
                MeterPushAction.FAILED,
                error="ended over 35 days ago and its invoice was not found final: "
                "settle it by hand",
            )
        if pending is None and state.sent_quantity == quantity:
            return _result(meter, period, state, quantity, MeterPushAction.UNCHANGED)
        if pending is not None and pending.quantity != quantity:
            # A crash left a revision in doubt and the total moved on: the new revision
            # replaces it whether or not it reached Stripe.
            mark(
                pending,
                WriteStatus.DONE,
                run.now,
                note="superseded by a later revision before it was confirmed",
            )
            session.add(pending)
            pending = None
        return _Send(meter, period, state, pending or next_push(session, state, quantity, run.now))

    def _send_all(self, session: Session, run: _Run, sends: list[_Send]) -> None:
        for send in sends:
            run.results.append(self._send(session, run, send))

    def _send(self, session: Session, run: _Run, send: _Send) -> MeterPushResult:
        """Send one meter event (its row `started` before, `done` or `failed` after); an
        identifier Stripe already has counts as sent."""
        push, state, now = send.push, send.state, run.now
        value = meter_value(push.quantity, run.terms.meters[send.meter].per)
        name = event_name(run.terms.book, send.meter)
        customer, timestamp_at, identifier = (
            run.sub.stripe_customer_id,
            push.event_timestamp_at,
            push.identifier,
        )

        def sent(_: StripeMeterEvent | None) -> None:
            state.sent_quantity = push.quantity
            state.sent_revision = push.revision
            state.sent_at = now
            state.ledger_quantity = push.quantity
            state.updated_at = now
            session.add(state)

        outcome = write_to_stripe(
            session,
            push,
            now,
            lambda: self.gateway.create_meter_event(
                event_name=name,
                stripe_customer_id=customer,
                value=value,
                timestamp_at=timestamp_at,
                identifier=identifier,
            ),
            on_done=sent,
            already_received=_ALREADY_RECEIVED,
        )
        return _result(
            send.meter,
            send.period,
            state,
            push.quantity,
            MeterPushAction.FAILED if outcome.error else MeterPushAction.SENT,
            revision=push.revision,
            error=outcome.error,
        )

    def _adjust(  # noqa: PLR0917 - one final period's meter
        self,
        session: Session,
        run: _Run,
        meter: Meter,
        period: Period,
        state: UsagePeriod,
        quantity: Decimal,
    ) -> MeterPushResult:
        target = AdjustmentTarget(
            run.org_id,
            run.sub.stripe_customer_id,
            run.sub.stripe_subscription_id,
            run.terms,
            meter,
            period,
            run.now,
        )
        done = adjust_final_period(session, self.gateway, target, state, quantity)
        state.updated_at = run.now  # looked at: a later ledger change makes it late again
        action = (
            MeterPushAction.FAILED
            if done.error
            else MeterPushAction.ADJUSTED
            if done.quantity_delta
            else MeterPushAction.FINAL
        )
        return _result(
            meter, period, state, quantity, action, adjustment=done.amount, error=done.error
        )

    def _verify(self, session: Session, run: _Run, result: MeterPushResult) -> MeterPushResult:
        """Read Stripe's aggregate for the period (what Stripe will bill) into the ledger."""
        state = run.states.get((result.meter, result.period_start_at))
        entries = catalog_entries(self.engine, [meter_key(run.terms.book, Meter(result.meter))])
        stripe_meter_id = next(iter(entries.values())).stripe_meter_id if entries else None
        if state is None or stripe_meter_id is None:
            return result
        summaries = self.gateway.list_meter_event_summaries(
            stripe_meter_id,
            stripe_customer_id=run.sub.stripe_customer_id,
            start_at=result.period_start_at.replace(second=0, microsecond=0),
            end_at=ceil_to(result.period_end_at, timedelta(minutes=1)),
        )
        value = summaries[0].aggregated_value if summaries else Decimal(0)
        confirmed = ledger_quantity(value, run.terms.meters[Meter(result.meter)].per)
        state.confirmed_quantity = confirmed
        state.confirmed_at = state.sent_at or datetime.now(UTC)
        session.add(state)
        return replace(result, confirmed_quantity=confirmed)

    @staticmethod
    def _outcome(
        run: _Run, minimums: list[MinimumResult], credits: list[CreditResult]
    ) -> UsagePushOutcome:
        results = run.results
        for component, errors in ((MINIMUM, minimums), (CREDIT, credits)):
            if any(m.error for m in errors):
                results.append(
                    MeterPushResult(
                        component,
                        run.periods[0].period_start,
                        run.periods[-1].period_end,
                        Decimal(0),
                        None,
                        MeterPushAction.FAILED,
                        error="; ".join(m.error for m in errors if m.error),
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
            org_id=run.org_id,
            action=action,
            meter_events=sum(1 for r in results if r.action is MeterPushAction.SENT),
            adjustments=sum(1 for r in results if r.action is MeterPushAction.ADJUSTED),
        )
        return UsagePushOutcome(run.org_id, action, tuple(results), tuple(minimums), tuple(credits))

    # ------------------------------------------------------------------ ledger reads

    def _terms(self, session: Session, org_id: str, at: datetime) -> Terms | None:
        """The terms of the plan row in effect at `at` (the pushed subscription's start)."""
        segment = session.exec(
            select(OrgPlanChange)
            .where(OrgPlanChange.org_id == org_id, OrgPlanChange.at <= at)
            .order_by(col(OrgPlanChange.at).desc())
        ).first()
        if segment is None or segment.plan == NO_PLAN:
            return None  # not subscribed yet, or canceled
        return self.books.terms(segment.book, segment.plan, segment.interval, org_id)


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
