"""Every task message the worker sends: to the broker with a short timeout, else to the outbox.

`enqueue` is the one way code sends a task (by task or by its fixed name); `BillingTask`, the
base class of every task, routes Celery's own publishes the same way: `apply_async` (and so
`delay`, the members of a group and the message of a retry). When the broker cannot take a
message (unreachable, timed out, refused by a publisher confirm), the message is written to the
outbox table instead, under the same task id, and the caller carries on: nothing is raised once
the row is committed. The relay (`relay_outbox`: beat every few seconds, and at once in a
process whose next publish succeeds) publishes it later. A retry whose message could be neither
published nor kept leaves its delivery requeued instead of rejected, so it is never dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import amqp.exceptions
import kombu.exceptions
import redis
import structlog
from celery import Celery, Task
from celery.exceptions import Reject
from celery.utils import uuid
from celery.utils.time import maybe_iso8601

from worker import clock, composition, outbox
from worker.outbox import BrokerUnavailableError, RelayOutcome, TaskMessage
from worker.settings import Settings

log = structlog.get_logger(__name__)

# What "the broker cannot take the message" looks like: kombu's error once its publish retries
# are spent, the Redis client's, a RabbitMQ publisher confirm that said no, and socket errors
# (refused, reset, timed out) that reach us unwrapped.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    amqp.exceptions.MessageNacked,
    amqp.exceptions.RecoverableConnectionError,
    OSError,
)
# Publishing tries the broker three times within about half a second, then keeps the message.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.3,
}
# A publisher confirm (RabbitMQ) that does not come within this many seconds counts as refused.
CONFIRM_TIMEOUT_SECONDS = 5.0
# After a broker error, messages go straight to the outbox for this long: a fan-out during an
# outage does not wait half a second per message.
BROKER_PAUSE_SECONDS = 1.0
OPPORTUNISTIC_RELAY_BATCH = 100


@dataclass(frozen=True)
class Enqueued:
    task_id: str
    kept: bool  # in the outbox: published by the relay once the broker is back


def enqueue(
    task: Task | str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    eta: datetime | None = None,
    app: Celery | None = None,
    settings: Settings | None = None,
) -> Enqueued:
    """Send `task` (a task, or its fixed name with the `app` to send it through)."""
    if isinstance(task, str):
        if app is None:
            raise TypeError(f"enqueue({task!r}) by name needs the Celery app to send it through")
        sender: Celery = app
        message = TaskMessage(task, uuid(), tuple(args), dict(kwargs or {}), eta)

        def publish() -> object:
            return send_message(sender, message, add_to_parent=True)

    else:
        sender = app or task.app
        message = TaskMessage(task.name, uuid(), tuple(args), dict(kwargs or {}), eta)

        def publish() -> object:
            # Celery's own apply_async (not BillingTask's, which would keep the message twice).
            return Task.apply_async(
                task, message.args, message.kwargs, message.task_id, eta=eta, **publish_options()
            )

    if publish_or_keep(message, publish, settings) is None:
        return Enqueued(message.task_id, kept=True)
    _relay_if_kept(sender, settings)
    return Enqueued(message.task_id, kept=False)


def send_message(app: Celery, message: TaskMessage, *, add_to_parent: bool = False) -> object:
    """Publish `message` by its task name, under its own task id."""
    return app.send_task(
        message.task_name,
        args=list(message.args),
        kwargs=dict(message.kwargs),
        task_id=message.task_id,
        eta=message.eta_at,
        retries=message.retries,
        add_to_parent=add_to_parent,
        **publish_options(),
    )


def publish_options() -> dict[str, Any]:
    """The options of every publish: retried briefly, confirmed (RabbitMQ) within a bound."""
    return {
        "retry": True,
        "retry_policy": dict(PUBLISH_RETRY_POLICY),
        "confirm_timeout": CONFIRM_TIMEOUT_SECONDS,
    }


def publish_or_keep(
    message: TaskMessage, publish: Callable[[], object], settings: Settings | None = None
) -> object | None:
    """What `publish` returned, or None when the broker could not take the message and it was
    written to the outbox. Raises only what is not a broker error, or when the database fails
    too."""
    try:
        return _guarded(publish)
    except BrokerUnavailableError as exc:
        outbox.keep(composition.database(settings), message, str(exc), _now())
        _kept.set()
        return None


def relay_outbox(
    app: Celery, settings: Settings | None = None, *, limit: int = outbox.RELAY_BATCH
) -> RelayOutcome:
    """Publish what the outbox holds (the beat task, and after a publish that succeeded)."""
    with _relaying:
        return _relay(app, settings, limit)


def _relay(app: Celery, settings: Settings | None, limit: int) -> RelayOutcome:
    _kept.clear()
    result = outbox.relay(
        composition.database(settings),
        lambda message: _guarded(lambda: send_message(app, message)),
        _now(),
        limit=limit,
    )
    if result.refused:
        _kept.set()
    return result


# ------------------------------------------------------------------ the broker's recent health

_kept = threading.Event()  # this process kept a message since its last relay
_relaying = threading.Lock()
_paused_until = [0.0]


def _guarded(publish: Callable[[], object]) -> object:
    """Call `publish`, turning a broker error into BrokerUnavailableError (and skipping the
    broker for a moment after one)."""
    if time.monotonic() < _paused_until[0]:
        raise BrokerUnavailableError("the broker failed moments ago")
    try:
        return publish()
    except (*BROKER_ERRORS, RuntimeError) as exc:
        # Celery's Redis result store, which a client subscribes to before it publishes,
        # says it lost Redis as a RuntimeError caused by the connection error.
        if isinstance(exc, RuntimeError) and not isinstance(exc.__cause__, BROKER_ERRORS):
            raise
        _paused_until[0] = time.monotonic() + BROKER_PAUSE_SECONDS
        raise BrokerUnavailableError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, RuntimeError) else exc
    return f"{type(cause).__name__}: {cause}".strip()


def reset_broker_pause() -> None:
    """Forget a recent broker error (tests that bring the broker back at once)."""
    _paused_until[0] = 0.0


def _relay_if_kept(app: Celery, settings: Settings | None) -> None:
    """The broker took a message: if this process kept some earlier, relay them now."""
    if not _kept.is_set() or time.monotonic() < _paused_until[0]:
        return
    if not _relaying.acquire(blocking=False):
        return  # another thread of this process is relaying
    try:
        _relay(app, settings, OPPORTUNISTIC_RELAY_BATCH)
    except Exception as exc:  # the message was sent; beat's relay tries again
        log.warning("outbox.relay_failed", error=str(exc))
    finally:
        _relaying.release()


def _now() -> datetime:
    """Wall-clock UTC: etas and the outbox's timestamps are the broker's time, not a job's."""
    return clock.wall_now()


