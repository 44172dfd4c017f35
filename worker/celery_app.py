"""The Celery application: broker, serialisation and delivery settings, each with its reason."""

from __future__ import annotations

from typing import Any

from celery import Celery

from worker.beat import beat_schedule
from worker.dispatch import BillingTask
from worker.settings import Settings, get_settings

TASK_MODULES = [
    "worker.tasks.orgs",
    "worker.tasks.seats",
    "worker.tasks.usage",
    "worker.tasks.reconciliation",
    "worker.tasks.quotas",
    "worker.tasks.outbox",
    "worker.tasks.alerts",
]
# Seconds to connect to the broker: one that is down fails fast, and the enqueue goes to the
# outbox (worker/dispatch.py also bounds each publish's retries).
BROKER_CONNECT_SECONDS = 2.0


def broker_url(settings: Settings) -> str:
    """BILLING_BROKER_URL, or the Redis of BILLING_REDIS_URL when it is not set."""
    return settings.broker_url or settings.redis_url


def is_rabbitmq(url: str) -> bool:
    return url.split("://", 1)[0] in {"amqp", "amqps", "pyamqp"}


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    broker = broker_url(settings)
    # Every task publishes through worker/dispatch.py: a message the broker cannot take, a
    # retry's included, is kept in the outbox table and published later, never dropped.
    app = Celery("billing", include=TASK_MODULES, task_cls=BillingTask)
    app.conf.update(
        broker_url=broker,
        # Tasks take ids and ISO dates only; JSON keeps messages readable and refuses pickles.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Acknowledge after the task returns: a worker killed mid-task leaves the message to be
        # delivered again. Every task is idempotent, so a second run is harmless.
        task_acks_late=True,
        # ...and when the pool process dies (SIGKILL, OOM) the parent requeues its message at
        # once instead of waiting for the visibility timeout.
        task_reject_on_worker_lost=True,
        # One message at a time per process: Stripe calls are slow and rate limited; a worker
        # that dies holds at most one unacknowledged task, and work spreads evenly.
        worker_prefetch_multiplier=1,
        # A task running when the broker connection drops finishes its work (killing it would
        # leave its org locks held until they expire); its delivery comes back (RabbitMQ: at
        # once; Redis: after the visibility timeout) and the second run finds the work done.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # A broker that is down is given up on within seconds (BROKER_CONNECT_SECONDS).
        broker_connection_timeout=BROKER_CONNECT_SECONDS,
        **result_store_options(settings),
        # A hung Stripe call must not pin a worker forever; the soft limit lets the task record
        # its failure before the hard limit kills it.
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        # Beat schedules and task timestamps in UTC: billing periods are UTC.
        timezone="UTC",
        enable_utc=True,
        # Keep retrying the broker at start-up (the Celery 6 default), so a worker started
        # before its broker comes up waits for it.
        broker_connection_retry_on_startup=True,
        # Logs go through structlog; Celery must not replace the root logger's handlers.
        worker_hijack_root_logger=False,
        task_default_queue=settings.broker_queue,
    )
    if is_rabbitmq(broker):
        app.conf.update(rabbitmq_options())
    else:
        app.conf.update(redis_broker_options(settings))
    app.conf.beat_schedule = beat_schedule()
    return app


def result_store_options(settings: Settings) -> dict[str, Any]:
    """Celery's results in Redis, whatever the broker (read by `billing close` for progress)."""
    return {
        "result_backend": settings.redis_url,
        "result_backend_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            # Each result-store call tries Redis briefly: a client that publishes while Redis
            # is down (its result subscription fails first) keeps the message in the outbox in
            # about a second instead of twenty...
            "retry_policy": {
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        },
        # ...while a worker storing a result keeps retrying with backoff for about a minute,
        # so a Redis restart does not fail a task whose work was done.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "result_backend_base_sleep_between_retries_ms": 200,
        "result_backend_max_sleep_between_retries_ms": 3000,
        # Results are only read by `billing close` for progress; keep them a day.
        "result_expires": 86_400,
    }


def redis_broker_options(settings: Settings) -> dict[str, Any]:
    """A Redis broker: unacknowledged deliveries come back after the visibility timeout."""
    return {
        "broker_transport_options": {
            # Redis redelivers unacknowledged messages after this many seconds; it must exceed
            # the hard time limit. Restore checks run often so a dead worker's task is not
            # parked.
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            # A Redis that vanished without closing the connection fails a publish in
            # seconds instead of hanging it (above the 1 s BRPOP poll).
            "socket_connect_timeout": BROKER_CONNECT_SECONDS,
            "socket_timeout": 10,
        },
    }


def rabbitmq_options() -> dict[str, Any]:
    """RabbitMQ: replicated queues and confirmed publishes (Celery 5.5+, kombu 5.5+)."""
    return {
        # Quorum queues: durable and replicated, RabbitMQ's recommended type for work queues;
        # Celery then uses per-consumer prefetch (quorum queues have no global QoS).
        "task_default_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        # With quorum queues, Celery delays eta/countdown messages (retries, seat windows) in
        # RabbitMQ itself (native delayed delivery: the `celery_delayed_*` exchanges and queues
        # the worker declares), which routes them through a topic exchange.
        "task_default_exchange_type": "topic",
        "broker_transport_options": {
            # Publisher confirms: a publish returns once RabbitMQ has the message, and one it
            # refuses raises (and goes to the outbox) instead of vanishing.
            "confirm_publish": True,
        },
        # Unacknowledged deliveries go back to the queue as soon as a worker's connection
        # closes; RabbitMQ's consumer_timeout (30 min by default) must exceed the task time
        # limit so a slow task keeps its delivery.
    }


app = make_celery()
