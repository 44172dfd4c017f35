"""Issue 17: nothing acknowledged is lost while the broker is away. An enqueue, and a task's
retry, that cannot reach the broker is kept in the outbox table (never raised to the caller, the
delivery never rejected) and published, under the same task id, once the broker is back.

Against a migrated SQLite file, the tests' private Redis as the live broker (a queue of each
test's own) and a closed port as the broker that is down."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery
from celery.exceptions import Reject, Retry
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.db import make_engine, migrate
from models.outbox import OutboxMessage
from tests.conftest import REDIS_TEST_URL
from worker import composition, dispatch
from worker.celery_app import make_celery
from worker.outbox import BrokerUnavailableError, TaskMessage, keep, relay
from worker.settings import Settings, get_settings
from worker.tasks.common import TASK_OPTIONS
from worker.web.services import CeleryDispatcher

pytestmark = pytest.mark.redis  # the tests' Redis is the live broker

PUSH_ORG = "billing.usage.push_org"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Brokers:
    settings: Settings  # the database every process of the test writes the outbox to
    down: Celery  # a Celery app whose broker (and result store) refuses connections
    up: Celery  # a Celery app on the tests' Redis, with a queue of this test's own
    queue: str
    redis: redis.Redis

    def queued(self) -> list[dict[str, Any]]:
        """The messages waiting in the live broker's queue: headers and decoded arguments."""
        messages = []
        for raw in self.redis.lrange(self.queue, 0, -1):
            payload = json.loads(raw)
            args, kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
            messages.append({**payload["headers"], "args": args, "kwargs": kwargs})
        return messages


@pytest.fixture(autouse=True)
def _broker_pause_forgotten() -> Iterator[None]:
    dispatch.reset_broker_pause()
    yield
    dispatch.reset_broker_pause()


@pytest.fixture
def brokers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Brokers]:
    database_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate(database_url)
    # Celery's own publishes (BillingTask) find the outbox through the process's settings.
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    get_settings.cache_clear()
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    queue = f"test-dispatch-{uuid.uuid4().hex[:10]}"
    live = REDIS_TEST_URL
    settings = Settings(database_url=database_url, redis_url=live, broker_queue=queue)
    down = make_celery(Settings(database_url=database_url, redis_url=dead, broker_queue=queue))
    up = make_celery(settings)
    client = redis.Redis.from_url(live)
    try:
        yield Brokers(settings, down, up, queue, client)
    finally:
        client.delete(queue)
        client.close()
        for app in (down, up):
            app.close()
        get_settings.cache_clear()


def outbox_rows(settings: Settings) -> list[OutboxMessage]:
    with Session(composition.database(settings)) as session:
        return list(session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))


def test_an_enqueue_while_the_broker_is_down_is_kept_then_published_under_its_task_id(
    brokers: Brokers,
) -> None:
    eta = datetime.now(UTC) + timedelta(hours=1)
    sent = dispatch.enqueue(
        PUSH_ORG, ["org_1"], {"verify": True}, eta=eta, app=brokers.down, settings=brokers.settings
    )
    assert sent.kept
    (row,) = outbox_rows(brokers.settings)
    assert (row.task_name, row.task_id, row.published_at) == (PUSH_ORG, sent.task_id, None)
    assert (json.loads(row.args_json), json.loads(row.kwargs_json)) == (["org_1"], {"verify": True})
    assert row.eta_at == eta
    assert "Connection refused" in (row.last_error or "")
    assert brokers.queued() == []

    dispatch.reset_broker_pause()  # the broker is back
    outcome = dispatch.relay_outbox(brokers.up, brokers.settings)
    assert (outcome.published, outcome.refused) == (1, False)
    (message,) = brokers.queued()
    assert (message["id"], message["task"]) == (sent.task_id, PUSH_ORG)
    assert (message["args"], message["kwargs"]) == (["org_1"], {"verify": True})
    assert datetime.fromisoformat(message["eta"]) == eta
    (row,) = outbox_rows(brokers.settings)
    assert row.published_at is not None
    assert dispatch.relay_outbox(brokers.up, brokers.settings).published == 0


def test_the_next_publish_that_succeeds_relays_what_its_process_kept(brokers: Brokers) -> None:
    kept = dispatch.enqueue(PUSH_ORG, ["org_1"], app=brokers.down, settings=brokers.settings)
    assert kept.kept
    dispatch.reset_broker_pause()  # the broker is back
    sent = dispatch.enqueue(PUSH_ORG, ["org_2"], app=brokers.up, settings=brokers.settings)
    assert not sent.kept
    assert {m["id"] for m in brokers.queued()} == {kept.task_id, sent.task_id}
    assert all(row.published_at is not None for row in outbox_rows(brokers.settings))


def test_the_web_process_keeps_a_webhooks_handling_while_the_broker_is_down(
    brokers: Brokers,
) -> None:
    """The inbox row is committed before the dispatch: Stripe gets its 200, and the handling
    waits in the outbox instead of failing the request."""
    dispatcher = CeleryDispatcher(brokers.down, brokers.settings)
    answer = dispatcher.send("billing.reconciliation.handle_event", ["evt_1"])
    assert answer.startswith("kept billing.reconciliation.handle_event")
    (row,) = outbox_rows(brokers.settings)
    assert (row.task_name, json.loads(row.args_json)) == (
        "billing.reconciliation.handle_event",
        ["evt_1"],
    )


