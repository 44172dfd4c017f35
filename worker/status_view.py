"""The status of the worker as one JSON-ready object: `billing status` and the `/status` page.

The snapshot (billing.monitoring.snapshot) joined with the beat schedule, so every entry shows,
including one that never ran.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.monitoring.snapshot import GRACE_PERIOD, Snapshot, take_snapshot
from worker.beat import beat_schedule


def status_json(engine: Engine, now: datetime) -> dict[str, Any]:
    with Session(engine) as session:
        snapshot = take_snapshot(session, now)
        return snapshot_json(snapshot)


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    now = snapshot.now
    schedule = schedule_json(snapshot)
    close = snapshot.last_close
    b = snapshot.backlogs
    return {
        "now": now.isoformat(),
        "schedule": schedule,
        "backlogs": {
            "webhook_unhandled": b.webhook_unhandled,
            "webhook_stuck": b.webhook_stuck,
            "webhook_oldest_age_seconds": round(b.webhook_oldest_age_seconds),
            "outbox_pending": b.outbox_pending,
            "outbox_oldest_age_seconds": round(b.outbox_oldest_age_seconds),
            "pending_seat_windows": b.pending_seat_windows,
            "alerts_pending": b.alerts_pending,
            "alerts_failed": b.alerts_failed,
        },
        "push_lag_seconds": {k: round(v) for k, v in sorted(snapshot.push_lag_seconds.items())},
        "reconciliations": dict(sorted(snapshot.reconciliation_statuses.items())),
        "held_drafts": [
            {
                "stripe_invoice_id": held.stripe_invoice_id,
                "org_id": held.org_id,
                "status": held.status,
                "difference_amount": held.difference_amount,
                "currency": held.currency,
                "held_since": held.held_since.isoformat(),
                "held_seconds": round(held.age_seconds(now)),
                "past_grace_period": held.age_seconds(now) > GRACE_PERIOD.total_seconds(),
                "reconciliation_id": held.reconciliation_id,
            }
            for held in snapshot.held_drafts
        ],
        "last_close": None
        if close is None
        else {
            "period": close.period,
            "started_at": close.started_at.isoformat(),
            "finished_at": _iso(close.finished_at),
            "duration_seconds": close.duration_seconds,
            "org_count": close.org_count,
            "orgs_done": close.orgs_done,
            "failed_count": close.failed_count,
        },
    }


def schedule_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Every beat entry with its task's last run (None where it never ran)."""
    runs = {run.task_name: run for run in snapshot.scheduled_runs}
    schedule = []
    for name, entry in beat_schedule().items():
        task = str(entry["task"])
        run = runs.get(task)
        schedule.append(
            {
                "entry": name,
                "task": task,
                "every": str(entry["schedule"]),
                "last_started_at": _iso(run.last_started_at if run else None),
                "last_finished_at": _iso(run.last_finished_at if run else None),
                "last_outcome": run.last_outcome if run else None,
                "last_duration_ms": run.last_duration_ms if run else None,
                "last_error": run.last_error if run else None,
                "runs": run.run_count if run else 0,
            }
        )
    return schedule


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
