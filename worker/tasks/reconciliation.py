"""Celery tasks of reconciliation: webhook handling, invoice reconciliation, sweeps, price checks.

Thin: ids (and an optional ISO 8601 `now`) in, one job of worker/jobs.py, a short result out.
They share every task's retry options (transient Stripe errors, a busy org lock); every task is
safe to run twice (the inbox marks an event handled; reconciliations are append-only).
A draft found `awaiting_usage` (Stripe's meters do not show our pushed totals yet) is reconciled
again by `reconcile_invoice`, `reconciliation_recheck_seconds` later; the sweep also re-checks
every draft, so a lost re-check loses nothing.
"""

from __future__ import annotations

from billing.reconciliation.match import Status
from billing.reconciliation.reconciler import ReconciliationOutcome
from worker import dispatch, jobs
from worker.celery_app import app
from worker.settings import get_settings
from worker.tasks.common import TASK_OPTIONS, instant


@app.task(name="billing.reconciliation.handle_event", **TASK_OPTIONS)
def handle_event(stripe_event_id: str, now: str | None = None) -> str:
    outcome = jobs.handle_event(stripe_event_id, instant(now))
    recheck_if_awaiting(outcome.reconciliation)
    return outcome.action.value


@app.task(name="billing.reconciliation.reconcile_invoice", **TASK_OPTIONS)
def reconcile_invoice(stripe_invoice_id: str, hold: bool = False, now: str | None = None) -> str:
    outcome = jobs.reconcile_invoice(stripe_invoice_id, instant(now), trigger="task", hold=hold)
    recheck_if_awaiting(outcome)
    return outcome.status.value


def recheck_if_awaiting(outcome: ReconciliationOutcome | None) -> str | None:
    """Send `reconcile_invoice` for a draft not judged yet, with a countdown (at the worker's
    clock then, allowed to hold: past the deadline the draft is judged as it is); its task id."""
    if outcome is None or outcome.status is not Status.AWAITING_USAGE:
        return None
    sent = reconcile_invoice.apply_async(
        args=[outcome.stripe_invoice_id, True],
        countdown=get_settings().reconciliation_recheck_seconds,
    )
    return str(sent.id)


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