def test_a_task_fanning_out_while_the_broker_is_down_keeps_every_message(
    brokers: Brokers,
) -> None:
    """`delay`, `apply_async` and group members go through BillingTask: nothing is raised."""
    task = _task(brokers.down, "tests.dispatch.fan_out", _push)
    results = [task.delay(f"org_{n}") for n in range(3)]
    rows = outbox_rows(brokers.settings)
    assert [r.task_id for r in rows] == [r.id for r in results]
    assert [json.loads(r.args_json) for r in rows] == [["org_0"], ["org_1"], ["org_2"]]


def _task(app: Celery, name: str, body: Any) -> Any:
    return app.task(name=name, **TASK_OPTIONS)(body)


def _run_as_worker(task: Any, task_id: str, *args: Any) -> Any:
    """Run the task's body as a worker would run a delivery (not `called_directly`), so that
    a retryable error goes through Celery's `Task.retry` and its publish."""
    task.push_request(
        id=task_id, args=list(args), kwargs={}, retries=0, called_directly=False, delivery_info={}
    )
    try:
        return task.run(*args)
    finally:
        task.pop_request()


def _push(org_id: str) -> str:
    return org_id


def _redis_went_away(org_id: str) -> None:
    raise redis.ConnectionError(f"Redis went away while pushing {org_id}")


def test_a_retry_the_broker_cannot_take_is_kept_and_the_delivery_is_not_rejected(
    brokers: Brokers,
) -> None:
    """Today's failure: Celery's retry could not publish and raised Reject(requeue=False), so
    the worker dropped the delivery and the org's push was lost."""
    task = _task(brokers.down, "tests.dispatch.flaky_push", _redis_went_away)
    before = datetime.now(UTC)
    with pytest.raises(Retry):  # the worker acknowledges a Retry: the outbox holds the work
        _run_as_worker(task, "delivery-1", "org_7")
    (row,) = outbox_rows(brokers.settings)
    assert (row.task_name, row.task_id, json.loads(row.args_json)) == (
        "tests.dispatch.flaky_push",
        "delivery-1",  # the same task id: a group or a caller waiting on it sees the result
        ["org_7"],
    )
    assert row.retries == 1  # still counted against max_retries when it runs again
    # Its backoff (0–2 s with jitter for a first retry) is kept as the eta (none for 0 s).
    assert row.eta_at is None or before <= row.eta_at <= datetime.now(UTC) + timedelta(seconds=2)


def test_a_retry_that_can_be_neither_published_nor_kept_requeues_its_delivery(
    brokers: Brokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", f"postgresql://billing@127.0.0.1:{closed_port()}/x")
    get_settings.cache_clear()
    task = _task(brokers.down, "tests.dispatch.flaky_push_no_database", _redis_went_away)
    with pytest.raises(Reject) as rejected:
        _run_as_worker(task, "delivery-2", "org_8")
    assert rejected.value.requeue is True  # Celery's own answer here is requeue=False


def test_the_relay_stops_at_the_first_refusal_and_publishes_oldest_first_later(
    brokers: Brokers,
) -> None:
    engine = composition.database(brokers.settings)
    now = datetime.now(UTC)
    for n in range(3):
        message = TaskMessage(PUSH_ORG, f"task-{n}", [f"org_{n}"], eta_at=now - timedelta(1))
        keep(engine, message, "ConnectionError: refused", now)

    def refuse(_message: TaskMessage) -> None:
        raise BrokerUnavailableError("ConnectionError: still refused")

    outcome = relay(engine, refuse, now)
    assert (outcome.published, outcome.refused) == (0, True)
    rows = outbox_rows(brokers.settings)
    assert [(r.attempts, r.last_error) for r in rows] == [
        (1, "ConnectionError: still refused"),
        (0, "ConnectionError: refused"),  # not tried: the broker had just refused
        (0, "ConnectionError: refused"),
    ]

    published: list[TaskMessage] = []
    assert relay(engine, published.append, now + timedelta(minutes=1)).published == 3
    assert [m.task_id for m in published] == ["task-0", "task-1", "task-2"]
    assert all(m.eta_at is None for m in published)  # a past eta runs at once


def test_a_row_the_broker_refuses_for_another_reason_does_not_hold_up_the_rest(
    brokers: Brokers,
) -> None:
    engine = composition.database(brokers.settings)
    now = datetime.now(UTC)
    for n in range(2):
        keep(engine, TaskMessage(PUSH_ORG, f"task-{n}", [f"org_{n}"]), "refused", now)
    published: list[str] = []

    def publish(message: TaskMessage) -> None:
        if message.task_id == "task-0":
            raise ValueError("not a broker error")
        published.append(message.task_id)

    outcome = relay(engine, publish, now)
    assert (outcome.published, outcome.failed, outcome.refused) == (1, 1, False)
    assert published == ["task-1"]
    first = outbox_rows(brokers.settings)[0]
    assert (first.published_at, first.attempts) == (None, 1)
    assert first.last_error == "ValueError: not a broker error"


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    migrate(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.postgres
def test_two_relays_never_publish_the_same_row_at_once(postgres_engine: Engine) -> None:
    now = datetime.now(UTC)
    for n in range(3):
        keep(postgres_engine, TaskMessage(PUSH_ORG, f"task-{n}", [f"org_{n}"]), "refused", now)
    published: list[str] = []
    with Session(postgres_engine) as other_relay:
        # Another relay is publishing the oldest row: it holds the row's lock.
        held = other_relay.exec(
            select(OutboxMessage).order_by(col(OutboxMessage.id)).limit(1).with_for_update()
        ).first()
        assert held is not None
        outcome = relay(postgres_engine, lambda m: published.append(m.task_id), now)
        assert (outcome.published, published) == (2, ["task-1", "task-2"])
        other_relay.rollback()
    assert relay(postgres_engine, lambda m: published.append(m.task_id), now).published == 1
    assert published == ["task-1", "task-2", "task-0"]
