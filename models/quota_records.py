"""Quota records: monthly usage checkpoints, live environments, and denials and crossings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


class QuotaEventDecision(StrEnum):
    DENIED = "denied"  # a hard quota refused the check
    EXCEEDED = "exceeded"  # a soft quota allowed the check past its limit


def _id() -> sa.Column[int]:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class QuotaUsage(SQLModel, table=True):
    """The durable checkpoint of an org's Redis counter for one quota and calendar month.

    `used` only ever grows (writers store the maximum of the stored and the new value), so
    concurrent checkpoints from many processes never move it backwards.
    """

    __tablename__ = "quota_usage"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "quota", "period_start", name="uq_quota_usage_period"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(foreign_key="orgs.id", max_length=200)
    quota: str = Field(max_length=50)
    period_start: datetime = Field(sa_type=UtcDateTime)
    used: int = Field(sa_type=sa.BigInteger)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class QuotaEnvironment(SQLModel, table=True):
    """One environment of an org; it counts against the quota while `deleted_at` is null."""

    __tablename__ = "quota_environments"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "environment_id", name="uq_quota_environments_org_env"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(foreign_key="orgs.id", max_length=200)
    environment_id: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UtcDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class QuotaEvent(SQLModel, table=True):
    """Denials or soft crossings of one quota by one org in one calendar month, on one row.

    The row is created by the first such check of the month (the first crossing) and updated
    by later ones: `last_at`, `used` and `amount` describe the latest recorded check, and
    `occurrence_count` counts recorded checks, at most one per org, quota and decision per
    second (checks within the same second are folded into the recorded one).
    """

    __tablename__ = "quota_events"
    __table_args__ = (
        sa.UniqueConstraint(
            "org_id", "quota", "period_start", "decision", name="uq_quota_events_period"
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(foreign_key="orgs.id", max_length=200)
    quota: str = Field(max_length=50)
    period_start: datetime = Field(sa_type=UtcDateTime)
    decision: str = Field(max_length=20)
    mode: str = Field(max_length=10)
    limit: int = Field(sa_type=sa.BigInteger)
    used: int = Field(sa_type=sa.BigInteger)  # usage before a denied check, after an exceeding one
    amount: int = Field(sa_type=sa.BigInteger)  # units the latest recorded check asked for
    occurrence_count: int = Field(sa_type=sa.BigInteger)
    first_at: datetime = Field(sa_type=UtcDateTime)
    last_at: datetime = Field(sa_type=UtcDateTime)
