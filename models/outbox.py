"""The task outbox: task messages the broker could not take, kept until the relay publishes them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


def _id() -> sa.Column[int]:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class OutboxMessage(SQLModel, table=True):
    """One task message written instead of published (the broker was unreachable).

    The relay publishes it under the same Celery task id (results and groups follow it) and
    sets `published_at`; every task is idempotent, so a message published twice is harmless.
    """

    __tablename__ = "task_outbox"
    __table_args__ = (
        # The relay reads the pending rows only, oldest first.
        sa.Index(
            "ix_task_outbox_pending",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    task_name: str = Field(max_length=200)
    task_id: str = Field(max_length=64, index=True)
    args_json: str = Field(sa_type=sa.Text)
    kwargs_json: str = Field(sa_type=sa.Text)
    eta_at: datetime | None = Field(default=None, sa_type=UtcDateTime)  # Celery's `eta`
    retries: int = 0  # Celery's retry count: a retry kept here stays a retry when published
    created_at: datetime = Field(sa_type=UtcDateTime)
    attempts: int = 0  # publications the relay tried and the broker refused
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