def eta_of(options: Mapping[str, Any], now: datetime) -> datetime | None:
    """A publish's `eta` or `countdown` option as an instant."""
    eta = options.get("eta")
    if eta is not None:
        when: datetime = maybe_iso8601(eta) if isinstance(eta, str) else eta
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    countdown = options.get("countdown")
    return now + timedelta(seconds=float(countdown)) if countdown else None


class BillingTask(Task):
    """Every task's class: its publishes fall back to the outbox, and a retry that can be
    neither published nor kept requeues its delivery instead of rejecting it."""

    # False for a task whose message is pointless once late (the relay itself: beat sends the
    # next one within seconds); its publish then fails as Celery's does, and beat logs it.
    keep_in_outbox = True

    def apply_async(  # noqa: PLR0917 - Celery's own signature, which callers use positionally
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> Any:
        for option, value in publish_options().items():
            options.setdefault(option, value)
        keepable = not (link or link_error or options.get("chord"))  # none of our tasks use them
        if self.app.conf.task_always_eager or not keepable or not self.keep_in_outbox:
            return super().apply_async(
                args, kwargs, task_id, producer, link, link_error, shadow, **options
            )
        task_id = task_id or uuid()
        message = TaskMessage(
            self.name,
            task_id,
            tuple(args or ()),
            dict(kwargs or {}),
            eta_of(options, _now()),
            int(options.get("retries") or 0),
        )

        def publish() -> object:
            return super(BillingTask, self).apply_async(
                args, kwargs, task_id, producer, None, None, shadow, **options
            )

        result = publish_or_keep(message, publish)
        if result is None:
            return self.AsyncResult(task_id)
        _relay_if_kept(self.app, None)
        return result

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry; when its message could not be sent at all, Celery raises
        `Reject(requeue=False)` and the delivery would be dropped: requeue it instead."""
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            if exc.requeue:
                raise
            dropped = exc
        log.error(
            "task.retry_requeued",
            task=self.name,
            task_id=self.request.id,
            error=repr(dropped.reason),
        )
        raise Reject(dropped.reason, requeue=True) from dropped
