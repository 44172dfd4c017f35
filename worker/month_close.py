"""The month close as steps any process can run: record the close, sweep Stripe's invoices into
the mirror a bounded step at a time, then fan the orgs out in chunks, once.

Beat's `billing.usage.close_period` runs each step as a task of its own (worker.tasks.usage):
at 100,000 orgs the sweep lists 2,000 pages, far longer than a task may run (the hard time
limit) or stay unacknowledged (the Redis broker's visibility timeout, after which it delivers
the task again). Every step is safe to deliver twice:

- the close's record (`close_runs`) is written once, and names the one sweep the close runs;
- a sweep step saves its progress only if no other delivery saved the same step first
  (billing.usage.invoice_sweep.sweep_step), so two deliveries never run the sweep side by side
  for more than one step;
- the fan-out is claimed by one delivery (billing.alerts.close.claim_fan_out) and marked done
  once its chunks are with the broker; a delivery that died between the two is replaced once
  its lease has run out (chunks run twice push nothing twice).

`close_month` is the same close in one process (the simulation, tests): it always sweeps and
pushes, as a rerun by hand should.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from billing.alerts.close import attach_sweep, claim_fan_out, close_started, fanned_out
from billing.core.errors import BillingError, TransientBillingError
from billing.core.periods import Period
from billing.usage.invoice_mirror import CREATED_MARGIN
from billing.usage.invoice_sweep import (
    InvoiceSweepOutcome,
    SweepStep,
    begin_sweep,
    sweep_invoices,
    sweep_step,
)
from models.alerts import CloseRun
from models.invoice_mirror import StripeInvoiceSweep
from worker import clock, composition, jobs
from worker.settings import Settings, get_settings

log = structlog.get_logger(__name__)

# One sweep step lists pages for at most this share of the task's soft time limit (a minute
# under the default 240 s), so a slow page never runs a step into the limit.
SWEEP_STEP_SHARE = 0.25
# A fan-out claimed this long ago and not marked done died with its worker: claimed again.
FAN_OUT_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class CloseStart:
    """Where a delivery of the close finds it: fanned out already, or sweeping from `step`."""

    period: str
    fanned_out: bool
    sweep_id: int | None = None
    step: int = 0
    sweep_finished: bool = False


def start_close(
    period: Period, org_count: int, now: datetime, settings: Settings | None = None
) -> None:
    """A month close of `period` sets out to push `org_count` orgs (its chunks record the rest)."""
    close_started(composition.database(settings), period.label(), org_count, now)


def begin_close(period: Period, now: datetime, settings: Settings | None = None) -> CloseStart:
    """The close of `period` recorded (once), with the one sweep it runs; where it stands."""
    engine = composition.database(settings)
    label = period.label()
    start_close(period, jobs.provisioned_org_count(settings), now, settings)
    with Session(engine) as session:
        run = session.get(CloseRun, label)
        assert run is not None
        if run.fanned_out_at is not None:
            return CloseStart(label, fanned_out=True)
        sweep_id = run.sweep_id
    if sweep_id is None:
        sweep_id = attach_sweep(engine, label, begin_sweep(engine, _swept_from(period), now))
    with Session(engine) as session:
        sweep = session.get(StripeInvoiceSweep, sweep_id)
        assert sweep is not None
        return CloseStart(label, False, sweep_id, sweep.step, sweep.finished_at is not None)


def run_sweep_step(
    sweep_id: int, step: int, *, max_pages: int | None = None, settings: Settings | None = None
) -> SweepStep | None:
    """One step of the close's sweep (None: Stripe refused it; the close fans out without
    it, and every push asks Stripe itself, the safety net). A transient error propagates: the
    task retries the same step."""
    try:
        return sweep_step(
            composition.database(settings),
            composition.stripe_gateway(settings),
            sweep_id,
            step,
            max_pages=max_pages,
            max_seconds=(settings or get_settings()).task_soft_time_limit * SWEEP_STEP_SHARE,
        )
    except TransientBillingError:
        raise
    except (BillingError, SQLAlchemyError) as exc:
        log.warning("usage.invoice_sweep_failed", sweep_id=sweep_id, step=step, error=str(exc))
        return None


def claim_chunks(
    period: Period, chunk_size: int, settings: Settings | None = None
) -> list[list[str]] | None:
    """The chunks of orgs this delivery fans out (None: another delivery has or is)."""
    orgs = jobs.provisioned_orgs(settings)
    engine = composition.database(settings)
    if not claim_fan_out(engine, period.label(), len(orgs), clock.wall_now(), FAN_OUT_LEASE):
        log.info("usage.close_fan_out_skipped", period=period.label())
        return None
    return list(jobs.chunks(orgs, chunk_size))


def chunks_sent(period: Period, settings: Settings | None = None) -> None:
    fanned_out(composition.database(settings), period.label(), clock.wall_now())


def sweep_invoice_mirror(
    period: Period, now: datetime, settings: Settings | None = None
) -> InvoiceSweepOutcome | None:
    """The whole sweep in this process: every invoice created since the period began, listed
    account-wide into the invoice mirror (None: Stripe refused it; every push then asks Stripe
    itself)."""
    try:
        return sweep_invoices(
            composition.database(settings),
            composition.stripe_gateway(settings),
            _swept_from(period),
            now,
        )
    except (BillingError, SQLAlchemyError) as exc:
        log.warning("usage.invoice_sweep_failed", error=str(exc))
        return None


def close_month(
    period: Period, now: datetime, *, chunk_size: int = 50, settings: Settings | None = None
) -> dict[str, int]:
    """The whole month close in this process (the simulation, `billing close --now`)."""
    sweep_invoice_mirror(period, now, settings)
    orgs = jobs.provisioned_orgs(settings)
    start_close(period, len(orgs), now, settings)
    totals = {"orgs": 0, "meter_events": 0, "adjustments": 0, "failed": 0}
    for chunk in jobs.chunks(orgs, chunk_size):
        pushed = jobs.push_usage_chunk(chunk, now, within=period, settings=settings)
        for key, value in pushed.items():
            totals[key] += value
    return totals


def _swept_from(period: Period) -> datetime:
    """The close's sweep lists the invoices created since the month ended (its drafts, and
    anything later): the push asks the mirror about the closed period, whose invoice Stripe
    creates at its end. An org with an earlier period still open (one a plan change cut
    mid-month) finds no covering sweep for it and asks Stripe, as without a mirror, unless a
    webhook mirrored that invoice. At 100,000 orgs this halves the sweep: the month's first
    invoices, created when it began, are not listed again."""
    return period.period_end - CREATED_MARGIN
