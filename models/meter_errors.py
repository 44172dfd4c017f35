"""Stripe's asynchronous meter error reports: meter events Stripe accepted, then dropped.

Stripe validates meter events after accepting them and reports the failures in thin events
(`v1.billing.meter.error_report_triggered`, `v1.billing.meter.no_meter_found`). Each sample
error of a report is one row, keyed by (event id, position); its identifier is our meter
event's identifier, so the row names the usage push Stripe rejected (`usage_push_id`, with the
push's org, meter and period copied for the reconciliation's look-up).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class MeterErrorReport(SQLModel, table=True):
    """One sample error (or one error type without samples) of a Stripe meter error report."""

    __tablename__ = "meter_error_reports"
    __table_args__ = (
        sa.UniqueConstraint("stripe_event_id", "position", name="uq_meter_error_reports_event"),
        sa.Index("ix_meter_error_reports_org_meter", "org_id", "meter", "period_start_at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(_BIGINT, primary_key=True, autoincrement=True)
    )
    stripe_event_id: str = Field(max_length=255)
    position: int  # the sample's place in the report (error types in order, then samples)
    event_type: str = Field(max_length=100)
    stripe_meter_id: str | None = Field(default=None, max_length=255)
    code: str | None = Field(default=None, max_length=100)  # None: a report without error types
    error_message: str | None = Field(default=None, max_length=2000)
    identifier: str | None = Field(default=None, max_length=255, index=True)
    type_error_count: int  # errors of this code in the report's window
    event_error_count: int  # errors of every code in the report's window
    summary: str | None = Field(default=None, max_length=2000)  # developer_message_summary
    validation_start_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    validation_end_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    event_created_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    received_at: datetime = Field(sa_type=UtcDateTime)
    usage_push_id: int | None = Field(
        default=None, sa_column=sa.Column(_BIGINT, sa.ForeignKey("usage_pushes.id"))
    )
    org_id: str | None = Field(default=None, max_length=200)
    meter: str | None = Field(default=None, max_length=100)
    period_start_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
