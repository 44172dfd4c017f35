"""Celery task of quotas: the periodic checkpoint of the monthly counters to the database."""

from __future__ import annotations

from worker import jobs
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant


@app.task(name="billing.quotas.checkpoint", **TASK_OPTIONS)
def checkpoint(now: str | None = None) -> int:
    """Store every Redis monthly quota counter of the month (a lost Redis then forgets at
    most what was counted since the last run)."""
    return jobs.checkpoint_quotas(instant(now))
