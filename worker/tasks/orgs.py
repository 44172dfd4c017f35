"""Celery tasks that create each org's Stripe customer and subscription, and carry its plan
changes and cancellations to Stripe (SPEC §10)."""

from __future__ import annotations

from typing import Any

from worker import dispatch, jobs
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant


@app.task(name="billing.orgs.provision", **TASK_OPTIONS)
def provision_org(
    org_id: str, now: str | None = None, stripe_test_clock_id: str | None = None
) -> dict[str, Any]:
    return jobs.provision_org(org_id, instant(now), stripe_test_clock_id=stripe_test_clock_id)


@app.task(name="billing.orgs.lifecycle", **TASK_OPTIONS)
def apply_lifecycle(org_id: str, now: str | None = None) -> list[dict[str, str]]:
    return jobs.apply_lifecycle(org_id, instant(now))


@app.task(name="billing.orgs.sweep", **TASK_OPTIONS)
def sweep(now: str | None = None) -> int:
    """Enqueue provisioning for every org of the ledger that has no Stripe subscription yet,
    and the lifecycle of every org with a plan change or cancellation due or scheduled."""
    orgs = jobs.unprovisioned_orgs()
    for org_id in orgs:
        dispatch.enqueue(provision_org, [org_id, now])
    changing = jobs.lifecycle_due_orgs()
    for org_id in changing:
        dispatch.enqueue(apply_lifecycle, [org_id, now])
    return len(orgs) + len(changing)
