"""The month close's progress, and the alert when it has not finished 30 minutes into the grace.

A close (beat's `month-close`, `billing close`, the simulation's) records its start with the
number of orgs it will push; each chunk of orgs records its end once, named by its first org,
so a chunk run twice (a redelivery) counts once. The close has finished when its chunks have
covered every org. The record also names the one invoice sweep the close runs and its one
fan-out (`attach_sweep`, `claim_fan_out`, `fanned_out`: worker.month_close), so a second
delivery of the close does neither again. Stripe finalizes a draft one hour after creating
it, so a close that is still running half an hour after the month ended risks invoices
without their final usage:
`check_close` raises one alert per month for it (or for a close that never started).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.alerts.records import AlertKind, NewAlert, insert_ignoring_conflicts, raise_alert
from billing.core.periods import month_period_of
from models.alerts import CloseChunk, CloseRun
from models.db import unit_of_work

# Stripe's finalization grace period, and how far into it the close must be done.
GRACE_PERIOD = timedelta(hours=1)
CLOSE_DEADLINE = timedelta(minutes=30)
# A close later than this after its month is not watched (a deployment younger than its first
# month close would otherwise alert on the month before it existed).
WATCH_FOR = timedelta(days=1)


@dataclass(frozen=True)
class CloseProgress:
    period: str
    started_at: datetime
    org_count: int
    orgs_done: int
    failed_count: int
    finished_at: datetime | None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def close_started(engine: Engine, period: str, org_count: int, now: datetime) -> None:
    """A close of `period` sets out to push `org_count` orgs (a second start keeps the first)."""
    try:
        with unit_of_work(engine) as session:
            if session.get(CloseRun, period) is None:
                session.add(
                    CloseRun(
                        period=period,
                        started_at=now,
                        org_count=org_count,
                        finished_at=now if org_count == 0 else None,
                    )
                )
    except IntegrityError:
        return  # a second delivery of the close recorded it first: the first start is kept


def attach_sweep(engine: Engine, period: str, sweep_id: int) -> int:
    """The close of `period` runs invoice sweep `sweep_id` before its chunks, unless another
    delivery of the close attached one first; the sweep the close runs."""
    table = CloseRun.__table__  # type: ignore[attr-defined]
    with unit_of_work(engine) as session:
        session.connection().execute(
            sa.update(table)
            .where(table.c.period == period, table.c.sweep_id.is_(None))
            .values(sweep_id=sweep_id)
        )
        run = session.get(CloseRun, period)
        if run is None or run.sweep_id is None:
            raise ValueError(f"no close run of {period} to attach sweep {sweep_id} to")
        return run.sweep_id


def claim_fan_out(
    engine: Engine, period: str, org_count: int, wall_now: datetime, lease: timedelta
) -> bool:
    """Whether this delivery fans out the close of `period` (to `org_count` orgs): no other has
    done it, and none claimed it less than `lease` ago (one that died after claiming is
    replaced once its lease has run out; its chunks, if any got out, are safe to run twice)."""
    table = CloseRun.__table__  # type: ignore[attr-defined]
    unclaimed = sa.or_(
        table.c.fan_out_claimed_at.is_(None), table.c.fan_out_claimed_at < wall_now - lease
    )
    with unit_of_work(engine) as session:
        result = session.connection().execute(
            sa.update(table)
            .where(table.c.period == period, table.c.fanned_out_at.is_(None), unclaimed)
            .values(fan_out_claimed_at=wall_now, org_count=org_count)
        )
        return bool(result.rowcount)


def fanned_out(engine: Engine, period: str, wall_now: datetime) -> None:
    """Every chunk of the close of `period` is with the broker."""
    with unit_of_work(engine) as session:
        run = session.get(CloseRun, period)
        if run is not None and run.fanned_out_at is None:
            run.fanned_out_at = wall_now
            session.add(run)


def close_chunk_done(
    engine: Engine, period: str, org_ids: Sequence[str], failed_count: int, now: datetime
) -> None:
    """A chunk of the close pushed `org_ids`; the close is finished once every org is covered."""
    if not org_ids:
        return
    with unit_of_work(engine) as session:
        session.connection().execute(
            insert_ignoring_conflicts(session, CloseChunk)
            .values(
                period=period,
                first_org_id=org_ids[0],
                org_count=len(org_ids),
                failed_count=failed_count,
                finished_at=now,
            )
            .on_conflict_do_nothing(index_elements=["period", "first_org_id"])
        )
        run = session.get(CloseRun, period)
        if (
            run is not None
            and run.finished_at is None
            and _orgs_done(session, period) >= run.org_count
        ):
            run.finished_at = now
            session.add(run)


def close_progress(session: Session, period: str | None = None) -> CloseProgress | None:
    """The close of `period`, or the latest one started."""
    query = select(CloseRun)
    if period is not None:
        query = query.where(CloseRun.period == period)
    run = session.exec(query.order_by(col(CloseRun.started_at).desc())).first()
    if run is None:
        return None
    done, failed = session.exec(
        select(
            sa.func.coalesce(sa.func.sum(CloseChunk.org_count), 0),
            sa.func.coalesce(sa.func.sum(CloseChunk.failed_count), 0),
        ).where(CloseChunk.period == run.period)
    ).one()
    return CloseProgress(
        run.period, run.started_at, run.org_count, int(done), int(failed), run.finished_at
    )


def check_close(engine: Engine, now: datetime) -> bool:
    """Alert (once per month) when the last month's close had not finished 30 minutes after
    the month ended; whether an alert was added."""
    month = month_period_of(now - CLOSE_DEADLINE)
    period = month_period_of(month.period_start - timedelta(days=1))
    late_by = now - period.period_end
    if not CLOSE_DEADLINE <= late_by < WATCH_FOR:
        return False
    with unit_of_work(engine) as session:
        progress = close_progress(session, period.label())
        if progress is not None and progress.finished_at is not None:
            return False
        if progress is None:
            state = "has not started"
            details: dict[str, object] = {"period": period.label(), "started": False}
        else:
            state = f"has pushed {progress.orgs_done} of {progress.org_count} orgs"
            details = {
                "period": period.label(),
                "started_at": progress.started_at.isoformat(),
                "org_count": progress.org_count,
                "orgs_done": progress.orgs_done,
                "failed_count": progress.failed_count,
            }
        summary = (
            f"The month close of {period.label()} {state}, {int(late_by.total_seconds() // 60)} "
            "minutes into Stripe's one-hour grace period: drafts may finalize without their "
            "final usage"
        )
        return raise_alert(
            session, NewAlert(AlertKind.CLOSE_LATE, period.label(), summary, details), now
        )


def _orgs_done(session: Session, period: str) -> int:
    total = session.exec(
        select(sa.func.coalesce(sa.func.sum(CloseChunk.org_count), 0)).where(
            CloseChunk.period == period
        )
    ).one()
    return int(total)
