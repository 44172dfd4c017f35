"""Celery tasks of usage push and month close (final push of every org, fanned out in chunks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from celery import group

from billing.core.periods import Period, month_period, month_period_of
from worker import dispatch, jobs, month_close
from worker.celery_app import app
from worker.tasks.common import TASK_OPTIONS, instant

CLOSE_CHUNK_SIZE = 50
log = structlog.get_logger(__name__)


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
    """Month close: the final usage push of every provisioned org, in parallel chunks, after
    the invoice sweep that lets each push read its invoices locally (`period` defaults to the
    month before `now`, for beat). The sweep runs as `close_sweep` steps, and the last one
    fans out (worker.month_close); a second delivery of the close neither sweeps again beside
    the first nor fans out twice. Returns the id of the chunks' group, saved once it exists
    (`close_group_id`)."""
    if period is None:
        period = month_period_of(instant(now) - timedelta(days=1)).label()
    month = month_period(period)  # validate before anything is recorded
    start = month_close.begin_close(month, instant(now))
    if start.fanned_out:
        log.info("usage.close_already_fanned_out", period=period)
    elif start.sweep_finished:
        _fan_out(month, now, chunk_size)
    else:
        dispatch.enqueue(close_sweep, [period, now, chunk_size, start.sweep_id, start.step])
    return close_group_id(period)


@app.task(name="billing.usage.close_sweep", **TASK_OPTIONS)
def close_sweep(period: str, now: str | None, chunk_size: int, sweep_id: int, step: int) -> str:
    """One step of the close's invoice sweep (about a minute of pages); the next step, or the
    fan-out once the listing has ended (or Stripe refused it: the pushes then ask Stripe)."""
    month = month_period(period)
    outcome = month_close.run_sweep_step(sweep_id, step)
    if outcome is not None and outcome.superseded and not outcome.finished:
        return "superseded"  # another delivery saved this step and goes on from it
    if outcome is not None and not outcome.finished:
        dispatch.enqueue(close_sweep, [period, now, chunk_size, sweep_id, outcome.step])
        return "continued"
    _fan_out(month, now, chunk_size)
    return "fanned out"


def close_group_id(period: str) -> str:
    """The group of a close's chunks has a fixed id per period: any delivery can name it."""
    return f"close-{period}"


def _fan_out(month: Period, now: str | None, chunk_size: int) -> None:
    chunks = month_close.claim_chunks(month, chunk_size)
    if chunks is None:
        return  # another delivery fanned out (or is fanning out) this close
    period = month.label()
    # Each member is published by BillingTask: one the broker cannot take goes to the outbox.
    result = group(push_chunk.s(chunk, now, period) for chunk in chunks).apply_async(
        task_id=close_group_id(period)
    )
    result.save()
    month_close.chunks_sent(month)


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
