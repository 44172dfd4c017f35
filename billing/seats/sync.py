"""Seat sync: converge an org's Stripe seat quantity to the quantity billed under the seat policy.

The ledger is the truth (billing.pricing.proration computes, per term, the coalesced steps of the
high-water mark). Each closed coalescing window's step becomes exactly one Stripe quantity
update, with `proration_date` = the step's `proration_at`, so Stripe's proration equals the
expected invoice's. Every update is a `seat_pushes` row written before the call (`started`,
with a deterministic idempotency key) and completed after it; a row a crash left `started` is
resolved by reading Stripe's quantity, never by guessing.

Renewals: with `at_renewal` decreases Stripe must bill the renewal at the seat count of that
instant, not at the old term's high-water mark. Within `renewal_lead` before the term ends the
quantity is set to the current count without proration (the old term is already paid at its
high-water mark, so nothing is lost); a change after that is caught at the next run.

Anything else that differs (a quantity changed by hand in Stripe) is corrected without
proration and recorded as a `correction`, so support sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.components import SEATS, ProrationBehavior
from billing.core.errors import PermanentBillingError
from billing.core.keys import seat_quantity_key, seat_step_key
from billing.core.meters import Interval
from billing.ledger.stripe_writes import Settled, mark, write_to_stripe
from billing.pricing.book import SeatDecrease
from billing.pricing.book_cache import BookCache
from billing.pricing.lifecycle import NO_PLAN
from billing.pricing.proration import (
    SEAT_SYNC_WINDOW_SECONDS,
    SeatChange,
    SeatStep,
    seat_count_at,
    seat_terms,
)
from billing.seats.renewal import RenewalGateway, RenewalTerm, correct_renewal_draft
from billing.stripe_gateway.records import StripeSubscription, StripeSubscriptionItem
from models.ledger import OrgPlanChange, SeatChangeRecord
from models.push_records import SeatPush, SeatPushKind
from models.stripe_records import (
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)

log = structlog.get_logger(__name__)


class SeatGateway(RenewalGateway, Protocol):
    """The part of the Stripe gateway seat sync uses (a fake in unit tests)."""

    def retrieve_subscription(self, stripe_subscription_id: str) -> StripeSubscription: ...

    def update_subscription_item_quantity(
        self,
        stripe_subscription_item_id: str,
        *,
        quantity: int,
        proration_behavior: ProrationBehavior,
        idempotency_key: str,
        proration_at: datetime | None = None,
    ) -> StripeSubscriptionItem: ...


class SeatSyncAction(StrEnum):
    """What one seat sync of an org did."""

    IN_SYNC = "in_sync"  # Stripe already held the quantity: nothing sent
    UPDATED = "updated"  # at least one quantity update reached Stripe
    NO_SEATS = "no_seats"  # the org's plan has no seats (or the org has no plan yet)
    NOT_PROVISIONED = "not_provisioned"  # no Stripe subscription item for the seats yet


@dataclass(frozen=True)
class SeatPushResult:
    kind: SeatPushKind
    from_quantity: int
    to_quantity: int
    proration_at: datetime | None
    expected_amount: int
    idempotency_key: str
    status: WriteStatus


@dataclass(frozen=True)
class SeatSyncOutcome:
    org_id: str
    action: SeatSyncAction
    stripe_quantity_before: int | None = None
    stripe_quantity_after: int | None = None
    billed_quantity: int | None = None
    pushes: tuple[SeatPushResult, ...] = ()
    next_window_at: datetime | None = None  # an open coalescing window closes then: run again
    problems: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Desired:
    """What the ledger says Stripe should hold now."""

    term_start_at: datetime
    term_end_at: datetime
    interval: Interval
    steps: tuple[SeatStep, ...]  # closed windows of the current term, in order
    billed_quantity: int  # after those steps
    count_now: int
    next_window_at: datetime | None
    credit_decreases: bool
    renewal: bool = False  # the term is a renewal (not the subscription's first)
    seat_count: int = 0  # the count the term opened with (billed upfront)
    seat_unit_amount: int = 0
    currency: str = "usd"


class SeatSync:
    """`sync(org_id, now)` converges one org; safe to run twice or concurrently under a lock."""

    def __init__(
        self,
        engine: Engine,
        gateway: SeatGateway,
        books: BookCache | None = None,
        *,
        renewal_lead: timedelta = timedelta(hours=1),
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.books = books or BookCache()
        self.renewal_lead = renewal_lead

    def sync(self, org_id: str, now: datetime) -> SeatSyncOutcome:
        desired = self._desired(org_id, now)
        if desired is None:
            return SeatSyncOutcome(org_id, SeatSyncAction.NO_SEATS)
        item = self._seat_item(org_id)
        if item is None:
            return SeatSyncOutcome(
                org_id, SeatSyncAction.NOT_PROVISIONED, billed_quantity=desired.billed_quantity
            )
        stripe_subscription_id, stripe_item_id = item
        quantity = self._stripe_quantity(stripe_subscription_id, stripe_item_id)
        before = quantity
        results: list[SeatPushResult] = []
        problems: list[str] = []
        run = _Run(org_id, desired, stripe_item_id, now, results, problems)
        if desired.renewal:
            term = RenewalTerm(
                org_id,
                desired.term_start_at,
                desired.seat_count,
                desired.seat_unit_amount,
                desired.currency,
                stripe_subscription_id,
                stripe_item_id,
            )
            if note := correct_renewal_draft(self.engine, self.gateway, term, now):
                problems.append(note)
        for step in desired.steps:
            quantity = self._apply(run, _step_push(run, step), quantity)
        quantity = self._converge(run, quantity)
        done = any(r.status is WriteStatus.DONE for r in results)
        action = SeatSyncAction.UPDATED if done else SeatSyncAction.IN_SYNC
        outcome = SeatSyncOutcome(
            org_id,
            action,
            before,
            quantity,
            desired.billed_quantity,
            tuple(results),
            desired.next_window_at,
            tuple(problems),
        )
        log.info(
            "seats.synced",
            org_id=org_id,
            action=action,
            stripe_quantity=quantity,
            billed_quantity=desired.billed_quantity,
            pushes=len(results),
        )
        return outcome

    def _converge(self, run: _Run, quantity: int | None) -> int | None:
        """After the steps, set any other quantity Stripe holds to the billed one, without
        proration: the renewal's count just before the term ends, else a correction."""
        desired, now = run.desired, run.now
        target = desired.billed_quantity
        kind = SeatPushKind.CORRECTION
        if desired.term_end_at - self.renewal_lead <= now < desired.term_end_at:
            # The renewal bills the count of that instant; the old term stays paid at its
            # high-water mark, so lowering (or raising) now needs no proration.
            target, kind = desired.count_now, SeatPushKind.RENEWAL
        if quantity is None or quantity == target:
            return quantity
        key = self._quantity_key(
            run.org_id, term_start_at=desired.term_start_at, kind=kind, target=target, now=now
        )
        push = _Push(kind, quantity, target, None, "none", 0, None, key)
        if kind is SeatPushKind.CORRECTION:
            run.problems.append(
                f"Stripe held {quantity} seats where the ledger bills {target}; "
                "corrected without proration"
            )
        return self._apply(run, push, quantity)

    # ------------------------------------------------------------------ pushes

    def _apply(self, run: _Run, push: _Push, quantity: int | None) -> int | None:
        """Push one quantity change unless already done; returns Stripe's quantity after."""
        with Session(self.engine) as session:
            row = session.exec(select(SeatPush).where(SeatPush.idempotency_key == push.key)).first()
            if row is not None and row.status == WriteStatus.DONE:
                return quantity
            if row is not None and row.status == WriteStatus.FAILED:
                run.problems.append(f"{push.key}: failed earlier: {row.error}")
                return quantity
            started = row is not None
            outcome = write_to_stripe(
                session,
                row or _new_row(run, push),
                run.now,
                lambda: self.gateway.update_subscription_item_quantity(
                    run.stripe_item_id,
                    quantity=push.to_quantity,
                    proration_behavior=push.behavior,
                    idempotency_key=push.key,
                    proration_at=push.proration_at,
                ),
                resolve=lambda: _settled_by(push, quantity, started=started),
            )
        run.results.append(_result(push, outcome.status))
        if outcome.status is WriteStatus.FAILED:
            run.problems.append(f"{push.key}: {outcome.error}")
            return quantity
        if not outcome.called:
            return quantity
        log.info(
            "seats.pushed",
            org_id=run.org_id,
            kind=push.kind,
            quantity=push.to_quantity,
            proration_behavior=push.behavior,
            key=push.key,
        )
        item = outcome.response
        return item.quantity if item is not None and item.quantity is not None else push.to_quantity

    def _quantity_key(
        self,
        org_id: str,
        *,
        term_start_at: datetime,
        kind: SeatPushKind,
        target: int,
        now: datetime,
    ) -> str:
        """The key of a renewal or correction push: an unfinished one to the same quantity is
        resumed (same key); one to another quantity is settled as superseded."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(SeatPush).where(
                    SeatPush.org_id == org_id,
                    SeatPush.term_start_at == term_start_at,
                    SeatPush.kind == kind,
                )
            ).all()
            for row in rows:
                if row.status != WriteStatus.STARTED:
                    continue
                if row.to_quantity == target:
                    return row.idempotency_key
                mark(
                    row, WriteStatus.FAILED, now, note=f"superseded: the ledger now bills {target}"
                )
                session.add(row)
                session.commit()
        return seat_quantity_key(org_id, term_start_at, kind, len(rows) + 1, target)

    # ------------------------------------------------------------------ reads

    def _desired(self, org_id: str, now: datetime) -> _Desired | None:
        with Session(self.engine) as session:
            segments = session.exec(
                select(OrgPlanChange)
                .where(OrgPlanChange.org_id == org_id, OrgPlanChange.at <= now)
                .order_by(col(OrgPlanChange.at))
            ).all()
            changes = [
                SeatChange(row.at, row.seat_count)
                for row in session.exec(
                    select(SeatChangeRecord)
                    .where(SeatChangeRecord.org_id == org_id, SeatChangeRecord.at <= now)
                    .order_by(col(SeatChangeRecord.at), col(SeatChangeRecord.id))
                )
            ]
        if not segments or segments[-1].plan == NO_PLAN:
            return None  # not subscribed yet, or canceled
        segment = segments[-1]
        terms = self.books.terms(segment.book, segment.plan, segment.interval, org_id)
        if terms.seat_unit_amount is None:
            return None
        schedule = seat_terms(
            segment.at,
            terms.interval,
            terms.seat_unit_amount,
            changes,
            until_at=now + timedelta(microseconds=1),
            policy=terms.seat_policy,
        )
        term = schedule[-1]
        window = timedelta(seconds=SEAT_SYNC_WINDOW_SECONDS)
        closed = tuple(s for s in term.steps if s.window_start + window <= now)
        open_steps = [s for s in term.steps if s.window_start + window > now]
        return _Desired(
            term_start_at=term.period.period_start,
            term_end_at=term.period.period_end,
            interval=terms.interval,
            steps=closed,
            billed_quantity=closed[-1].to_quantity if closed else term.seat_count,
            count_now=seat_count_at(changes, now),
            next_window_at=open_steps[0].window_start + window if open_steps else None,
            credit_decreases=terms.seat_policy.decrease is SeatDecrease.IMMEDIATE,
            renewal=term.period.period_start > segment.at,
            seat_count=term.seat_count,
            seat_unit_amount=terms.seat_unit_amount,
            currency=terms.currency,
        )

    def _seat_item(self, org_id: str) -> tuple[str, str] | None:
        with Session(self.engine) as session:
            item = session.exec(
                select(StripeSubscriptionItemRecord).where(
                    StripeSubscriptionItemRecord.org_id == org_id,
                    StripeSubscriptionItemRecord.component == SEATS,
                )
            ).first()
            sub = session.get(StripeSubscriptionRecord, org_id)
        if item is None or sub is None or sub.stripe_subscription_id is None:
            return None
        return item.stripe_subscription_id, item.stripe_subscription_item_id

    def _stripe_quantity(self, stripe_subscription_id: str, stripe_item_id: str) -> int | None:
        subscription = self.gateway.retrieve_subscription(stripe_subscription_id)
        for item in subscription.items:
            if item.stripe_subscription_item_id == stripe_item_id:
                return item.quantity
        raise PermanentBillingError(
            f"subscription {stripe_subscription_id} has no item {stripe_item_id}: "
            "re-provision the org"
        )


@dataclass(frozen=True)
class _Run:
    """One sync's context: the org, what the ledger wants, and what happened so far."""

    org_id: str
    desired: _Desired
    stripe_item_id: str
    now: datetime
    results: list[SeatPushResult]
    problems: list[str]


