"""`/metrics` scraped from a real server, `/status` and `/api/status`, `billing status --json`,
and the Celery signals that count tasks and record the scheduled ones' runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.alerts.close import close_chunk_done, close_started
from billing.alerts.triggers import note_reconciliation
from models.alerts import ScheduledRun
from models.db import make_engine, migrate, unit_of_work
from models.ledger import Org, SeatChangeRecord, UsageEvent
from models.outbox import OutboxMessage
from models.push_records import UsagePeriod
from models.reconciliation import Reconciliation, WebhookEvent
from models.stripe_records import StripeSubscriptionItemRecord
from tests.conftest import REDIS_TEST_URL
from tests.worker.test_web_login import log_in
from tests.worker.web_server import serving
from worker import metrics
from worker.cli import main
from worker.settings import get_settings
from worker.tasks.alerts import check_close
from worker.web.app import create_app
from worker.web.services import InlineDispatcher, WebServices
from worker.web.sessions import MemorySessionStore

NOW = datetime(2027, 5, 1, 2, 0, tzinfo=UTC)
ADMIN, SUPPORT = "admin-token-9", "support-token-9"


def seed(engine: Engine) -> None:
    """One of everything the status shows, at known ages."""
    with unit_of_work(engine) as session:
        session.add(
            Org(
                id="acme",
                book="devtools",
                plan="team",
                interval="year",
                term_start_at=NOW - timedelta(days=60),
                created_at=NOW,
                updated_at=NOW,
            )
        )
        session.flush()
        # April's copilot total went out at 00:05; an event that arrived at 01:00 is not pushed.
        session.add(
            UsagePeriod(
                org_id="acme",
                meter="copilot_messages",
                period_start_at=datetime(2027, 5, 1, tzinfo=UTC),
                period_end_at=datetime(2027, 6, 1, tzinfo=UTC),
                ledger_quantity=Decimal(3),
                sent_quantity=Decimal(3),
                sent_at=NOW - timedelta(hours=1, minutes=55),
                updated_at=NOW,
            )
        )
        session.add(
            UsageEvent(
                event_id="e-1",
                org_id="acme",
                meter="copilot_messages",
                quantity=Decimal(3),
                at=NOW - timedelta(hours=2),
                received_at=NOW - timedelta(hours=2),
            )
        )
        session.add(
            UsageEvent(
                event_id="e-2",
                org_id="acme",
                meter="copilot_messages",
                quantity=Decimal(1),
                at=NOW - timedelta(hours=1),
                received_at=NOW - timedelta(hours=1),
            )
        )
        # 10 seats in Stripe, 12 in the ledger: one pending seat window.
        session.add(
            StripeSubscriptionItemRecord(
                org_id="acme",
                component="seats",
                stripe_subscription_id="sub_1",
                stripe_subscription_item_id="si_1",
                stripe_price_id="price_1",
                interval="year",
                quantity=10,
                updated_at=NOW,
            )
        )
        session.add(SeatChangeRecord(org_id="acme", seat_count=12, at=NOW, recorded_at=NOW))
        session.add(
            WebhookEvent(
                stripe_event_id="evt_1",
                type="invoice.created",
                payload_json="{}",
                received_at=NOW - timedelta(minutes=20),
            )
        )
        session.add(
            OutboxMessage(
                task_name="billing.usage.push_org",
                task_id="t1",
                args_json="[]",
                kwargs_json="{}",
                created_at=NOW - timedelta(seconds=30),
            )
        )
        held = Reconciliation(
            stripe_invoice_id="in_9",
            stripe_customer_id="cus_1",
            org_id="acme",
            invoice_status="draft",
            currency="usd",
            status="mismatched",
            expected_total_amount=1000,
            stripe_total_amount=1250,
            trigger="invoice.created",
            held=True,
            created_at=NOW - timedelta(minutes=90),
        )
        session.add(held)
        session.add(
            Reconciliation(
                stripe_invoice_id="in_8",
                stripe_customer_id="cus_1",
                org_id="acme",
                invoice_status="paid",
                currency="usd",
                status="matched",
                expected_total_amount=5,
                stripe_total_amount=5,
                trigger="sweep",
                created_at=NOW - timedelta(days=1),
            )
        )
        session.flush()
        note_reconciliation(session, held)
        session.add(
            ScheduledRun(
                task_name="billing.usage.close_due",
                last_started_at=NOW - timedelta(minutes=55),
                last_finished_at=NOW - timedelta(minutes=54),
                last_outcome="success",
                last_duration_ms=60_000,
                run_count=2,
            )
        )
    close_started(engine, "2027-04", 2, datetime(2027, 5, 1, 0, 2, tzinfo=UTC))
    close_chunk_done(engine, "2027-04", ["acme", "zeta"], 0, datetime(2027, 5, 1, 0, 9, tzinfo=UTC))


@pytest.fixture
def counters() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    for name in (
        metrics.TASKS,
        metrics.TASK_SECONDS,
        metrics.TASK_BUCKETS,
        metrics.STRIPE_REQUESTS,
    ):
        client.delete(metrics.KEY_PREFIX + name)
    metrics.COUNTERS._client = client  # this process's counters go to the tests' Redis
    yield client
    metrics.COUNTERS._client = None


@pytest.fixture
def site(engine: Engine, counters: redis.Redis) -> Iterator[str]:
    seed(engine)
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_x",
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=InlineDispatcher({}),
        sessions=MemorySessionStore(),
        clock=lambda: NOW,
        metrics_redis=counters,
        stripe_requests_per_second=25,
    )
    with serving(create_app(services=services)) as url:
        yield url


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_expose_state_tasks_and_stripe_requests(site: str) -> None:
    for status in (200, 200, 429):
        metrics.stripe_request_observed(
            "post", "https://api.stripe.com/v1/invoices/in_1AbC234/pay", status
        )
    metrics.stripe_request_observed(
        "get", "http://127.0.0.1:1/v1/billing/meters/mtr_9xY12345/event_summaries", 200
    )
    metrics.task_finished("billing.usage.push_chunk", "success", 0.7)
    metrics.task_finished("billing.usage.push_chunk", "failure", 20.0)

    m = scrape(site)
    assert m["billing_usage_push_lag_seconds"][(("meter", "copilot_messages"),)] == 3600
    assert m["billing_usage_push_lag_seconds"][(("meter", "runner_minutes"),)] == 0
    assert m["billing_pending_seat_windows"][()] == 1
    assert m["billing_webhook_inbox_unhandled"][()] == 1
    assert m["billing_webhook_inbox_stuck"][()] == 1
    assert m["billing_webhook_inbox_oldest_age_seconds"][()] == 1200
    assert m["billing_outbox_pending"][()] == 1
    assert m["billing_outbox_oldest_age_seconds"][()] == 30
    assert m["billing_reconciliations"] == {
        (("status", "matched"),): 1,
        (("status", "mismatched"),): 1,
    }
    assert m["billing_held_drafts"][()] == 1
    assert m["billing_held_draft_oldest_age_seconds"][()] == 5400
    assert m["billing_held_drafts_past_grace"][()] == 1
    assert m["billing_alerts_pending"][()] == 1
    assert m["billing_last_close_duration_seconds"][()] == 420
    assert m["billing_last_close_unfinished_orgs"][()] == 0
    assert (
        m["billing_scheduled_task_last_run_age_seconds"][(("task", "billing.usage.close_due"),)]
        == 54 * 60
    )

    pay = (("endpoint", "/v1/invoices/{id}/pay"), ("method", "POST"))
    assert m["billing_stripe_requests_total"][(*pay[:1], pay[1], ("status", "200"))] == 2
    assert m["billing_stripe_requests_total"][(*pay[:1], pay[1], ("status", "429"))] == 1
    summaries = (
        ("endpoint", "/v1/billing/meters/{id}/event_summaries"),
        ("method", "GET"),
        ("status", "200"),
    )
    assert m["billing_stripe_requests_total"][summaries] == 1
    assert m["billing_stripe_rate_limited_total"] == {pay: 1}
    assert m["billing_stripe_budget_rate"][()] == 25
    assert m["billing_stripe_budget_booked_seconds"][()] == 0

    task = (("task", "billing.usage.push_chunk"),)
    assert m["billing_tasks_total"][(("state", "success"), *task)] == 1
    assert m["billing_tasks_total"][(("state", "failure"), *task)] == 1
    assert m["billing_task_duration_seconds_count"][task] == 2
    assert m["billing_task_duration_seconds_sum"][task] == pytest.approx(20.7)
    assert m["billing_task_duration_seconds_bucket"][(("le", "1.0"), *task)] == 1
    assert m["billing_task_duration_seconds_bucket"][(("le", "60.0"), *task)] == 2
    assert m["billing_metrics_redis_up"][()] == 1


def test_status_needs_an_admin(site: str) -> None:
    assert httpx.get(f"{site}/api/status").status_code == 401
    support = httpx.get(f"{site}/api/status", headers={"Authorization": f"Bearer {SUPPORT}"})
    assert support.status_code == 403
    data = httpx.get(f"{site}/api/status", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [h["stripe_invoice_id"] for h in data["held_drafts"]] == ["in_9"]
    assert data["held_drafts"][0]["difference_amount"] == 250
    assert data["last_close"]["duration_seconds"] == 420
    close_due = next(r for r in data["schedule"] if r["entry"] == "usage-close-due")
    assert (close_due["last_outcome"], close_due["runs"]) == ("success", 2)
    assert next(r for r in data["schedule"] if r["entry"] == "month-close")["runs"] == 0
    with httpx.Client(base_url=site, headers={"Origin": site}) as client:
        assert client.get("/status").status_code == 401  # the login form
        assert log_in(client, SUPPORT).status_code == 303
        assert client.get("/status").status_code == 403
    with httpx.Client(base_url=site, headers={"Origin": site}) as client:
        assert log_in(client, ADMIN).status_code == 303
        page = client.get("/status")
        assert page.status_code == 200
        assert 'href="/reconciliations/' in page.text
        assert "in_9" in page.text
        assert "billing.usage.close_due" in page.text


def test_billing_status_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'status.db'}"
    migrate(url)
    engine = make_engine(url)
    seed(engine)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert main(["status", "--json"]) == 0
    finally:
        get_settings.cache_clear()
        engine.dispose()
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["backlogs"]["webhook_unhandled"] == 1
    assert data["backlogs"]["alerts_pending"] == 1
    assert data["last_close"]["period"] == "2027-04"
    assert {r["entry"] for r in data["schedule"]} >= {"month-close", "alerts-deliver"}


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://api.stripe.com/v1/customers/cus_Q8x1ab", "/v1/customers/{id}"),
        ("https://api.stripe.com/v1/billing/meter_events", "/v1/billing/meter_events"),
        ("https://api.stripe.com/v1/subscription_items/si_ABCdef12", "/v1/subscription_items/{id}"),
        (
            "https://meter-events.stripe.com/v2/billing/meter_event_stream",
            "/v2/billing/meter_event_stream",
        ),
        ("https://api.stripe.com/v1/invoices?customer=cus_1", "/v1/invoices"),
    ],
)
def test_stripe_endpoints_are_named_without_ids(url: str, endpoint: str) -> None:
    assert metrics.endpoint_of(url) == endpoint


def test_celery_signals_count_a_task_and_record_a_scheduled_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counters: redis.Redis
) -> None:
    url = f"sqlite:///{tmp_path / 'signals.db'}"
    migrate(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        check_close.apply(kwargs={"now": "2027-05-01T00:45:00Z"}).get()
    finally:
        get_settings.cache_clear()
    engine = make_engine(url)
    with Session(engine) as session:
        run = session.get(ScheduledRun, "billing.alerts.check_close")
        assert run is not None
        assert (run.run_count, run.last_outcome) == (1, "success")
    engine.dispose()
    field = metrics.field_of("billing.alerts.check_close", "success")
    assert float(counters.hget(metrics.KEY_PREFIX + metrics.TASKS, field) or 0) == 1
