"""Operations records: alerts to send once per subject, the scheduled tasks' last runs, the
month close's progress."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


class AlertDelivery(StrEnum):
    """Where an alert's delivery stands."""

    PENDING = "pending"  # not sent yet, or the last attempt failed and it will be tried again
    DELIVERED = "delivered"  # the webhook answered 2xx
    FAILED = "failed"  # every attempt failed: see `last_error` (shown by `billing status`)
    UNSENT = "unsent"  # no BILLING_ALERT_WEBHOOK_URL when it was due: kept for the status view


def _id() -> sa.Column[int]:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class Alert(SQLModel, table=True):
    """One alert, written in the transaction of the event that raised it.

    `subject_key` is unique: the same held draft, invoice, failed push or drifted price raises
    one alert however many times it is seen again.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        # The delivery task reads the pending rows only, oldest first.
        sa.Index(
            "ix_alerts_pending",
            "id",
            postgresql_where=sa.text("delivery = 'pending'"),
            sqlite_where=sa.text("delivery = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    subject_key: str = Field(max_length=255, unique=True)
    kind: str = Field(max_length=50)  # a billing.alerts.records.AlertKind
    org_id: str | None = Field(default=None, max_length=200)
    stripe_invoice_id: str | None = Field(default=None, max_length=255)
    reconciliation_id: int | None = None
    difference_amount: int | None = None  # Stripe minus the ledger, minor units
    currency: str | None = Field(default=None, max_length=10)
    summary: str = Field(sa_type=sa.Text)
    details_json: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(sa_type=UtcDateTime)
    delivery: str = Field(default=AlertDelivery.PENDING.value, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    delivered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ScheduledRun(SQLModel, table=True):
    """The latest run of one beat entry's task, as the worker that ran it saw it."""

    __tablename__ = "scheduled_runs"

    task_name: str = Field(primary_key=True, max_length=200)
    last_started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_outcome: str | None = Field(default=None, max_length=20)  # success | failure | retry
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    last_duration_ms: int | None = None
    run_count: int = 0


class CloseRun(SQLModel, table=True):
    """One month close: how many orgs it set out to push, and when the last chunk finished."""

    __tablename__ = "close_runs"

    period: str = Field(primary_key=True, max_length=20)  # YYYY-MM
    started_at: datetime = Field(sa_type=UtcDateTime)
    org_count: int
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # The invoice sweep this close runs before its chunks (None: none yet, or refused).
    sweep_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    # The fan-out of the chunks: claimed by one delivery (a lease, in the workers' own time),
    # then done. A later delivery of the close, or of its last sweep step, fans out nothing.
    fan_out_claimed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    fanned_out_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CloseChunk(SQLModel, table=True):
    """One finished chunk of a month close (its first org names it: a rerun counts once)."""

    __tablename__ = "close_chunks"
    __table_args__ = (sa.UniqueConstraint("period", "first_org_id", name="uq_close_chunks"),)

    id: int | None = Field(default=None, sa_column=_id())
    period: str = Field(max_length=20, index=True)
    first_org_id: str = Field(max_length=200)
    org_count: int
    failed_count: int
    finished_at: datetime = Field(sa_type=UtcDateTime)
