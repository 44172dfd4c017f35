"""The worker's state at a glance, read from the database at once: what `/metrics`, `billing
status` and the `/status` page show.

Everything here is computed from the records at read time, so every web process, CLI and
worker sees the same numbers whatever process did the work, and nothing has to be kept in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.alerts.close import CloseProgress, close_progress
from billing.core.components import SEATS
from billing.core.meters import Meter
from models.alerts import Alert, ScheduledRun
from models.ledger import ResourceReport, SeatChangeRecord, UsageEvent
from models.outbox import OutboxMessage
from models.push_records import SeatPush, UsagePeriod
from models.reconciliation import Reconciliation, WebhookEvent
from models.stripe_records import StripeSubscriptionItemRecord, WriteStatus

# Stripe finalizes a draft an hour after creating it; a held draft is compared with this.
GRACE_PERIOD = timedelta(hours=1)
# Ledger changes older than this are not looked at for the push lag (Stripe takes no meter
# event older than 35 days: such changes become adjustments, shown by reconciliation).
PUSH_LAG_HORIZON = timedelta(days=35)
# The webhook re-drive handles an event again once it has waited this long (worker/jobs.py).
WEBHOOK_STUCK_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class HeldDraft:
    stripe_invoice_id: str
    org_id: str | None
    status: str
    difference_amount: int
    currency: str
    held_since: datetime
    reconciliation_id: int

    def age_seconds(self, now: datetime) -> float:
        return (now - self.held_since).total_seconds()


@dataclass(frozen=True)
class Backlogs:
    webhook_unhandled: int = 0
    webhook_stuck: int = 0  # unhandled for longer than the re-drive waits
    webhook_oldest_age_seconds: float = 0.0
    outbox_pending: int = 0
    outbox_oldest_age_seconds: float = 0.0
    pending_seat_windows: int = 0
    alerts_pending: int = 0
    alerts_failed: int = 0


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    backlogs: Backlogs
    push_lag_seconds: dict[str, float]
    reconciliation_statuses: dict[str, int]
    held_drafts: list[HeldDraft]
    last_close: CloseProgress | None
    scheduled_runs: list[ScheduledRun] = field(default_factory=list)


def take_snapshot(session: Session, now: datetime) -> Snapshot:
    return Snapshot(
        now=now,
        backlogs=backlogs(session, now),
        push_lag_seconds=push_lag_seconds(session, now),
        reconciliation_statuses=reconciliation_statuses(session),
        held_drafts=held_drafts(session),
        last_close=close_progress(session),
        scheduled_runs=list(session.exec(select(ScheduledRun).order_by(ScheduledRun.task_name))),
    )


def backlogs(session: Session, now: datetime) -> Backlogs:
    unhandled = col(WebhookEvent.handled_at).is_(None)
    webhook_count, webhook_oldest = session.exec(
        select(sa.func.count(), sa.func.min(WebhookEvent.received_at)).where(unhandled)
    ).one()
    stuck = session.exec(
        select(sa.func.count()).where(
            unhandled, col(WebhookEvent.received_at) <= now - WEBHOOK_STUCK_AFTER
        )
    ).one()
    outbox_count, outbox_oldest = session.exec(
        select(sa.func.count(), sa.func.min(OutboxMessage.created_at)).where(
            col(OutboxMessage.published_at).is_(None)
        )
    ).one()
    alert_counts = dict(
        session.exec(select(Alert.delivery, sa.func.count()).group_by(col(Alert.delivery))).all()
    )
    return Backlogs(
        webhook_unhandled=int(webhook_count),
        webhook_stuck=int(stuck),
        webhook_oldest_age_seconds=_age(now, webhook_oldest),
        outbox_pending=int(outbox_count),
        outbox_oldest_age_seconds=_age(now, outbox_oldest),
        pending_seat_windows=pending_seat_windows(session),
        alerts_pending=int(alert_counts.get("pending", 0)),
        alerts_failed=int(alert_counts.get("failed", 0)),
    )


def push_lag_seconds(session: Session, now: datetime) -> dict[str, float]:
    """Per meter: now minus the arrival of the oldest ledger change not yet pushed (0: none).

    A change is pushed once its period's total was sent after it arrived; a change of a period
    whose invoice is final is settled as an adjustment and no longer lags."""
    horizon = now - PUSH_LAG_HORIZON
    lag = {meter.value: 0.0 for meter in Meter}
    events = _unpushed(UsageEvent, col(UsageEvent.meter), horizon)
    reports = _unpushed(ResourceReport, sa.literal(Meter.IAC_RESOURCE_HOURS.value), horizon)
    for query in (events, reports):
        for meter, oldest in session.exec(query).all():  # type: ignore[call-overload]
            lag[meter] = max(lag.get(meter, 0.0), _age(now, oldest))
    return lag


def _unpushed(
    model: type[UsageEvent] | type[ResourceReport], meter: Any, horizon: datetime
) -> sa.Select[Any]:
    """The oldest arrival per meter of `model`'s rows that no push has covered yet."""
    covered = (
        sa.select(sa.literal(1))
        .where(
            col(UsagePeriod.org_id) == model.org_id,
            col(UsagePeriod.meter) == meter,
            col(UsagePeriod.period_start_at) <= model.at,
            col(UsagePeriod.period_end_at) > model.at,
            sa.or_(
                col(UsagePeriod.invoice_final_at).is_not(None),
                col(UsagePeriod.sent_at) >= model.received_at,
            ),
        )
        .exists()
    )
    return (
        sa.select(meter, sa.func.min(model.received_at))
        .where(col(model.at) >= horizon, ~covered)
        .group_by(meter)
    )


