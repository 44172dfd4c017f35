"""Delivering pending alerts to the alert webhook, each attempt recorded before and after.

An attempt first claims its alert: `attempts` grows and `next_attempt_at` moves a lease ahead,
in one conditional UPDATE that only one process can win, and that is committed before the
webhook is called (no transaction waits on the receiver). The outcome is recorded after: a 2xx
marks it delivered; anything else leaves it pending until its next attempt, with a growing
pause, until `max_attempts` mark it failed. A process that dies between the call and the record
leaves the lease to expire and the alert is sent again: delivery is at least once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from models.alerts import Alert, AlertDelivery
from models.db import unit_of_work

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
# How long a claimed alert is left to its sender before another process may try it.
LEASE = timedelta(minutes=2)
BATCH = 50


class AlertSendError(RuntimeError):
    """The receiver did not take the alert (unreachable, timed out, or not a 2xx)."""


@dataclass(frozen=True)
class OutgoingAlert:
    """An alert as it is sent (a frozen copy: no database object leaves the session)."""

    id: int
    subject_key: str
    kind: str
    summary: str
    details: dict[str, Any]
    created_at: datetime
    org_id: str | None = None
    stripe_invoice_id: str | None = None
    reconciliation_id: int | None = None
    difference_amount: int | None = None
    currency: str | None = None


class AlertSender(Protocol):
    def send(self, alert: OutgoingAlert) -> None:
        """Deliver one alert or raise AlertSendError."""


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


class AlertDeliverer:
    """`deliver_due(now)` sends every pending alert whose next attempt is due."""

    def __init__(
        self, engine: Engine, sender: AlertSender, *, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.max_attempts = max_attempts

    def deliver_due(self, now: datetime, *, limit: int = BATCH) -> DeliveryOutcome:
        with Session(self.engine) as session:
            ids = session.exec(
                select(Alert.id)
                .where(
                    Alert.delivery == AlertDelivery.PENDING.value,
                    or_(col(Alert.next_attempt_at).is_(None), col(Alert.next_attempt_at) <= now),
                )
                .order_by(col(Alert.id))
                .limit(limit)
            ).all()
        counts = {"delivered": 0, "retrying": 0, "failed": 0}
        for alert_id in ids:
            if alert_id is None:
                continue
            outgoing = self._claim(alert_id, now)
            if outgoing is not None:
                counts[self._attempt(outgoing, now)] += 1
        return DeliveryOutcome(**counts)

    def _claim(self, alert_id: int, now: datetime) -> OutgoingAlert | None:
        """Take the alert for one attempt (None: another process took it first)."""
        with unit_of_work(self.engine) as session:
            claimed = session.connection().execute(
                update(Alert)
                .where(
                    col(Alert.id) == alert_id,
                    col(Alert.delivery) == AlertDelivery.PENDING.value,
                    or_(col(Alert.next_attempt_at).is_(None), col(Alert.next_attempt_at) <= now),
                )
                .values(attempts=col(Alert.attempts) + 1, next_attempt_at=now + LEASE)
            )
            if claimed.rowcount != 1:
                return None
            row = session.get(Alert, alert_id)
            assert row is not None
            assert row.id is not None
            return OutgoingAlert(
                id=row.id,
                subject_key=row.subject_key,
                kind=row.kind,
                summary=row.summary,
                details=json.loads(row.details_json),
                created_at=row.created_at,
                org_id=row.org_id,
                stripe_invoice_id=row.stripe_invoice_id,
                reconciliation_id=row.reconciliation_id,
                difference_amount=row.difference_amount,
                currency=row.currency,
            )

    def _attempt(self, alert: OutgoingAlert, now: datetime) -> str:
        error: str | None = None
        try:
            self.sender.send(alert)
        except AlertSendError as exc:
            error = str(exc)[:2000]
        with unit_of_work(self.engine) as session:
            row = session.get(Alert, alert.id)
            assert row is not None
            row.last_attempt_at = now
            row.last_error = error
            if error is None:
                row.delivery, row.delivered_at, row.next_attempt_at = (
                    AlertDelivery.DELIVERED.value,
                    now,
                    None,
                )
                result = "delivered"
            elif row.attempts >= self.max_attempts:
                row.delivery, row.next_attempt_at = AlertDelivery.FAILED.value, None
                result = "failed"
            else:
                row.next_attempt_at = now + retry_after(row.attempts)
                result = "retrying"
            session.add(row)
        log_method = log.info if error is None else log.warning
        log_method("alerts." + result, subject_key=alert.subject_key, error=error)
        return result


def retry_after(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … capped at an hour (ten attempts span about three hours)."""
    seconds = FIRST_RETRY.total_seconds() * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, MAX_RETRY.total_seconds()))
