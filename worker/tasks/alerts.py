"""Celery tasks of alerts: delivery of the pending ones, and the watch on the month close.

Thin, as every task: an optional ISO 8601 `now` in, one job of worker/jobs.py. Both are safe to
run twice: an alert is claimed before it is sent, and the close alert has one subject a month.
"""

from __future__ import annotations

from worker import jobs
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant


@app.task(name="billing.alerts.deliver", ignore_result=True, **TASK_OPTIONS)
def deliver(now: str | None = None) -> int:
    """Send the pending alerts that are due (beat, every minute); how many were delivered."""
    outcome = jobs.deliver_alerts(instant(now))
    return 0 if outcome is None else outcome.delivered


@app.task(name="billing.alerts.check_close", ignore_result=True, **TASK_OPTIONS)
def check_close(now: str | None = None) -> bool:
    """Raise the late-close alert when last month's close is unfinished 30 min into the grace
    period (beat, every five minutes)."""
    return jobs.check_close_late(instant(now))