def pending_seat_windows(session: Session) -> int:
    """Orgs whose seat count rose above the quantity Stripe was last given (an increase is
    pushed when its coalescing window closes; a decrease waits for the renewal and is not
    pending), and seat pushes left in doubt (`started`)."""
    latest_change = (
        sa.select(
            col(SeatChangeRecord.org_id).label("org_id"),
            sa.func.max(SeatChangeRecord.id).label("change_id"),
        )
        .group_by(col(SeatChangeRecord.org_id))
        .subquery()
    )
    latest_push = (
        sa.select(col(SeatPush.org_id).label("org_id"), sa.func.max(SeatPush.id).label("push_id"))
        .where(col(SeatPush.status) == WriteStatus.DONE.value)
        .group_by(col(SeatPush.org_id))
        .subquery()
    )
    rows = session.exec(
        sa.select(  # type: ignore[call-overload]
            col(SeatChangeRecord.seat_count),
            col(SeatPush.to_quantity),
            col(StripeSubscriptionItemRecord.quantity),
        )
        .select_from(latest_change)
        .join(SeatChangeRecord, col(SeatChangeRecord.id) == latest_change.c.change_id)
        .join(
            StripeSubscriptionItemRecord,
            sa.and_(
                col(StripeSubscriptionItemRecord.org_id) == latest_change.c.org_id,
                col(StripeSubscriptionItemRecord.component) == SEATS,
            ),
        )
        .outerjoin(latest_push, latest_push.c.org_id == latest_change.c.org_id)
        .outerjoin(SeatPush, col(SeatPush.id) == latest_push.c.push_id)
    ).all()
    rising = sum(1 for wanted, pushed, item in rows if wanted > (pushed or item or 0))
    in_doubt = session.exec(
        select(sa.func.count()).where(SeatPush.status == WriteStatus.STARTED.value)
    ).one()
    return rising + int(in_doubt)


def reconciliation_statuses(session: Session) -> dict[str, int]:
    """How many invoices stand at each status (their latest reconciliation)."""
    latest = _latest_reconciliations()
    rows = session.exec(
        select(Reconciliation.status, sa.func.count())
        .where(col(Reconciliation.id).in_(latest))
        .group_by(col(Reconciliation.status))
    ).all()
    return {status: int(count) for status, count in rows}


def held_drafts(session: Session) -> list[HeldDraft]:
    """Drafts whose latest reconciliation holds them, oldest hold first."""
    rows = session.exec(
        select(Reconciliation).where(
            col(Reconciliation.id).in_(_latest_reconciliations()),
            col(Reconciliation.held).is_(True),
            Reconciliation.invoice_status == "draft",
        )
    ).all()
    found = []
    for row in rows:
        assert row.id is not None
        since = session.exec(
            select(sa.func.min(Reconciliation.created_at)).where(
                Reconciliation.stripe_invoice_id == row.stripe_invoice_id,
                col(Reconciliation.held).is_(True),
            )
        ).one()
        found.append(
            HeldDraft(
                row.stripe_invoice_id,
                row.org_id,
                row.status,
                row.stripe_total_amount - row.expected_total_amount,
                row.currency,
                since or row.created_at,
                row.id,
            )
        )
    return sorted(found, key=lambda held: held.held_since)


def _latest_reconciliations() -> sa.Select[Any]:
    return sa.select(sa.func.max(Reconciliation.id)).group_by(col(Reconciliation.stripe_invoice_id))


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max((now - since).total_seconds(), 0.0)
