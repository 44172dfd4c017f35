"""Counters of what every process does (tasks run, Stripe requests sent), kept in Redis.

Workers are many processes on many machines; a scrape of one web process must see all of them.
Each process adds to a small in-memory buffer and flushes it to Redis hashes (HINCRBYFLOAT, one
pipeline) at most once a second and at the end of every task, so counting costs no round trip
per event. The web process's `/metrics` (worker/web/metrics.py) reads the hashes. A flush that
fails (Redis away) keeps the buffer for the next one; past `MAX_BUFFERED` fields, new fields
are dropped and counted in `billing_metrics_dropped_total` rather than growing without bound.

The Celery signal handlers here count each task by name and outcome with its duration, and
record the last run of each scheduled (beat) task in `scheduled_runs` for `billing status`.
"""

from __future__ import annotations

import atexit
import json
import re
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import redis
import structlog
from celery import signals

from models.alerts import ScheduledRun
from models.db import unit_of_work
from worker import clock
from worker.beat import beat_schedule
from worker.settings import get_settings

log = structlog.get_logger(__name__)

KEY_PREFIX = "billing:metrics:"
TASKS = "tasks"  # field [task, state] -> count
TASK_SECONDS = "task_seconds"  # field [task] -> summed seconds
TASK_BUCKETS = "task_buckets"  # field [task, le] -> count of runs at most `le` seconds
STRIPE_REQUESTS = "stripe_requests"  # field [method, endpoint, status] -> count
DROPPED = "dropped"  # field [] -> buffered increments dropped while Redis was away
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
FLUSH_SECONDS = 1.0
MAX_BUFFERED = 5000

# Stripe object ids in a path (`in_1Px…`, `cus_9f…`): a prefix, then letters and digits with
# at least one digit or capital, so `meter_events` or `event_summaries` stay as they are.
_STRIPE_ID = re.compile(r"^[a-z]+(_[a-z]+)?_(?=[A-Za-z0-9]*[0-9A-Z])[A-Za-z0-9]{6,}$")


def field_of(*labels: str) -> str:
    return json.dumps(list(labels))


def labels_of(field: str | bytes) -> list[str]:
    value = json.loads(field)
    assert isinstance(value, list)
    return [str(item) for item in value]


class SharedCounters:
    """This process's increments not yet in Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], float] = {}
        self._flushed_at = time.monotonic()
        self._client: redis.Redis | None = None

    def add(self, name: str, field: str, amount: float = 1.0) -> None:
        with self._lock:
            key = (name, field)
            if key not in self._pending and len(self._pending) >= MAX_BUFFERED:
                key = (DROPPED, field_of())
            self._pending[key] = self._pending.get(key, 0.0) + amount
            due = time.monotonic() - self._flushed_at >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        if not pending:
            return
        try:
            pipe = self._redis().pipeline(transaction=False)
            for (name, field), amount in pending.items():
                pipe.hincrbyfloat(KEY_PREFIX + name, field, amount)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] = self._pending.get(key, 0.0) + amount
            log.debug("metrics.flush_failed", error=str(exc))

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                get_settings().redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        return self._client


COUNTERS = SharedCounters()
atexit.register(COUNTERS.flush)  # a short-lived process (the CLI) keeps its last counts


def endpoint_of(url: str) -> str:
    """`https://api.stripe.com/v1/invoices/in_1Px…/lines` -> `/v1/invoices/{id}/lines`."""
    parts = urlsplit(url).path.split("/")
    return "/".join("{id}" if _STRIPE_ID.match(part) else part for part in parts) or "/"


def stripe_request_observed(method: str, url: str, status: int) -> None:
    """The Stripe HTTP client's observer: one request (429s included) per endpoint."""
    COUNTERS.add(STRIPE_REQUESTS, field_of(method.upper(), endpoint_of(url), str(status)))


def task_finished(task: str, state: str, seconds: float) -> None:
    COUNTERS.add(TASKS, field_of(task, state))
    COUNTERS.add(TASK_SECONDS, field_of(task), seconds)
    for le in [*[b for b in DURATION_BUCKETS if seconds <= b], float("inf")]:
        COUNTERS.add(TASK_BUCKETS, field_of(task, _le(le)))
    COUNTERS.flush()


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def bucket_bounds() -> Iterable[str]:
    return [*(_le(b) for b in DURATION_BUCKETS), "+Inf"]


# --------------------------------------------------------------------------- Celery signals

_started: dict[str, tuple[float, datetime]] = {}
_SCHEDULED = frozenset(str(entry["task"]) for entry in beat_schedule().values())


@signals.task_prerun.connect(weak=False, dispatch_uid="billing.metrics.prerun")
def _on_prerun(task_id: str, task: Any, **_: Any) -> None:
    started_at = clock.now()
    _started[task_id] = (time.monotonic(), started_at)
    if task.name in _SCHEDULED:
        _record_run(task.name, started_at=started_at)


@signals.task_postrun.connect(weak=False, dispatch_uid="billing.metrics.postrun")
def _on_postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    began, _at = _started.pop(task_id, (time.monotonic(), clock.wall_now()))
    seconds = time.monotonic() - began
    outcome = (state or "UNKNOWN").lower()
    task_finished(task.name, outcome, seconds)
    if task.name in _SCHEDULED:
        _record_run(task.name, finished_at=clock.now(), outcome=outcome, seconds=seconds)


@signals.task_failure.connect(weak=False, dispatch_uid="billing.metrics.failure")
def _on_failure(sender: Any, exception: BaseException | None = None, **_: Any) -> None:
    if getattr(sender, "name", None) in _SCHEDULED:
        _record_run(sender.name, error=f"{type(exception).__name__}: {exception}"[:2000])


def _record_run(
    task_name: str,
    *,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    outcome: str | None = None,
    seconds: float | None = None,
    error: str | None = None,
) -> None:
    """Upsert the task's row of `scheduled_runs`; a database error never fails the task."""
    from worker import composition  # noqa: PLC0415 - composition imports this module

    try:
        with unit_of_work(composition.database()) as session:
            row = session.get(ScheduledRun, task_name) or ScheduledRun(task_name=task_name)
            if started_at is not None:
                row.last_started_at = started_at
                row.run_count += 1
            if finished_at is not None:
                row.last_finished_at, row.last_outcome = finished_at, outcome
                row.last_duration_ms = None if seconds is None else round(seconds * 1000)
                if outcome == "success":
                    row.last_error = None
            if error is not None:
                row.last_error = error
            session.add(row)
    except Exception as exc:  # metrics must not break the work they watch
        log.warning("metrics.scheduled_run_not_recorded", task=task_name, error=str(exc))
