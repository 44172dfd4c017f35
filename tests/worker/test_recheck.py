"""A draft found `awaiting_usage` is reconciled again by a task sent with a countdown, on the
tests' own Redis broker (the queue every task goes to)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from billing.reconciliation.match import Status
from billing.reconciliation.reconciler import ReconciliationOutcome
from worker.celery_app import app
from worker.settings import get_settings
from worker.tasks.reconciliation import recheck_if_awaiting

pytestmark = pytest.mark.redis


def _queued(client: redis.Redis, queue: str, task_id: str) -> dict[str, Any] | None:
    for raw in client.lrange(queue, 0, -1):
        payload = json.loads(raw)
        if payload["headers"]["id"] == task_id:
            args, kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
            client.lrem(queue, 1, raw)  # no worker of another test runs it
            return {**payload["headers"], "args": args, "kwargs": kwargs}
    return None


def test_an_awaiting_draft_is_sent_for_a_recheck_after_the_countdown() -> None:
    settings = get_settings()
    client = redis.Redis.from_url(str(app.conf.broker_url))
    outcome = ReconciliationOutcome(7, "in_lagging", "org_1", Status.AWAITING_USAGE, held=False)
    before = datetime.now(UTC)
    task_id = recheck_if_awaiting(outcome)
    after = datetime.now(UTC)
    assert task_id is not None
    message = _queued(client, settings.broker_queue, task_id)
    assert message is not None
    assert message["task"] == "billing.reconciliation.reconcile_invoice"
    assert message["args"] == ["in_lagging", True]
    countdown = timedelta(seconds=settings.reconciliation_recheck_seconds)
    assert before + countdown <= datetime.fromisoformat(message["eta"]) <= after + countdown


@pytest.mark.parametrize("status", [Status.MATCHED, Status.MISMATCHED, Status.ERROR])
def test_a_judged_invoice_is_not_rechecked(status: Status) -> None:
    outcome = ReconciliationOutcome(8, "in_judged", "org_1", status, held=False)
    assert recheck_if_awaiting(outcome) is None
    assert recheck_if_awaiting(None) is None
