"""What the web app needs, built once: database, secrets, tokens, sessions and a task dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import redis
import structlog
from sqlalchemy.engine import Engine

from billing.usage.meter_errors import MeterErrorIntake
from worker import clock as worker_clock
from worker import composition, jobs
from worker.settings import Environment, Settings, split_tokens
from worker.web.sessions import MemorySessionStore, RedisSessionStore, SessionStore

log = structlog.get_logger(__name__)

HANDLE_EVENT = "billing.reconciliation.handle_event"
SYNC_SEATS = "billing.seats.sync_org"
PUSH_USAGE = "billing.usage.push_org"
SCHEDULE_SEATS = "billing.seats.schedule"


class TaskDispatcher(Protocol):
    """Sends a task by its fixed name (Celery) or runs it at once (no broker)."""

    def send(self, name: str, args: Sequence[Any]) -> str: ...


class CeleryDispatcher:
    """Enqueue by name (the web process never imports task code), through the outbox when the
    broker is away."""

    def __init__(self, celery: Any, settings: Settings | None = None) -> None:
        self.celery = celery
        self.settings = settings

    def send(self, name: str, args: Sequence[Any]) -> str:
        from worker import dispatch  # noqa: PLC0415 - Celery only with a broker

        sent = dispatch.enqueue(name, args, app=self.celery, settings=self.settings)
        if sent.kept:
            return f"kept {name} ({sent.task_id}) for the broker's return"
        log.info("web.task_sent", task=name, task_id=sent.task_id)
        return f"enqueued {name} ({sent.task_id})"


class InlineDispatcher:
    """Runs the named handler in the web process (tests, the offline demo)."""

    def __init__(self, handlers: Mapping[str, Callable[..., object]]) -> None:
        self.handlers = dict(handlers)

    def send(self, name: str, args: Sequence[Any]) -> str:
        handler = self.handlers.get(name)
        if handler is None:
            raise LookupError(f"{name} is not available in this process")
        result = handler(*args)
        log.info("web.task_ran_inline", task=name)
        return f"ran {name}: {result}"


@dataclass(frozen=True)
class WebServices:
    engine: Engine
    webhook_secret: str
    support_tokens: tuple[str, ...]
    admin_tokens: tuple[str, ...]
    dispatcher: TaskDispatcher
    default_book: str = "devtools"
    sessions: SessionStore = field(default_factory=MemorySessionStore)
    secure_cookies: bool | None = None  # None: Secure when the request came over https
    clock: Callable[[], datetime] = field(default=worker_clock.now)
    stripe_livemode: bool = False  # the key's mode: webhook events of the other are refused
    # /metrics: where the workers' shared counters and the request budget live (None: nowhere).
    metrics_redis: redis.Redis | None = None
    stripe_requests_per_second: int = 25
    # /stripe/thin-events: Stripe's meter error reports (None: no destination secret set).
    meter_errors: MeterErrorIntake | None = None


def inline_handlers(settings: Settings) -> dict[str, Callable[..., object]]:
    """The jobs the Celery tasks run (worker/jobs.py), run in the web process instead: under
    the same per-org Redis locks, as of the worker's clock."""
    locks = jobs.default_locks(settings)

    def handle_event(stripe_event_id: str) -> object:
        now = worker_clock.now(settings)
        return jobs.handle_event(stripe_event_id, now, locks=locks, settings=settings).action

    def sync_seats(org_id: str) -> object:
        return jobs.sync_seats(org_id, worker_clock.now(settings), locks=locks, settings=settings)

    def schedule_seats(org_ids: Sequence[str]) -> object:
        # Inline there is no coalescing window to wait for: sync the orgs now.
        return [sync_seats(org_id) for org_id in org_ids]

    def push_usage(org_id: str) -> object:
        return jobs.push_usage(org_id, worker_clock.now(settings), locks=locks, settings=settings)

    return {
        HANDLE_EVENT: handle_event,
        SYNC_SEATS: sync_seats,
        SCHEDULE_SEATS: schedule_seats,
        PUSH_USAGE: push_usage,
    }


def session_store(settings: Settings) -> SessionStore:
    """Login sessions in Redis (every web process) or in this process (`local`)."""
    ttl_seconds = max(1, round(settings.web_session_hours * 3600))
    if settings.web_session_store == "local":
        return MemorySessionStore(ttl_seconds)
    return RedisSessionStore(composition.redis_client(settings), ttl_seconds)


def secure_cookies(settings: Settings) -> bool | None:
    if settings.web_cookie_secure == "auto":
        return True if settings.environment is Environment.PRODUCTION else None
    return settings.web_cookie_secure == "always"


def build_services(settings: Settings) -> WebServices:
    if settings.web_inline_tasks:
        dispatcher: TaskDispatcher = InlineDispatcher(inline_handlers(settings))
    else:
        from worker.celery_app import make_celery  # noqa: PLC0415 - only with a broker

        dispatcher = CeleryDispatcher(make_celery(settings), settings)
    secret = settings.stripe_webhook_secret
    return WebServices(
        engine=composition.database(settings),
        webhook_secret=secret.get_secret_value() if secret else "",
        support_tokens=split_tokens(settings.support_tokens),
        admin_tokens=split_tokens(settings.admin_tokens),
        dispatcher=dispatcher,
        default_book=settings.book,
        sessions=session_store(settings),
        secure_cookies=secure_cookies(settings),
        clock=lambda: worker_clock.now(settings),
        stripe_livemode=settings.stripe_livemode,
        metrics_redis=composition.redis_client(settings),
        stripe_requests_per_second=settings.stripe_requests_per_second,
        meter_errors=composition.meter_error_intake(settings),
    )
