"""What the web app needs, built once: database, webhook secret, tokens and a task dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy.engine import Engine

from worker.settings import Settings, split_tokens

log = structlog.get_logger(__name__)

HANDLE_EVENT = "billing.reconciliation.handle_event"
SYNC_SEATS = "billing.seats.sync_org"
PUSH_USAGE = "billing.usage.push_org"
SCHEDULE_SEATS = "billing.seats.schedule"


class TaskDispatcher(Protocol):
    """Sends a task by its fixed name (Celery) or runs it at once (no broker)."""

    def send(self, name: str, args: Sequence[Any]) -> str: ...


class CeleryDispatcher:
    """Enqueue by name with `send_task`: the web process never imports task code."""

    def __init__(self, celery: Any) -> None:
        self.celery = celery

    def send(self, name: str, args: Sequence[Any]) -> str:
        result = self.celery.send_task(name, args=list(args))
        log.info("web.task_sent", task=name, task_id=result.id)
        return f"enqueued {name} ({result.id})"


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
    secure_cookies: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def inline_handlers(settings: Settings) -> dict[str, Callable[..., object]]:
    """The same services the Celery tasks call, run directly (no broker)."""
    from worker.tasks import reconciliation as tasks  # noqa: PLC0415 - builds Stripe clients

    handlers: dict[str, Callable[..., object]] = {
        HANDLE_EVENT: lambda event_id: (
            tasks.event_handler(settings).handle(event_id, datetime.now(UTC)).action
        ),
    }
    from worker import composition  # noqa: PLC0415 - optional services of other issues

    seat_sync = getattr(composition, "seat_sync", None)
    if seat_sync is not None:
        handlers[SYNC_SEATS] = lambda org_id: seat_sync(settings).sync(org_id, datetime.now(UTC))
    if seat_sync is not None:
        # Inline there is no coalescing window to wait for: sync the orgs now.
        handlers[SCHEDULE_SEATS] = lambda org_ids: [
            seat_sync(settings).sync(org_id, datetime.now(UTC)) for org_id in org_ids
        ]
    pusher = getattr(composition, "usage_pusher", None)
    if pusher is not None:
        handlers[PUSH_USAGE] = lambda org_id: pusher(settings).push_org(org_id, datetime.now(UTC))
    return handlers


def build_services(settings: Settings) -> WebServices:
    from worker import composition  # noqa: PLC0415 - the composition root, at start-up only

    if settings.web_inline_tasks:
        dispatcher: TaskDispatcher = InlineDispatcher(inline_handlers(settings))
    else:
        from worker.celery_app import make_celery  # noqa: PLC0415 - only with a broker

        dispatcher = CeleryDispatcher(make_celery(settings))
    secret = settings.stripe_webhook_secret
    return WebServices(
        engine=composition.database(settings),
        webhook_secret=secret.get_secret_value() if secret else "",
        support_tokens=split_tokens(settings.support_tokens),
        admin_tokens=split_tokens(settings.admin_tokens),
        dispatcher=dispatcher,
        default_book=settings.book,
        secure_cookies=settings.environment.value == "production",
    )
