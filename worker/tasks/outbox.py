"""Celery task of the outbox: the relay that publishes what was kept while the broker was away."""

from __future__ import annotations

from worker import dispatch
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS


# Beat sends one every few seconds: its result is not kept, and a late one is not worth keeping.
@app.task(name="billing.outbox.relay", ignore_result=True, keep_in_outbox=False, **TASK_OPTIONS)
def relay(now: str | None = None) -> int:
    """Publish the outbox's pending task messages (beat, every few seconds); how many went.
    `now` is accepted as every beat task's is, and unused: the outbox keeps broker time."""
    del now
    return dispatch.relay_outbox(app).published
