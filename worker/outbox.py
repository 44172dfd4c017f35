"""The task outbox's rows: a message kept when the broker cannot take it, relayed once it can.

`keep` writes one task message (name, Celery task id, JSON arguments, eta, retry count) in its
own transaction; `relay` publishes the pending rows oldest first, one row lock at a time
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two relays never publish the same row at once),
marks each published, and stops at the first row the broker refuses again. A message can still
be published twice (the broker took it, then the database could not record that); every task
is idempotent, so that is harmless. Published rows are pruned after a week.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.db import unit_of_work
from models.outbox import OutboxMessage

log = structlog.get_logger(__name__)

RELAY_BATCH = 500
KEEP_PUBLISHED = timedelta(days=7)
_ERROR_CHARS = 500


class BrokerUnavailableError(RuntimeError):
    """The broker could not take a message (unreachable, timed out, or refused it)."""


@dataclass(frozen=True)
class TaskMessage:
    """A task message as it is published: its fixed task name, Celery task id and arguments."""

    task_name: str
    task_id: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    eta_at: datetime | None = None
    retries: int = 0


# Publishes one message now; raises BrokerUnavailableError when the broker cannot take it.
Publish = Callable[[TaskMessage], object]


class RelayAction(StrEnum):
    PUBLISHED = "published"
    SKIPPED = "skipped"  # published meanwhile, or another relay holds the row
    REFUSED = "refused"  # the broker is still away: the rest waits for the next relay
    FAILED = "failed"  # not a broker error (recorded on the row; the next row goes on)


@dataclass(frozen=True)
class RelayOutcome:
    published: int
    failed: int
    refused: bool  # the broker refused a row: some rows are still pending


def keep(engine: Engine, message: TaskMessage, error: str, now: datetime) -> int:
    """Write the message to the outbox (committed before returning); its row id."""
    with unit_of_work(engine) as session:
        row = OutboxMessage(
            task_name=message.task_name,
            task_id=message.task_id,
            args_json=json.dumps(list(message.args)),
            kwargs_json=json.dumps(dict(message.kwargs)),
            eta_at=message.eta_at,
            retries=message.retries,
            created_at=now,
            last_error=error[:_ERROR_CHARS],
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        row_id = row.id
    log.warning(
        "outbox.kept",
        task=message.task_name,
        task_id=message.task_id,
        outbox_id=row_id,
        error=error[:_ERROR_CHARS],
    )
    return row_id


def relay(
    engine: Engine, publish: Publish, now: datetime, *, limit: int = RELAY_BATCH
) -> RelayOutcome:
    """Publish up to `limit` pending rows, oldest first, until the broker refuses one."""
    with Session(engine) as session:
        row_ids = session.exec(
            select(OutboxMessage.id)
            .where(col(OutboxMessage.published_at).is_(None))
            .order_by(col(OutboxMessage.id))
            .limit(limit)
        ).all()
    published = failed = 0
    refused = False
    for row_id in row_ids:
        assert row_id is not None
        action = _relay_one(engine, row_id, publish, now)
        published += action is RelayAction.PUBLISHED
        failed += action is RelayAction.FAILED
        if action is RelayAction.REFUSED:
            refused = True
            break
    if published or failed or refused:
        log.info("outbox.relayed", published=published, failed=failed, refused=refused)
    _prune(engine, now)
    return RelayOutcome(published, failed, refused)


def pending_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(
            select(sa.func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.published_at).is_(None))
        ).one()


def _relay_one(engine: Engine, row_id: int, publish: Publish, now: datetime) -> RelayAction:
    with unit_of_work(engine) as session:
        row = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.id == row_id, col(OutboxMessage.published_at).is_(None))
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return RelayAction.SKIPPED
        message = message_of(row, now)
        try:
            publish(message)
        except BrokerUnavailableError as exc:
            row.attempts += 1
            row.last_error = str(exc)[:_ERROR_CHARS]
            return RelayAction.REFUSED
        except Exception as exc:  # one bad row must not hold up the others
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
        else:
            row.published_at = now
        if row.published_at is None:
            log.error(
                "outbox.publish_failed", outbox_id=row_id, task=row.task_name, error=row.last_error
            )
            return RelayAction.FAILED
    log.info("outbox.published", task=message.task_name, task_id=message.task_id, outbox_id=row_id)
    return RelayAction.PUBLISHED


def message_of(row: OutboxMessage, now: datetime) -> TaskMessage:
    """The row's message; an eta already past is dropped (the task runs at once)."""
    eta_at = row.eta_at if row.eta_at is not None and row.eta_at > now else None
    return TaskMessage(
        task_name=row.task_name,
        task_id=row.task_id,
        args=json.loads(row.args_json),
        kwargs=json.loads(row.kwargs_json),
        eta_at=eta_at,
        retries=row.retries,
    )


def _prune(engine: Engine, now: datetime) -> None:
    with unit_of_work(engine) as session:
        session.execute(
            sa.delete(OutboxMessage).where(col(OutboxMessage.published_at) < now - KEEP_PUBLISHED)
        )
