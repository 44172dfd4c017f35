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

from billing.core.periods import Period, isoformat_z, month_period_of
from worker import composition, jobs, month_close
from worker.settings import Settings
from worker.simulate.world import Clocks

PROVISION_SWEEP = "billing.orgs.sweep"
_QUIET_POLLS = 2


class BeatRunner(Protocol):
    def run(self, task: str, now: datetime) -> None: ...

    def settle(self) -> None:
        """Return once the work this runner started (or the web process sent) is done."""


class InProcessBeat:
    """What each beat task runs, run here: the same selections and jobs of worker/jobs.py."""

    def __init__(self, settings: Settings, clocks: Clocks) -> None:
        self.settings = settings
        self.clocks = clocks
        self.handlers: Mapping[str, Callable[[datetime], object]] = {
            PROVISION_SWEEP: self._provision,
            "billing.seats.sweep": self._seats,
            "billing.usage.sweep": lambda now: self._push(
                jobs.orgs_with_usage_since(now - jobs.USAGE_SWEEP_LOOKBACK, settings), now
            ),
            "billing.usage.close_due": lambda now: self._push(jobs.provisioned_orgs(settings), now),
            "billing.usage.close_period": lambda now: month_close.close_month(
                month_period_of(now - timedelta(days=1)), now, settings=settings
            ),
            "billing.reconciliation.sweep": lambda now: jobs.sweep_reconciliations(
                now, settings=settings
            ),
            "billing.reconciliation.check_prices": lambda now: jobs.check_prices(
                now, settings=settings
            ),
            # Quota counters count the product's own checks before it acts; a timeline makes
            # none, and without Redis there are no counters to store.
            "billing.quotas.checkpoint": lambda _now: None,
            # Nothing here goes through a broker, so nothing is kept in the outbox.
            "billing.outbox.relay": lambda _now: None,
            "billing.reconciliation.redrive_events": self._redrive,
            "billing.alerts.deliver": lambda now: jobs.deliver_alerts(now, settings=settings),
            "billing.alerts.check_close": lambda now: jobs.check_close_late(now, settings=settings),
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
                settings=self.settings,
            )
        for org_id in jobs.lifecycle_due_orgs(self.settings):
            jobs.apply_lifecycle(org_id, now, settings=self.settings)

    def _seats(self, now: datetime) -> None:
        for org_id in jobs.orgs_for_seat_sweep(now, self.settings):
            jobs.sync_seats(org_id, now, settings=self.settings)

    def _redrive(self, now: datetime) -> None:
        for stripe_event_id in jobs.unhandled_webhook_events(now, self.settings):
            jobs.handle_event(stripe_event_id, now, settings=self.settings)

    def _push(self, org_ids: list[str], now: datetime, within: Period | None = None) -> None:
        jobs.push_usage_chunk(org_ids, now, within=within, settings=self.settings)


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
            for org_id in jobs.lifecycle_due_orgs(self.settings):
                self.celery.send_task("billing.orgs.lifecycle", args=[org_id, isoformat_z(now)])
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
            busy = client.llen(self.celery.conf.task_default_queue) or client.hlen("unacked")
            quiet = 0 if busy else quiet + 1
            time.sleep(0.05)


def _now_kwargs(_task: str, now: datetime) -> dict[str, Any]:
    """Beat sends no arguments: a task reads the worker's clock, which in simulation is the
    simulated instant; it is also passed, so a task's fan-out carries it."""
    return {"now": isoformat_z(now)}
