"""Plan changes and cancellations reach Stripe (SPEC §10): one subscription per plan, ended and
replaced at the instant the ledger says.

The mechanics, and why. Each row of the plan ledger (billing.ledger.lifecycle_events) starts a
Stripe subscription of its own, and ends the previous one:
- **A change or cancellation due now** (an upgrade, an immediate downgrade, a move onto a
  contract, `cancel` with `when=now`): the usage of the period in progress is pushed, then the
  subscription is cancelled with `DELETE /v1/subscriptions/{id}`, `invoice_now=true` and
  `prorate` (true unless the cancellation's `cancel_now_credit` is `none`). Stripe's final
  invoice bills the usage to that instant at the old prices, with the old allowance in full (a
  graduated free tier is never prorated), and credits the unused prepaid seat time,
  `− unit × quantity × remaining / term`, rounded once: SPEC §10's credit, because the item's
  quantity is the term's high-water mark. Then a new subscription is created at that instant: its
  seats are billed upfront and its monthly usage periods are anchored there.
- **A change or cancellation scheduled for a term end** (a downgrade under the default policy,
  `cancel` with `when=term_end`): `cancel_at` is set on the subscription at the term end, so
  Stripe does not renew it and bills the last period on a final invoice; at that instant the new
  subscription, if any, is created. A later event that withdraws it clears `cancel_at`.
Swapping items in place (a new `billing_cycle_anchor` with prorations on a flexible-mode
subscription) would put the old period's usage, the credit and the new term on one invoice
against the spec's separate invoices, and subscription schedules cannot re-anchor the monthly
periods at an arbitrary instant; cancel-and-recreate gives exactly SPEC §10's invoices.

Each Stripe write is a `subscription_endings` row, `started` before the call with its
deterministic key and `done` after it; a run that finds a row `started` sends it again with the
same key (Stripe replays its answer; a cancel that meets the subscription already cancelled
reads it back). The new subscription is provisioning's own write (billing.setup.provisioning),
keyed by the org and the instant its subscription starts. Safe to run at any time, any number of
times: it only does what the ledger asks and Stripe does not have yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.keys import subscription_ending_key, subscription_idempotency_key
from billing.ledger.stripe_writes import write_to_stripe
from billing.pricing.lifecycle import NO_PLAN, CancelCredit
from billing.stripe_gateway.records import StripeSubscription
from models.ledger import Org, OrgPlanChange
from models.lifecycle_records import SubscriptionEnding
from models.push_records import UsagePeriod
from models.stripe_records import (
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)

log = structlog.get_logger(__name__)

HOW_NOW, HOW_CANCEL_AT, HOW_WITHDRAW = "now", "cancel_at", "withdraw"
_MAX_STEPS = 8


class LifecycleGateway(Protocol):
    def cancel_subscription(
        self, stripe_subscription_id: str, *, invoice_now: bool, prorate: bool, idempotency_key: str
    ) -> StripeSubscription: ...

    def set_cancel_at(
        self, stripe_subscription_id: str, cancel_at: datetime | None, *, idempotency_key: str
    ) -> StripeSubscription: ...


@dataclass(frozen=True)
class LifecycleOutcome:
    org_id: str
    action: str  # nothing | scheduled | withdrawn | ended | changed | resubscribed | failed
    detail: str = ""


class Lifecycle:
    """`apply(org_id, now)`: bring the org's Stripe subscription to what the plan ledger says."""

    def __init__(
        self,
        engine: Engine,
        gateway: LifecycleGateway,
        *,
        push_usage: Callable[[str, datetime], object],
        provision: Callable[[str, datetime], object],
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.push_usage = push_usage
        self.provision = provision

    def apply(self, org_id: str, now: datetime) -> list[LifecycleOutcome]:
        """Every step due (a cancellation and a re-subscription may both be due)."""
        outcomes: list[LifecycleOutcome] = []
        for _ in range(_MAX_STEPS):
            outcome = self._step(org_id, now)
            outcomes.append(outcome)
            if outcome.action not in {"ended", "changed", "resubscribed"}:
                break
        return outcomes

    def _step(self, org_id: str, now: datetime) -> LifecycleOutcome:
        with Session(self.engine, expire_on_commit=False) as session:
            record = session.get(StripeSubscriptionRecord, org_id)
            if record is None or record.status != WriteStatus.DONE:
                return LifecycleOutcome(org_id, "nothing", "not provisioned yet")
            following = session.exec(
                select(OrgPlanChange)
                .where(OrgPlanChange.org_id == org_id, OrgPlanChange.at > record.term_start_at)
                .order_by(col(OrgPlanChange.at))
            ).first()
        if following is None:
            return self._withdraw_if_scheduled(record, now)
        if following.at > now:
            if following.requested_at is None:
                return LifecycleOutcome(org_id, "nothing", "a change is due later")
            return self._schedule(record, following.at, now)
        if record.plan != NO_PLAN:
            ended = self._end(record, following, now)
            if ended is not None:
                return ended
        return self._start(org_id, record, following, now)

    # ------------------------------------------------------------------ scheduling

    def _schedule(
        self, record: StripeSubscriptionRecord, ends_at: datetime, now: datetime
    ) -> LifecycleOutcome:
        """`cancel_at` at the term end, unless Stripe already has it."""
        latest = self._latest_scheduling(record)
        if latest is not None and latest.how == HOW_CANCEL_AT and latest.ends_at == ends_at:
            return LifecycleOutcome(record.org_id, "nothing", "already scheduled")
        failed = self._write(record, HOW_CANCEL_AT, ends_at, now)
        if failed:
            return LifecycleOutcome(record.org_id, "failed", failed)
        return LifecycleOutcome(record.org_id, "scheduled", ends_at.isoformat())

    def _withdraw_if_scheduled(
        self, record: StripeSubscriptionRecord, now: datetime
    ) -> LifecycleOutcome:
        latest = self._latest_scheduling(record)
        if latest is None or latest.how != HOW_CANCEL_AT or record.plan == NO_PLAN:
            return LifecycleOutcome(record.org_id, "nothing")
        failed = self._write(record, HOW_WITHDRAW, None, now)
        if failed:
            return LifecycleOutcome(record.org_id, "failed", failed)
        return LifecycleOutcome(record.org_id, "withdrawn")

    def _latest_scheduling(self, record: StripeSubscriptionRecord) -> SubscriptionEnding | None:
        with Session(self.engine) as session:
            return session.exec(
                select(SubscriptionEnding)
                .where(
                    SubscriptionEnding.stripe_subscription_id == record.stripe_subscription_id,
                    col(SubscriptionEnding.how).in_([HOW_CANCEL_AT, HOW_WITHDRAW]),
                    SubscriptionEnding.status == WriteStatus.DONE,
                )
                .order_by(col(SubscriptionEnding.id).desc())
            ).first()

    # ------------------------------------------------------------------ ending

    def _end(
        self, record: StripeSubscriptionRecord, following: OrgPlanChange, now: datetime
    ) -> LifecycleOutcome | None:
        """End the subscription at `following.at`: Stripe did it (a `cancel_at` there), or it is
        cancelled now after a last push of its usage. None when it has ended."""
        latest = self._latest_scheduling(record)
        scheduled = (
            latest is not None and latest.how == HOW_CANCEL_AT and latest.ends_at == following.at
        )
        self.push_usage(record.org_id, now)  # the last usage of its last period
        if not scheduled:
            prorate = following.cancel_credit != CancelCredit.NONE.value
            failed = self._write(record, HOW_NOW, following.at, now, prorate=prorate)
            if failed:
                return LifecycleOutcome(record.org_id, "failed", failed)
        self._close_periods(record, following.at, now)
        return None

    def _write(
        self,
        record: StripeSubscriptionRecord,
        how: str,
        ends_at: datetime | None,
        now: datetime,
        *,
        prorate: bool = False,
    ) -> str | None:
        """One Stripe write of `how`, recorded before and after; the error if Stripe refused."""
        sub_id = str(record.stripe_subscription_id)
        key = subscription_ending_key(record.org_id, sub_id, how, ends_at)
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.exec(
                select(SubscriptionEnding).where(SubscriptionEnding.idempotency_key == key)
            ).first()
            if row is not None and row.status == WriteStatus.DONE:
                return None
            row = row or SubscriptionEnding(
                org_id=record.org_id,
                stripe_subscription_id=sub_id,
                how=how,
                ends_at=ends_at or now,
                prorate=prorate,
                status=WriteStatus.PENDING.value,
                idempotency_key=key,
                updated_at=now,
            )
            ending = row

            def done(sub: StripeSubscription | None) -> None:
                if sub is not None:
                    ending.stripe_final_invoice_id = sub.stripe_latest_invoice_id

            outcome = write_to_stripe(
                session,
                row,
                now,
                lambda: self._call(sub_id, how, ends_at, prorate, key),
                on_done=done,
            )
        log.info("lifecycle.stripe_write", org_id=record.org_id, how=how, status=outcome.status)
        return outcome.error

    def _call(
        self, sub_id: str, how: str, ends_at: datetime | None, prorate: bool, key: str
    ) -> StripeSubscription:
        if how == HOW_NOW:
            return self.gateway.cancel_subscription(
                sub_id, invoice_now=True, prorate=prorate, idempotency_key=key
            )
        cancel_at = ends_at if how == HOW_CANCEL_AT else None
        return self.gateway.set_cancel_at(sub_id, cancel_at, idempotency_key=key)

    def _close_periods(
        self, record: StripeSubscriptionRecord, ends_at: datetime, now: datetime
    ) -> None:
        """The ended subscription's usage periods are final: what reaches the ledger for them
        from now on is late usage, an adjustment on the org's next invoice (SPEC §10)."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(UsagePeriod).where(
                    UsagePeriod.org_id == record.org_id,
                    col(UsagePeriod.invoice_final_at).is_(None),
                    UsagePeriod.period_start_at < ends_at,
                )
            ).all()
            for row in rows:
                row.period_end_at = min(row.period_end_at, ends_at)
                row.invoice_final_at = now
                row.invoiced_quantity = row.sent_quantity
                row.updated_at = now
                session.add(row)
            session.commit()

    # ------------------------------------------------------------------ starting

    def _start(
        self,
        org_id: str,
        record: StripeSubscriptionRecord,
        following: OrgPlanChange,
        now: datetime,
    ) -> LifecycleOutcome:
        """The ledger's next subscription becomes the org's: a canceled org keeps its ended
        subscription on record; a new plan is provisioned from the instant it starts."""
        with Session(self.engine) as session:
            org = session.get(Org, org_id)
            assert org is not None
            org.book, org.plan, org.interval = following.book, following.plan, following.interval
            org.term_start_at, org.updated_at = following.at, now
            session.add(org)
            row = session.get(StripeSubscriptionRecord, org_id)
            assert row is not None
            row.book, row.plan, row.interval = following.book, following.plan, following.interval
            row.term_start_at, row.updated_at = following.at, now
            if following.plan != NO_PLAN:
                row.status = WriteStatus.PENDING.value
                row.idempotency_key = subscription_idempotency_key(org_id, following.at)
                row.stripe_subscription_id = None
                row.started_at = None
                session.execute(
                    sa.delete(StripeSubscriptionItemRecord).where(
                        col(StripeSubscriptionItemRecord.org_id) == org_id
                    )
                )
            session.add(row)
            session.commit()
        if following.plan == NO_PLAN:
            log.info("lifecycle.canceled", org_id=org_id, ended_at=following.at.isoformat())
            return LifecycleOutcome(org_id, "ended", following.at.isoformat())
        self.provision(org_id, now)
        action = "resubscribed" if record.plan == NO_PLAN else "changed"
        log.info("lifecycle.changed", org_id=org_id, plan=following.plan, action=action)
        return LifecycleOutcome(org_id, action, f"{following.plan} from {following.at.isoformat()}")
