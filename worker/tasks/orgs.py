"""Celery tasks that create each org's Stripe customer and subscription."""

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


@app.task(name="billing.orgs.sweep", **TASK_OPTIONS)
def sweep(now: str | None = None) -> int:
    """Enqueue provisioning for every org of the ledger that has no Stripe subscription yet."""
    orgs = jobs.unprovisioned_orgs()
    for org_id in orgs:
        dispatch.enqueue(provision_org, [org_id, now])
    return len(orgs)
