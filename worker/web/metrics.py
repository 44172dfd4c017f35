"""`GET /metrics`: Prometheus metrics of the whole deployment, read at scrape time.

State (backlogs, push lag, held drafts, reconciliation results, the close, scheduled runs) is
read from the database on each scrape (billing.monitoring.snapshot), so any web process gives
the same answer and nothing has to be kept in step. What happens in the worker processes
(tasks run, Stripe requests and 429s) is counted in Redis (worker/metrics.py) and read from
there; the request budget's fill is read from its Redis key. Like /healthz, the page holds no
org or customer data and needs no login; keep it on the internal network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import redis
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.monitoring.snapshot import GRACE_PERIOD, Snapshot, take_snapshot
from worker import metrics
from worker.web.common import services_of

log = structlog.get_logger(__name__)

BUDGET_KEY = "billing:stripe:budget"  # billing.stripe_gateway.budget.RedisRequestBudget.key


class BillingCollector:
    """One scrape: the database snapshot, the Redis counters and the request budget."""

    def __init__(
        self,
        engine: Engine,
        redis_client: redis.Redis | None,
        now: Callable[[], datetime],
        *,
        budget_rate: float,
    ) -> None:
        self.engine = engine
        self.redis = redis_client
        self.now = now
        self.budget_rate = budget_rate

    def collect(self) -> Iterator[Metric]:
        with Session(self.engine) as session:
            snapshot = take_snapshot(session, self.now())
        yield from state_metrics(snapshot)
        yield from self._shared_metrics()

    def _shared_metrics(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "billing_metrics_redis_up", "1 when the shared counters in Redis could be read."
        )
        if self.redis is None:
            up.add_metric([], 0)
            yield up
            return
        metrics.COUNTERS.flush()  # this process's own requests (inline jobs) count too
        try:
            hashes = {
                name: self.redis.hgetall(metrics.KEY_PREFIX + name)
                for name in (
                    metrics.TASKS,
                    metrics.TASK_SECONDS,
                    metrics.TASK_BUCKETS,
                    metrics.STRIPE_REQUESTS,
                    metrics.DROPPED,
                )
            }
            budget = self._budget_booked_seconds()
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics.redis_unreadable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from task_metrics(hashes)
        yield from stripe_metrics(hashes[metrics.STRIPE_REQUESTS], budget, self.budget_rate)
        dropped = CounterMetricFamily(
            "billing_metrics_dropped", "Counter increments dropped while Redis was unreachable."
        )
        dropped.add_metric([], sum(float(v) for v in hashes[metrics.DROPPED].values()))
        yield dropped

    def _budget_booked_seconds(self) -> float:
        """How far ahead the shared budget has handed out request slots (0: idle)."""
        assert self.redis is not None
        tat = self.redis.get(BUDGET_KEY)
        seconds, micros = self.redis.time()
        now_us = int(seconds) * 1_000_000 + int(micros)
        return 0.0 if tat is None else max(int(tat) - now_us, 0) / 1_000_000


def plain_gauges(snapshot: Snapshot) -> list[tuple[str, str, float]]:
    """(name, help, value) of each gauge without labels."""
    b, now = snapshot.backlogs, snapshot.now
    return [
        (
            "billing_pending_seat_windows",
            "Orgs whose seat increase is not in Stripe yet, and seat pushes in doubt.",
            b.pending_seat_windows,
        ),
        (
            "billing_webhook_inbox_unhandled",
            "Stripe webhook events stored and not handled yet.",
            b.webhook_unhandled,
        ),
        (
            "billing_webhook_inbox_stuck",
            "Webhook events unhandled for over 10 minutes (the re-drive's wait).",
            b.webhook_stuck,
        ),
        (
            "billing_webhook_inbox_oldest_age_seconds",
            "Age of the oldest unhandled webhook event.",
            b.webhook_oldest_age_seconds,
        ),
        (
            "billing_outbox_pending",
            "Task messages kept in the outbox, not yet published.",
            b.outbox_pending,
        ),
        (
            "billing_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox message.",
            b.outbox_oldest_age_seconds,
        ),
        ("billing_alerts_pending", "Alerts not delivered yet.", b.alerts_pending),
        ("billing_alerts_failed", "Alerts whose every delivery attempt failed.", b.alerts_failed),
        (
            "billing_held_drafts",
            "Draft invoices held because they disagree with the ledger.",
            len(snapshot.held_drafts),
        ),
        (
            "billing_held_draft_oldest_age_seconds",
            "How long the oldest held draft has been held.",
            max((h.age_seconds(now) for h in snapshot.held_drafts), default=0.0),
        ),
        (
            "billing_held_drafts_past_grace",
            "Held drafts held longer than Stripe's grace period.",
            sum(
                1 for h in snapshot.held_drafts if h.age_seconds(now) > GRACE_PERIOD.total_seconds()
            ),
        ),
        (
            "billing_grace_period_seconds",
            "Stripe's finalization grace period.",
            GRACE_PERIOD.total_seconds(),
        ),
    ]


def state_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    now = snapshot.now
    for name, text, value in plain_gauges(snapshot):
        gauge = GaugeMetricFamily(name, text)
        gauge.add_metric([], value)
        yield gauge
    lag = GaugeMetricFamily(
        "billing_usage_push_lag_seconds",
        "Per meter: now minus the arrival of the oldest ledger change not yet pushed to Stripe.",
        labels=["meter"],
    )
    for meter, seconds in sorted(snapshot.push_lag_seconds.items()):
        lag.add_metric([meter], seconds)
    yield lag
    results = GaugeMetricFamily(
        "billing_reconciliations",
        "Invoices by the status of their latest reconciliation.",
        labels=["status"],
    )
    for status, count in sorted(snapshot.reconciliation_statuses.items()):
        results.add_metric([status], count)
    yield results
    yield from close_metrics(snapshot)
    runs = GaugeMetricFamily(
        "billing_scheduled_task_last_run_age_seconds",
        "Per beat task: seconds since its last run finished.",
        labels=["task"],
    )
    for run in snapshot.scheduled_runs:
        if run.last_finished_at is not None:
            runs.add_metric([run.task_name], (now - run.last_finished_at).total_seconds())
    yield runs


def close_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    close = snapshot.last_close
    unfinished = GaugeMetricFamily(
        "billing_last_close_unfinished_orgs", "Orgs the latest month close has yet to push."
    )
    duration = GaugeMetricFamily(
        "billing_last_close_duration_seconds",
        "The latest month close's duration (running: seconds so far).",
    )
    if close is not None:
        unfinished.add_metric([], max(close.org_count - close.orgs_done, 0))
        end = close.finished_at or snapshot.now
        duration.add_metric([], (end - close.started_at).total_seconds())
    yield unfinished
    yield duration


def task_metrics(hashes: dict[str, dict[bytes, bytes]]) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "billing_tasks", "Celery tasks run, by task name and final state.", labels=["task", "state"]
    )
    for field, value in hashes[metrics.TASKS].items():
        runs.add_metric(metrics.labels_of(field), float(value))
    yield runs
    sums = {metrics.labels_of(f)[0]: float(v) for f, v in hashes[metrics.TASK_SECONDS].items()}
    buckets: dict[str, dict[str, float]] = {}
    for field, value in hashes[metrics.TASK_BUCKETS].items():
        task, le = metrics.labels_of(field)
        buckets.setdefault(task, {})[le] = float(value)
    histogram = HistogramMetricFamily(
        "billing_task_duration_seconds", "Celery task durations, by task name.", labels=["task"]
    )
    for task, counts in sorted(buckets.items()):
        histogram.add_metric(
            [task],
            [(le, counts.get(le, 0.0)) for le in metrics.bucket_bounds()],
            sum_value=sums.get(task, 0.0),
        )
    yield histogram


def stripe_metrics(
    requests: dict[bytes, bytes], booked_seconds: float, rate: float
) -> Iterator[Metric]:
    sent = CounterMetricFamily(
        "billing_stripe_requests",
        "Stripe HTTP requests, by method, endpoint and HTTP status (every attempt).",
        labels=["method", "endpoint", "status"],
    )
    limited = CounterMetricFamily(
        "billing_stripe_rate_limited",
        "Stripe answers 429 (rate limited), by method and endpoint.",
        labels=["method", "endpoint"],
    )
    by_endpoint: dict[tuple[str, str], float] = {}
    for field, value in requests.items():
        method, endpoint, status = metrics.labels_of(field)
        sent.add_metric([method, endpoint, status], float(value))
        if status == "429":
            key = (method, endpoint)
            by_endpoint[key] = by_endpoint.get(key, 0.0) + float(value)
    for (method, endpoint), value in sorted(by_endpoint.items()):
        limited.add_metric([method, endpoint], value)
    yield sent
    yield limited
    booked = GaugeMetricFamily(
        "billing_stripe_budget_booked_seconds",
        "The request budget's fill: how far ahead its slots are handed out (x rate = requests "
        "waiting for a slot).",
    )
    booked.add_metric([], booked_seconds)
    yield booked
    budget = GaugeMetricFamily("billing_stripe_budget_rate", "The request budget, per second.")
    budget.add_metric([], rate)
    yield budget


async def metrics_page(request: Request) -> Response:
    services = services_of(request)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        BillingCollector(
            services.engine,
            services.metrics_redis,
            services.clock,
            budget_rate=services.stripe_requests_per_second,
        )
    )
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_page, methods=["GET"])]
