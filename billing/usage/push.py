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
- one meter event per org and meter per push, however many days or events the period holds
  (all of one org's push in one request to the v2 meter event stream), and Stripe's usage
  period (anchored at the subscription's creation) needs no alignment with UTC days. Pushes
  are serialised per org (the task holds the org lock), so revisions arrive in
  order, and each revision's timestamp is `min(now, period_end − 1 s)`, never decreasing.

Once the period's invoice is final (read from Stripe: the invoice holding the metered item's
line for that period is no longer a draft) nothing more is reported to the meter: a later
change of the ledger total becomes an adjustment on the next invoice (billing.usage.adjustments).

Every meter event is a `usage_pushes` row committed (`started`) before the calls of one org's
push and completed after them (billing.usage.meter_send: the stream, or the v1 fallback);
`usage_periods` shows per org/meter/period what the ledger says, what was sent, what Stripe
confirmed (`verify=True` reads Stripe's meter event summaries) and what was invoiced. An ended
period's minimum top-up is one more meter event of the same push, under the code
`minimum_topup` (billing.usage.topup), when the subscription has the top-up's item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.core.components import CREDIT, MINIMUM, MINIMUM_TOPUP
from billing.core.locks import confirming_only
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.stripe_writes import mark
from billing.pricing.book import Terms
from billing.pricing.book_cache import BookCache
from billing.pricing.charge import ledger_quantity
from billing.pricing.lifecycle import NO_PLAN
from billing.stripe_gateway.ports import InvoiceReader
from billing.stripe_gateway.records import StripeInvoice
from billing.usage.adjustments import AdjustmentGateway, AdjustmentTarget, adjust_final_period
from billing.usage.after_end import OneOffGateway, invoice_after_end
from billing.usage.credits import CreditResult, period_credits
from billing.usage.meter_send import (
    MeterGateway,
    MeterSend,
    MeterSender,
    MeterTransport,
    OrgMeters,
    unit_per,
)
from billing.usage.minimum import MinimumResult, period_minimums
from billing.usage.periods import (
    OrgSubscription,
    invoices_by_period,
    new_state,
    next_push,
    note_invoice,
    periods_to_push,
)
from billing.usage.push_reads import ChunkReads, SessionReads
from billing.usage.push_results import MeterPushAction, MeterPushResult, meter_result
from billing.usage.topup import metered_top_up, plan_topup
from models.ledger import OrgPlanChange
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)

# Stripe refuses meter events older than 35 days; periods that ended before this are only ever
# settled through adjustments.
METER_EVENT_MAX_AGE = timedelta(days=35)


class UsageGateway(MeterGateway, AdjustmentGateway, OneOffGateway, InvoiceReader, Protocol):
    """The part of the Stripe gateway usage push uses (a fake in unit tests)."""


class UsagePushAction(StrEnum):
    """What one usage push of an org did, all meters and periods together."""

    PUSHED = "pushed"  # at least one meter event or adjustment reached Stripe
    UNCHANGED = "unchanged"
    NOT_PROVISIONED = "not_provisioned"  # no Stripe subscription with metered items yet
    FAILED = "failed"  # at least one meter, period or minimum failed


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

    def meters(self) -> OrgMeters:
        return OrgMeters(self.org_id, self.sub.stripe_customer_id, self.terms, self.now)


class UsagePusher:
    """`push_org(org_id, now)` reports every open usage period of one org; safe to repeat.

    The steps share one session, committed before every Stripe call: nothing of the database
    stays open while Stripe answers.
    """

    def __init__(
        self,
        engine: Engine,
        gateway: UsageGateway,
        books: BookCache | None = None,
        *,
        transport: MeterTransport = "stream",
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.books = books or BookCache()
        self.sender = MeterSender(engine, gateway, transport)

    def push_org(
        self, org_id: str, now: datetime, *, verify: bool = False, within: Period | None = None
    ) -> UsagePushOutcome:
        """Push every open usage period of the org (only those overlapping `within`, if given);
        `verify` also reads back Stripe's aggregate for each period."""
        reads = SessionReads()
        with Session(self.engine, expire_on_commit=False) as session:
            run = self._open(session, org_id, now, within, reads)
            if run is None:
                return UsagePushOutcome(org_id, UsagePushAction.NOT_PROVISIONED)
            sends = self._plan(session, run, reads)
            run.results.extend(self.sender.send(session, run.meters(), sends))
            if verify:
                run.results = [self._verify(session, run, result) for result in run.results]
                session.commit()
            return self._finish(session, run, reads)

    def push_chunk(
        self, org_ids: Sequence[str], now: datetime, *, within: Period | None = None
    ) -> list[UsagePushOutcome]:
        """`push_org` of each org (the caller holds every org's usage lock), the reads made
        set-based for the chunk (billing.usage.push_reads) and the meter events of all its orgs
        sent together, up to 100 per stream request."""
        with Session(self.engine, expire_on_commit=False) as session:
            reads = ChunkReads(session, org_ids, now - METER_EVENT_MAX_AGE * 3)
            runs = {
                org: self._open(session, org, now, within, reads) for org in dict.fromkeys(org_ids)
            }
            opened = [run for run in runs.values() if run is not None]
            reads.prepare(session, [(run.sub, run.org_id, run.periods) for run in opened], now)
            planned: list[tuple[OrgMeters, list[MeterSend]]] = []
            for run in opened:  # a write for one org confirms that org's lock only
                with confirming_only([run.org_id]):
                    planned.append((run.meters(), self._plan(session, run, reads)))
            for run, results in zip(opened, self.sender.send_many(session, planned), strict=True):
                run.results.extend(results)
            outcomes: list[UsagePushOutcome] = []
            for org_id, org_run in runs.items():
                if org_run is None:
                    outcomes.append(UsagePushOutcome(org_id, UsagePushAction.NOT_PROVISIONED))
                    continue
                with confirming_only([org_id]):
                    outcomes.append(self._finish(session, org_run, reads))
            return outcomes

    # ------------------------------------------------------------------ steps

    def _open(
        self,
        session: Session,
        org_id: str,
        now: datetime,
        within: Period | None,
        reads: SessionReads,
    ) -> _Run | None:
        """The org's subscription, terms and the usage periods still open (None: nothing is
        provisioned to push to)."""
        sub = reads.subscription(session, org_id)
        terms = self._terms(reads.plan_rows(session, org_id), org_id, now, sub)
        if sub is None or terms is None or not sub.items:
            return None
        known = reads.known_states(session, org_id, now - METER_EVENT_MAX_AGE * 3)
        late = reads.late_final(session, org_id)
        states, periods = periods_to_push(session, sub, now, known, late)
        if within is not None:
            periods = [p for p in periods if p.overlaps(within)]
        session.commit()  # the reads end here: Stripe's invoices are read next
        return _Run(org_id, now, sub, terms, states, periods)

    def _plan(self, session: Session, run: _Run, reads: SessionReads) -> list[MeterSend]:
        """Per period and meter: adjust a final period, or decide the meter event to send.
        Its rows are committed by the sender, before the first meter event is sent (for a
        chunk, all its orgs' rows in one commit)."""
        run.invoices = invoices_by_period(
            self.gateway,
            run.sub,
            run.periods,
            run.now,
            session=session,
            mirrored=reads.mirrored(run.sub.stripe_subscription_id),
        )
        unfinished = {
            (row.meter, row.period_start_at): row for row in reads.unfinished(session, run.org_id)
        }
        sends: list[MeterSend] = []
        for period in run.periods:
            totals = reads.ledger_totals(session, run.org_id, period, run.now)
            run.period_totals[period.period_start] = totals
            for meter, stripe_item_id in run.sub.items.items():
                if meter not in run.terms.meters:
                    continue
                planned = self._plan_meter(
                    session,
                    run,
                    period,
                    (meter, stripe_item_id),
                    totals.get(meter, Decimal(0)),
                    unfinished.get((meter.value, period.period_start)),
                    reads,
                )
                if isinstance(planned, MeterSend):
                    sends.append(planned)
                else:
                    run.results.append(planned)
            topup = self._plan_topup(session, run, period, totals, unfinished, reads)
            if topup is not None:
                sends.append(topup)
        return sends

    @staticmethod
    def _plan_topup(  # noqa: PLR0917 - one period of the run, and what is known of it
        session: Session,
        run: _Run,
        period: Period,
        totals: dict[Meter, Decimal],
        unfinished: dict[tuple[str, datetime], UsagePush],
        reads: SessionReads,
    ) -> MeterSend | None:
        """The period's minimum top-up as a meter event, when the subscription has its item
        (billing.usage.topup)."""
        return plan_topup(
            session,
            run.org_id,
            run.sub,
            run.terms,
            period,
            totals,
            run.states,
            run.invoices.get(period.period_start),
            unfinished.get((MINIMUM_TOPUP, period.period_start)),
            lambda: reads.latest_revision(session, run.org_id, MINIMUM_TOPUP, period.period_start),
            run.now,
            METER_EVENT_MAX_AGE,
        )

    def _finish(self, session: Session, run: _Run, reads: SessionReads) -> UsagePushOutcome:
        """After the meter events: a canceled org's late usage, the period minimums and the
        credits, then the outcome."""
        if run.sub.ended and any(r.action == MeterPushAction.ADJUSTED for r in run.results):
            invoice_after_end(session, self.gateway, run.org_id, run.sub, run.now)
        minimums = period_minimums(
            session,
            self.gateway,
            org_id=run.org_id,
            sub=run.sub,
            terms=run.terms,
            periods=run.periods,
            invoices=run.invoices,
            states=run.states,
            period_totals=run.period_totals,
            now=run.now,
            metered=None
            if run.sub.topup_item is None
            else lambda period: metered_top_up(run.states, period),
        )
        # On the minimum (SPEC §10); skipped for an org known to have no grant and no credit.
        credits = (
            period_credits(session, self.gateway, run) if reads.may_have_credits(run.org_id) else []
        )
        return self._outcome(run, minimums, credits)

    def _plan_meter(  # noqa: PLR0917 - one meter of one period, and what is known of it
        self,
        session: Session,
        run: _Run,
        period: Period,
        item: tuple[Meter, str],
        quantity: Decimal,
        pending: UsagePush | None,
        reads: SessionReads,
    ) -> MeterPushResult | MeterSend:
        meter, stripe_item_id = item
        key = (meter.value, period.period_start)
        state = run.states.get(key) or new_state(session, run.org_id, meter, period, run.now)
        run.states[key] = state
        per = run.terms.meters[meter].per
        note_invoice(state, run.invoices.get(period.period_start), stripe_item_id, per, run.now)
        if state.invoice_final_at is not None:
            return self._adjust(session, run, meter, period, state, quantity)
        if period.period_end <= run.now - METER_EVENT_MAX_AGE:
            return meter_result(
                meter,
                period,
                state,
                quantity,
                MeterPushAction.FAILED,
                error="ended over 35 days ago and its invoice was not found final: "
                "settle it by hand",
            )
        if pending is None and state.sent_quantity == quantity:
            return meter_result(meter, period, state, quantity, MeterPushAction.UNCHANGED)
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
        if pending is None:
            latest = reads.latest_revision(session, run.org_id, meter, period.period_start)
            pending = next_push(session, state, quantity, run.now, latest)
        return MeterSend(meter, period, state, pending)

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
        return meter_result(
            meter, period, state, quantity, action, adjustment=done.amount, error=done.error
        )

    def _verify(self, session: Session, run: _Run, result: MeterPushResult) -> MeterPushResult:
        """Read Stripe's aggregate for the period (what Stripe will bill) into the ledger."""
        state = run.states.get((result.meter, result.period_start_at))
        value = self.sender.summary_value(
            run.meters(), result.meter, result.period_start_at, result.period_end_at
        )
        if state is None or value is None:
            return result
        confirmed = ledger_quantity(value, unit_per(run.terms, result.meter))
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

    def _terms(
        self,
        plan_rows: Sequence[OrgPlanChange],
        org_id: str,
        now: datetime,
        sub: OrgSubscription | None,
    ) -> Terms | None:
        """The terms of the plan row in effect at the pushed subscription's start (`now`
        without one); None when not subscribed yet, or canceled."""
        at = now if sub is None else sub.generation_at or now
        segment = next((row for row in reversed(plan_rows) if row.at <= at), None)
        if segment is None or segment.plan == NO_PLAN:
            return None
        return self.books.terms(segment.book, segment.plan, segment.interval, org_id)
