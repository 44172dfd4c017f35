"""Issue 17: a webhook event whose handling failed (inline, or its task was lost) is no longer
left unhandled for good. Stripe's redelivery is dropped as a duplicate by the inbox, so beat's
`webhook-redrive` sends every event still unhandled ten minutes after it arrived to the same
`handle_event` task again. Against a migrated SQLite file and the tests' Redis as the broker."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlmodel import Session

from billing.core.periods import isoformat_z
from models.db import migrate, unit_of_work
from models.reconciliation import WebhookEvent
from worker import composition
from worker.celery_app import app
from worker.settings import get_settings
from worker.tasks import reconciliation as reconciliation_tasks

pytestmark = pytest.mark.redis  # the tests' Redis is the live broker

HANDLE_EVENT = "billing.reconciliation.handle_event"
NOW = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    migrate(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    # The handler is built with a Stripe gateway; an ignored event never calls it.
    monkeypatch.setenv("BILLING_STRIPE_API_BASE", "http://127.0.0.1:9")
    monkeypatch.setenv("BILLING_STRIPE_BUDGET", "none")
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    get_settings.cache_clear()
    ages = {"evt_failed": 11, "evt_fresh": 2, "evt_done": 30, "evt_too_old": 4 * 24 * 60}
    with unit_of_work(composition.database()) as session:
        for event_id, minutes in ages.items():
            received_at = NOW - timedelta(minutes=minutes)
            session.add(
                WebhookEvent(
                    stripe_event_id=event_id,
                    type="customer.subscription.updated",  # handled by being ignored
                    payload_json=json.dumps({"id": event_id}),
                    received_at=received_at,
                    handled_at=received_at if event_id == "evt_done" else None,
                )
            )
    yield
    get_settings.cache_clear()


def sent_handle_events(client: redis.Redis) -> list[list[Any]]:
    """The `handle_event` messages waiting in the broker's queue (removed as they are read)."""
    found = []
    queue = app.conf.task_default_queue
    for raw in client.lrange(queue, 0, -1):
        payload = json.loads(raw)
        if payload["headers"]["task"] == HANDLE_EVENT:
            args, _kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
            found.append(args)
            client.lrem(queue, 1, raw)
    return found


def handled_at(event_id: str) -> datetime | None:
    with Session(composition.database()) as session:
        row = session.get(WebhookEvent, event_id)
        assert row is not None
        return row.handled_at


def test_an_event_left_unhandled_is_handled_again_through_the_same_task(inbox: None) -> None:
    client = redis.Redis.from_url(app.conf.broker_url)
    sent_handle_events(client)  # nothing of an earlier test's
    now = isoformat_z(NOW)
    # Fresh events are still being handled (their task may be retrying); events older than
    # the reconciliation sweep's window belong to final invoices, which the sweep covers.
    assert reconciliation_tasks.redrive_events.run(now) == 1
    assert sent_handle_events(client) == [["evt_failed", now]]
    assert handled_at("evt_failed") is None

    # The worker runs the message: the same task the webhook endpoint sends.
    assert reconciliation_tasks.handle_event.run("evt_failed", now) == "ignored"
    assert handled_at("evt_failed") == NOW
    assert reconciliation_tasks.redrive_events.run(now) == 0
    assert sent_handle_events(client) == []
    client.close()
