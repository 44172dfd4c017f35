"""Celery tasks of usage push and month close (final push of every org, fanned out in chunks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import group

from billing.core.periods import month_period, month_period_of
from worker import dispatch, jobs
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant

CLOSE_CHUNK_SIZE = 50


@app.task(name="billing.usage.push_org", **TASK_OPTIONS)
def push_org(org_id: str, now: str | None = None, verify: bool = False) -> dict[str, Any]:
    return jobs.outcome_json(jobs.push_usage(org_id, instant(now), verify=verify))


@app.task(name="billing.usage.push_chunk", **TASK_OPTIONS)
def push_chunk(
    org_ids: list[str], now: str | None = None, period: str | None = None
) -> dict[str, int]:
    """Push a chunk of orgs. A retry re-runs the whole chunk: pushes already made are found
    unchanged and cost one comparison each, no Stripe call."""
    within = month_period(period) if period else None
    return jobs.push_usage_chunk(org_ids, instant(now), within=within)


@app.task(name="billing.usage.close_period", **TASK_OPTIONS)
def close_period(
    period: str | None = None, now: str | None = None, chunk_size: int = CLOSE_CHUNK_SIZE
) -> str:
    """Month close: the final usage push of every provisioned org, in parallel chunks
    (`period` defaults to the month before `now`, for beat). Returns the group id; `billing
    close` follows its progress."""
    if period is None:
        period = month_period_of(instant(now) - timedelta(days=1)).label()
    month = month_period(period)  # validate before fanning out
    jobs.sweep_invoice_mirror(month, instant(now))  # the chunks read invoices from the mirror
    orgs = jobs.provisioned_orgs()
    jobs.start_close(month, len(orgs), instant(now))  # its chunks record the progress
    # Each member is published by BillingTask: one the broker cannot take goes to the outbox.
    result = group(
        push_chunk.s(chunk, now, period) for chunk in jobs.chunks(orgs, chunk_size)
    ).apply_async()
    result.save()
    return str(result.id)


@app.task(name="billing.usage.sweep", **TASK_OPTIONS)
def sweep(now: str | None = None) -> int:
    """Push orgs with new usage since the last sweeps (hourly beat)."""
    at = instant(now)
    orgs = jobs.orgs_with_usage_since(at - jobs.USAGE_SWEEP_LOOKBACK)
    for chunk in jobs.chunks(orgs, CLOSE_CHUNK_SIZE):
        dispatch.enqueue(push_chunk, [chunk, now])
    return len(orgs)


@app.task(name="billing.usage.close_due", **TASK_OPTIONS)
def close_due(now: str | None = None) -> int:
    """Push every provisioned org (hourly): a usage period that just ended gets its final
    total inside Stripe's grace period, and resource-hours grow without new reports."""
    orgs = jobs.provisioned_orgs()
    for chunk in jobs.chunks(orgs, CLOSE_CHUNK_SIZE):
        dispatch.enqueue(push_chunk, [chunk, now])
    return len(orgs)