@dataclass(frozen=True)
class _Push:
    kind: SeatPushKind
    from_quantity: int
    to_quantity: int
    proration_at: datetime | None
    behavior: ProrationBehavior
    amount: int
    window_start: datetime | None
    key: str


def _step_push(run: _Run, step: SeatStep) -> _Push:
    """A closed window's step: prorated when it is charged (an increase, or a credited
    decrease under `immediate`), else a plain quantity change."""
    desired = run.desired
    behavior: ProrationBehavior = "none"
    if step.amount and (step.to_quantity > step.from_quantity or desired.credit_decreases):
        behavior = "create_prorations"
    return _Push(
        SeatPushKind.STEP,
        step.from_quantity,
        step.to_quantity,
        step.proration_at,
        behavior,
        step.amount,
        step.window_start,
        seat_step_key(run.org_id, desired.term_start_at, step.window_start, step.to_quantity),
    )


def _new_row(run: _Run, push: _Push) -> SeatPush:
    return SeatPush(
        org_id=run.org_id,
        kind=push.kind,
        term_start_at=run.desired.term_start_at,
        window_start_at=push.window_start,
        proration_at=push.proration_at,
        from_quantity=push.from_quantity,
        to_quantity=push.to_quantity,
        proration_behavior=push.behavior,
        expected_amount=push.amount,
        stripe_subscription_item_id=run.stripe_item_id,
        idempotency_key=push.key,
        status=WriteStatus.STARTED,
        created_at=run.now,
    )


def _settled_by(
    push: _Push, quantity: int | None, *, started: bool
) -> Settled[StripeSubscriptionItem] | None:
    """What Stripe's quantity (read at the start of the sync) says of a push before it is sent.

    A push left `started` by a crash between the call and its record is done when Stripe holds
    its target, failed when Stripe holds neither side, and still to send when Stripe holds its
    start. A new step is already done when Stripe bills at least its target (e.g. a correction
    overtook it).
    """
    if started:
        if quantity == push.to_quantity:
            return Settled(WriteStatus.DONE)
        if quantity != push.from_quantity:
            return Settled(
                WriteStatus.FAILED,
                note=f"left started; Stripe now holds {quantity}, neither "
                f"{push.from_quantity} nor {push.to_quantity}",
            )
        return None  # Stripe still holds the old quantity: the call never happened
    if push.kind is SeatPushKind.STEP and quantity is not None and quantity >= push.to_quantity:
        return Settled(WriteStatus.DONE, note="already at quantity")
    return None


def _result(push: _Push, status: WriteStatus) -> SeatPushResult:
    return SeatPushResult(
        push.kind,
        push.from_quantity,
        push.to_quantity,
        push.proration_at,
        push.amount,
        push.key,
        status,
    )
