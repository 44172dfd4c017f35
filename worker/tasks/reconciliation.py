"""Celery tasks of reconciliation: webhook handling, invoice reconciliation, sweeps, price checks.

Thin: ids (and an optional ISO 8601 `now`) in, one job of worker/jobs.py, a short result out.
They share every task's retry options (transient Stripe errors, a busy org lock); every task is
safe to run twice (the inbox marks an event handled; reconciliations are append-only).
"""

from __future__ import annotations

from worker import dispatch, jobs
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant


@app.task(name="billing.reconciliation.handle_event", **TASK_OPTIONS)
def handle_event(stripe_event_id: str, now: str | None = None) -> str:
    return jobs.handle_event(stripe_event_id, instant(now)).action.value


@app.task(name="billing.reconciliation.reconcile_invoice", **TASK_OPTIONS)
def reconcile_invoice(stripe_invoice_id: str, hold: bool = False, now: str | None = None) -> str:
    outcome = jobs.reconcile_invoice(stripe_invoice_id, instant(now), trigger="task", hold=hold)
    return outcome.status.value


@app.task(name="billing.reconciliation.sweep", **TASK_OPTIONS)
def sweep(now: str | None = None) -> int:
    return len(jobs.sweep_reconciliations(instant(now)).reconciled)


@app.task(name="billing.reconciliation.check_prices", **TASK_OPTIONS)
def check_prices(now: str | None = None) -> int:
    return jobs.check_prices(instant(now)).drift_count


@app.task(name="billing.reconciliation.redrive_events", **TASK_OPTIONS)
def redrive_events(now: str | None = None) -> int:
    """Send every webhook event left unhandled (its handling failed, or its task was lost) to
    `handle_event` again (beat, every few minutes); how many were sent."""
    events = jobs.unhandled_webhook_events(instant(now))
    for stripe_event_id in events:
        dispatch.enqueue(handle_event, [stripe_event_id, now])
    return len(events)
