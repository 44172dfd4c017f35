"""Celery tasks of seat sync: one org at a time, coalesced, serialised by the org's lock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from billing.core.periods import to_unix
from worker import composition, dispatch, jobs
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant


@app.task(name="billing.seats.sync_org", **TASK_OPTIONS)
def sync_org(org_id: str, now: str | None = None) -> dict[str, Any]:
    at = instant(now)
    outcome = jobs.sync_seats(org_id, at)
    if outcome.next_window_at is not None and now is None:
        schedule(org_id, outcome.next_window_at)
    return jobs.outcome_json(outcome)


def schedule(org_id: str, eta: Any) -> bool:
    """Sync the org once its coalescing window has closed; many seat changes in a window
    schedule one task (a Redis SET NX per org and window end)."""
    key = f"billing:seats:scheduled:{org_id}:{to_unix(eta)}"
    if not composition.redis_client().set(key, 1, nx=True, ex=3600):
        return False
    dispatch.enqueue(sync_org, [org_id], eta=eta + timedelta(seconds=2))
    return True


@app.task(name="billing.seats.schedule", **TASK_OPTIONS)
def schedule_orgs(org_ids: list[str], now: str | None = None) -> int:
    """After seat changes were ingested: sync each org once its coalescing window closes."""
    due = jobs.seat_syncs_due(org_ids, instant(now))
    return sum(schedule(org_id, due_at) for org_id, due_at in due.items())


@app.task(name="billing.seats.sweep", **TASK_OPTIONS)
def sweep(now: str | None = None) -> int:
    """Sync every org whose seats changed recently (a missed schedule loses nothing), and
    every org whose seat term renews within the hour (its renewal quantity is set then)."""
    at = instant(now)
    orgs = jobs.orgs_for_seat_sweep(at)
    for org_id in orgs:
        dispatch.enqueue(sync_org, [org_id, now])
    return len(orgs)
