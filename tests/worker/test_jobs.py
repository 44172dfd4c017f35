"""Every way of running a job holds the org's lock: the Celery task, the web's inline mode, and
the usage push inside webhook handling (the same `("usage", org)` lock as `jobs.push_usage`).

Against the Stripe emulator, a migrated SQLite file and the tests' Redis; each test has an org
of its own, so lock keys never collide.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from billing.core.locks import LockBusyError, org_lock
from billing.core.periods import isoformat_z
from billing.ledger.ingest import Ingestor
from billing.pricing.book import load_book
from billing.reconciliation.inbox import HandleAction, record_event
from billing.seats.sync import SeatSync
from billing.stripe_gateway.webhooks import verify_webhook
from billing.usage.push import UsagePusher
from models.db import migrate, unit_of_work
from models.reconciliation import WebhookEvent
from stripe_emulator import EmulatorConfig, EmulatorServer
from stripe_emulator.webhooks import sign
from tests.worker.web_server import serving
from worker import composition, jobs
from worker.settings import Settings, get_settings
from worker.tasks import reconciliation as reconciliation_tasks
from worker.web.app import create_app

SECRET = "whsec_jobs"
ADMIN = "admin-token-jobs"
HELD_SECONDS = 1.5  # well under the org lock's 10 s wait: the job must still be waiting


@dataclass
class Org:
    settings: Settings
    org_id: str
    stripe_customer_id: str
    stripe_invoice_id: str


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """A provisioned org (catalog, ledger row, Stripe customer and subscription) whose
    settings the tasks read from the environment."""
    with EmulatorServer(EmulatorConfig()) as emulator:
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        migrate(url)
        for name, value in {
            "BILLING_DATABASE_URL": url,
            "BILLING_STRIPE_API_BASE": emulator.url,
            "BILLING_STRIPE_BUDGET": "none",
            "BILLING_STRIPE_MAX_NETWORK_RETRIES": "0",
            "BILLING_STRIPE_WEBHOOK_SECRET": SECRET,
            "BILLING_ADMIN_TOKENS": ADMIN,
            "BILLING_WEB_INLINE_TASKS": "true",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        get_settings.cache_clear()
        settings = get_settings()
        now = datetime.now(UTC)
        composition.catalog_sync(settings).sync(load_book("devtools"), now)
        org_id = f"org_{uuid.uuid4().hex[:10]}"
        event = {"type": "org", "org": org_id, "plan": "team", "seats": 3, "at": isoformat_z(now)}
        with unit_of_work(composition.database(settings)) as session:
            assert Ingestor(session).ingest([json.dumps(event)], now).ok
        provisioned = jobs.provision_org(org_id, now, settings=settings)
        (invoice, *_) = emulator.state.invoices(provisioned["stripe_customer_id"])
        yield Org(settings, org_id, provisioned["stripe_customer_id"], invoice["id"])
        get_settings.cache_clear()


def _event_body(org: Org, event_id: str) -> bytes:
    """`invoice.created` for the org's invoice: handling it pushes the org's usage first."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "invoice.created",
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2026-10-28.endive",
            "data": {
                "object": {
                    "id": org.stripe_invoice_id,
                    "object": "invoice",
                    "customer": org.stripe_customer_id,
                    "status": "draft",
                }
            },
        }
    ).encode()


def _record(org: Org, event_id: str) -> None:
    body = _event_body(org, event_id)
    event = verify_webhook(body, sign(body, SECRET, int(time.time())), SECRET)
    assert record_event(composition.database(org.settings), event, datetime.now(UTC))


def _handled_at(org: Org, event_id: str) -> datetime | None:
    with Session(composition.database(org.settings)) as session:
        row = session.get(WebhookEvent, event_id)
        assert row is not None
        return row.handled_at


def _lock_key(scope: str, org_id: str) -> str:
    return f"billing:lock:{scope}:{org_id}"


