"""Beat's entries run for one simulated instant: in this process, or sent to Celery workers.

In this process each entry runs what its task runs, through `worker/jobs.py` (the same
selections, the same per-org jobs under the org's lock). On Celery, each entry's task is sent by
its fixed name with the simulated `now`, and the step waits until the broker is empty. The one
difference from production is provisioning: the customer must be created on the org's test
clock, so the new orgs are sent one by one to `billing.orgs.provision` with their clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from billing.core.periods import isoformat_z, month_period_of
from billing.pricing.book import load_book
from billing.reconciliation.price_drift import PriceDriftCheck
from worker import composition, jobs
from worker.settings import Settings
from worker.simulate.world import Clocks
from worker.tasks import reconciliation as reconciliation_tasks

PROVISION_SWEEP = "billing.orgs.sweep"
SEAT_SWEEP_LOOKBACK = timedelta(minutes=15)  # worker/tasks/seats.py
USAGE_SWEEP_LOOKBACK = timedelta(hours=2)  # worker/tasks/usage.py
QUEUE = "billing"
_QUIET_POLLS = 2


class BeatRunner(Protocol):
    def run(self, task: str, now: datetime) -> None: ...

    def settle(self) -> None:
        """Return once the work this runner started (or the web process sent) is done."""


class InProcessBeat:
    """Each beat task's work, run here with the same jobs the task calls."""

    def __init__(self, settings: Settings, clocks: Clocks, locks: jobs.LockFactory) -> None:
        self.settings = settings
        self.clocks = clocks
        self.locks = locks
        self.handlers: Mapping[str, Callable[[datetime], object]] = {
            PROVISION_SWEEP: self._provision,
            "billing.seats.sweep": self._seats,
            "billing.usage.sweep": self._usage_sweep,
            "billing.usage.close_due": self._close_due,
            "billing.usage.close_period": self._close_period,
            "billing.reconciliation.sweep": self._reconcile,
            "billing.reconciliation.check_prices": self._check_prices,
            # Quota counters count the product's checks; a timeline makes none, so the
            # checkpoint has nothing to write.
            "billing.quotas.checkpoint": lambda _now: None,
        }

    def run(self, task: str, now: datetime) -> None:
        self.handlers[task](now)

    def settle(self) -> None:
        return  # everything ran before `run` returned

    def _provision(self, now: datetime) -> None:
        for org_id in jobs.unprovisioned_orgs(self.settings):
            jobs.provision_org(
                org_id,
                now,
                stripe_test_clock_id=self.clocks.clock_for(org_id),
                locks=self.locks,
                settings=self.settings,
            )

    def _seats(self, now: datetime) -> None:
        for org_id in jobs.orgs_with_seat_changes_since(now - SEAT_SWEEP_LOOKBACK, self.settings):
            jobs.sync_seats(org_id, now, locks=self.locks, settings=self.settings)

    def _usage_sweep(self, now: datetime) -> None:
        for org_id in jobs.orgs_with_usage_since(now - USAGE_SWEEP_LOOKBACK, self.settings):
            jobs.push_usage(org_id, now, locks=self.locks, settings=self.settings)

    def _close_due(self, now: datetime) -> None:
        for org_id in jobs.provisioned_orgs(self.settings):
            jobs.push_usage(org_id, now, locks=self.locks, settings=self.settings)

    def _close_period(self, now: datetime) -> None:
        period = month_period_of(now - timedelta(days=1))
        for org_id in jobs.provisioned_orgs(self.settings):
            jobs.push_usage(org_id, now, within=period, locks=self.locks, settings=self.settings)

    def _reconcile(self, now: datetime) -> None:
        lookback = timedelta(hours=self.settings.reconciliation_sweep_hours)
        reconciliation_tasks.reconciler(self.settings).sweep(now, lookback)

    def _check_prices(self, now: datetime) -> None:
        check = PriceDriftCheck(
            composition.database(self.settings), composition.stripe_gateway(self.settings)
        )
        check.check(load_book(self.settings.book), now)


class CeleryBeat:
    """Beat's tasks sent to real Celery workers by name, then waited for."""

    def __init__(self, settings: Settings, clocks: Clocks, celery: Any) -> None:
        self.settings = settings
        self.clocks = clocks
        self.celery = celery

    def run(self, task: str, now: datetime) -> None:
        if task == PROVISION_SWEEP:
            for org_id in jobs.unprovisioned_orgs(self.settings):
                clock_id = self.clocks.clock_for(org_id)
                self.celery.send_task(
                    "billing.orgs.provision", args=[org_id, isoformat_z(now), clock_id]
                )
        else:
            self.celery.send_task(task, kwargs=_now_kwargs(task, now))

    def settle(self, timeout: float = 600) -> None:
        """Until the broker holds no queued and no unacknowledged task (acks are late)."""
        client = composition.redis_client(self.settings)
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < _QUIET_POLLS:
            if time.monotonic() > deadline:
                raise RuntimeError("the Celery workers did not finish the step within 10 minutes")
            busy = client.llen(QUEUE) or client.hlen("unacked")
            quiet = 0 if busy else quiet + 1
            time.sleep(0.05)


def _now_kwargs(task: str, now: datetime) -> dict[str, Any]:
    """Beat sends no arguments; in simulation each task is told the simulated instant."""
    if task.startswith("billing.reconciliation.") or task == "billing.quotas.checkpoint":
        return {}  # these read the worker's clock (BILLING_SIMULATED_CLOCK_KEY)
    return {"now": isoformat_z(now)}
