"""The Celery application: broker, serialisation and delivery settings, each with its reason."""

from __future__ import annotations

from celery import Celery

from worker.beat import beat_schedule
from worker.settings import Settings, get_settings

TASK_MODULES = [
    "worker.tasks.orgs",
    "worker.tasks.seats",
    "worker.tasks.usage",
    "worker.tasks.reconciliation",
    "worker.tasks.quotas",
]


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("billing", include=TASK_MODULES)
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
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
        # Redis redelivers unacknowledged messages after this many seconds; it must exceed the
        # hard time limit below. Restore checks run often so a dead worker's task is not parked.
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.broker_visibility_timeout},
        # A hung Stripe call must not pin a worker forever; the soft limit lets the task record
        # its failure before the hard limit kills it.
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        # Results are only read by `billing close` for progress; keep them a day.
        result_expires=86_400,
        # Beat schedules and task timestamps in UTC: billing periods are UTC.
        timezone="UTC",
        enable_utc=True,
        # Keep retrying the broker at start-up (the Celery 6 default), so a worker started
        # before Redis comes up waits for it.
        broker_connection_retry_on_startup=True,
        # Logs go through structlog; Celery must not replace the root logger's handlers.
        worker_hijack_root_logger=False,
        task_default_queue="billing",
    )
    app.conf.beat_schedule = beat_schedule()
    return app


app = make_celery()