@pytest.fixture
def calls_under_lock(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool]]:
    """Every usage push and seat sync, with whether the org's lock of its scope was held in
    Redis while it ran."""
    seen: list[tuple[str, str, bool]] = []
    redis = composition.redis_client()
    push_org, sync = UsagePusher.push_org, SeatSync.sync

    def spy(scope: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(service: Any, org_id: str, *args: Any, **kwargs: Any) -> Any:
            seen.append((scope, org_id, bool(redis.exists(_lock_key(scope, org_id)))))
            return real(service, org_id, *args, **kwargs)

        return call

    monkeypatch.setattr(UsagePusher, "push_org", spy("usage", push_org))
    monkeypatch.setattr(SeatSync, "sync", spy("seats", sync))
    return seen


def _while_locked(scope: str, org_id: str, run: Callable[[], object]) -> tuple[bool, object]:
    """Hold the org's lock as another worker would, start `run` in a thread, release after
    HELD_SECONDS. Returns whether `run` was still waiting at the release, and its result."""
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", run()), daemon=True)
    with org_lock(composition.redis_client(), scope, org_id):
        thread.start()
        time.sleep(HELD_SECONDS)
        waiting = thread.is_alive()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return waiting, result.get("value")


def test_the_webhook_task_pushes_usage_under_the_orgs_usage_lock(
    org: Org, calls_under_lock: list[tuple[str, str, bool]]
) -> None:
    _record(org, "evt_task")
    action = reconciliation_tasks.handle_event.run("evt_task")
    assert action == HandleAction.RECONCILED
    assert calls_under_lock == [("usage", org.org_id, True)]


def test_the_webhook_task_waits_while_another_worker_pushes_the_orgs_usage(org: Org) -> None:
    _record(org, "evt_wait")
    waiting, action = _while_locked(
        "usage", org.org_id, lambda: reconciliation_tasks.handle_event.run("evt_wait")
    )
    assert waiting, "the event's usage push did not wait for the org's usage lock"
    assert action == HandleAction.RECONCILED
    assert _handled_at(org, "evt_wait") is not None


def test_an_event_whose_push_cannot_get_the_lock_stays_unhandled_for_a_retry(
    org: Org, calls_under_lock: list[tuple[str, str, bool]]
) -> None:
    _record(org, "evt_busy")

    class Busy(RuntimeError):
        pass

    def busy(_scope: str, _org_id: str) -> Any:
        raise Busy

    with pytest.raises(Busy):
        jobs.handle_event("evt_busy", datetime.now(UTC), locks=busy, settings=org.settings)
    assert calls_under_lock == []  # no push without the lock
    assert _handled_at(org, "evt_busy") is None
    assert jobs.handle_event("evt_busy", datetime.now(UTC), settings=org.settings).action == (
        HandleAction.RECONCILED
    )


@pytest.fixture
def web(org: Org) -> Iterator[httpx.Client]:
    """`billing serve` as built from the settings, in inline mode (no broker)."""
    with (
        serving(create_app(org.settings)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


def _post_event(client: httpx.Client, org: Org, event_id: str) -> httpx.Response:
    body = _event_body(org, event_id)
    return client.post(
        "/stripe/webhook",
        content=body,
        headers={"Stripe-Signature": sign(body, SECRET, int(time.time()))},
    )


def test_the_inline_web_path_runs_every_job_under_the_orgs_lock(
    org: Org, web: httpx.Client, calls_under_lock: list[tuple[str, str, bool]]
) -> None:
    assert _post_event(web, org, "evt_inline").json() == {"received": True, "duplicate": False}
    assert _handled_at(org, "evt_inline") is not None
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for what in ("usage", "seats"):
        response = web.post(f"/api/admin/orgs/{org.org_id}/resync/{what}", headers=admin)
        assert response.status_code == 202, response.text
    assert calls_under_lock == [
        ("usage", org.org_id, True),  # the webhook's push
        ("usage", org.org_id, True),  # the admin re-syncs
        ("seats", org.org_id, True),
    ]


def test_the_inline_webhook_waits_while_another_worker_pushes_the_orgs_usage(
    org: Org, web: httpx.Client
) -> None:
    waiting, response = _while_locked(
        "usage", org.org_id, lambda: _post_event(web, org, "evt_inline_wait")
    )
    assert waiting, "the inline webhook's usage push did not wait for the org's usage lock"
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert _handled_at(org, "evt_inline_wait") is not None


def test_an_inline_resync_waits_for_the_orgs_seat_lock(org: Org, web: httpx.Client) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    waiting, response = _while_locked(
        "seats",
        org.org_id,
        lambda: web.post(f"/api/admin/orgs/{org.org_id}/resync/seats", headers=admin),
    )
    assert waiting, "the inline seat re-sync did not wait for the org's seat lock"
    assert isinstance(response, httpx.Response)
    assert response.status_code == 202


def test_a_job_slower_than_the_configured_lock_timeout_keeps_its_orgs_lock(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BILLING_ORG_LOCK_TIMEOUT_SECONDS sets the lock's expiry, and the lock is renewed while a
    job runs past it: another worker cannot take the org meanwhile."""
    monkeypatch.setenv("BILLING_ORG_LOCK_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    redis = composition.redis_client()
    push_org = UsagePusher.push_org
    seen: dict[str, int | bool] = {}

    def slow(service: UsagePusher, org_id: str, *args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        seen["ttl_ms"] = int(redis.pttl(_lock_key("usage", org_id)))
        try:
            with org_lock(redis, "usage", org_id, timeout_seconds=1, wait_seconds=0.2):
                seen["taken"] = True
        except LockBusyError:
            seen["taken"] = False
        return push_org(service, org_id, *args, **kwargs)

    monkeypatch.setattr(UsagePusher, "push_org", slow)
    jobs.push_usage(org.org_id, datetime.now(UTC))
    assert 0 < seen["ttl_ms"] <= 1000  # the configured second, renewed: not the old 120 s
    assert seen["taken"] is False, "another worker took the org while the job still ran"
