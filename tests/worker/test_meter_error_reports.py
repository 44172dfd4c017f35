"""Stripe's asynchronous meter error reports, end to end on the emulator: a usage push whose
meter event Stripe drops (its customer unknown to Stripe at validation) → a signed thin event
delivered to `/stripe/thin-events` → the report fetched, stored once and tied to the push → the
reconciliation of the draft that lacks that usage names the rejection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.reconciliation.match import Status
from billing.usage.meter_errors import MeterErrorIntake, push_rejections
from billing.usage.push import UsagePusher
from models.meter_errors import MeterErrorReport
from models.push_records import UsagePush
from models.reconciliation import Reconciliation
from models.stripe_records import StripeCustomerRecord
from stripe_emulator import EmulatorConfig, EmulatorServer
from stripe_emulator.webhooks import sign
from tests.billing.reconciliation.test_reconciler_emulator import (
    FEB_1,
    JAN_20,
    Org,
    World,
    build_world,
)
from tests.worker.web_server import serving
from worker.web.app import create_app
from worker.web.services import InlineDispatcher, WebServices

ERROR_REPORT = "v1.billing.meter.error_report_triggered"


@dataclass
class Site:
    world: World
    intake: MeterErrorIntake
    url: str
    http: httpx.Client


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    with EmulatorServer(EmulatorConfig(webhook_retry_base_seconds=0.01)) as emulator:
        world = build_world(emulator, engine)
        intake = MeterErrorIntake(engine, world.gateway, secret="")
        services = WebServices(
            engine=engine,
            webhook_secret="",
            support_tokens=(),
            admin_tokens=(),
            dispatcher=InlineDispatcher({}),
            meter_errors=intake,
        )
        with serving(create_app(services=services)) as url, httpx.Client(base_url=url) as http:
            destination = world.client.v2.core.event_destinations.create(
                {
                    "name": "meter errors",
                    "type": "webhook_endpoint",
                    "event_payload": "thin",
                    "enabled_events": [ERROR_REPORT, "v1.billing.meter.no_meter_found"],
                    "webhook_endpoint": {"url": f"{url}/stripe/thin-events"},
                    "include": ["webhook_endpoint.signing_secret"],
                }
            )
            intake.secret = str(destination.webhook_endpoint.signing_secret)
            yield Site(world, intake, url, http)


def _push_rejected(site: Site, org_id: str) -> tuple[Org, UsagePush]:
    """The org's January usage pushed for a customer Stripe does not know (our record of the
    org's customer points elsewhere for the push): the stream accepts the event, then drops it
    at validation. Stripe's own state is left alone, so its billing cycles run as usual."""
    org = site.world.org(org_id)
    org.advance(JAN_20)
    _point_customer(site.world.engine, org_id, "cus_unknown_to_stripe")
    try:
        UsagePusher(site.world.engine, site.world.gateway).push_org(org_id, JAN_20)
    finally:
        _point_customer(site.world.engine, org_id, org.stripe_customer_id)
    with Session(site.world.engine) as session:
        pushes = list(session.exec(select(UsagePush).where(UsagePush.org_id == org_id)))
    # every meter's total (zero for the unused ones) was accepted: no push failed
    assert {p.status for p in pushes} == {"done"}
    [push] = [p for p in pushes if p.meter == "copilot_messages"]
    return org, push


def _point_customer(engine: Engine, org_id: str, stripe_customer_id: str) -> None:
    with Session(engine) as session:
        record = session.get(StripeCustomerRecord, org_id)
        assert record is not None
        record.stripe_customer_id = stripe_customer_id
        session.add(record)
        session.commit()


def _reports(engine: Engine) -> list[MeterErrorReport]:
    with Session(engine) as session:
        return list(session.exec(select(MeterErrorReport)))


def _post(site: Site, body: bytes, signature: str) -> httpx.Response:
    return site.http.post(
        "/stripe/thin-events",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def test_a_rejected_push_is_stored_once_linked_and_named_by_the_reconciliation(
    site: Site,
) -> None:
    engine = site.world.engine
    customer_org, push = _push_rejected(site, "org_rejected")
    assert site.world.emulator.state.wait_for_webhooks(10)
    deliveries = site.world.emulator.state.webhook_deliveries()
    # one report per meter: the three meters' events were all dropped
    assert [(d.event_type, d.delivered, d.status) for d in deliveries] == [
        (ERROR_REPORT, True, 200)
    ] * 3
    reports = _reports(engine)
    assert len(reports) == 3
    assert all(r.usage_push_id is not None for r in reports)
    [report] = [r for r in reports if r.usage_push_id == push.id]
    [delivery] = [d for d in deliveries if d.event_id == report.stripe_event_id]
    assert report.code == "meter_event_customer_not_found"
    assert report.identifier == push.identifier
    assert report.usage_push_id == push.id
    assert (report.org_id, report.meter) == ("org_rejected", "copilot_messages")
    assert report.period_start_at == push.period_start_at
    assert (report.type_error_count, report.event_error_count) == (1, 1)
    assert report.validation_start_at is not None
    assert report.validation_end_at is not None
    with Session(engine) as session:
        assert push.id is not None
        assert push_rejections(session, [push.id])[push.id].id == report.id

    # The same event delivered again (Stripe retries): acknowledged, stored once.
    again = _post(site, delivery.payload, sign(delivery.payload, site.intake.secret, _now()))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert len(_reports(engine)) == 3

    customer_org.advance(FEB_1 + timedelta(seconds=10))
    draft = customer_org.invoice("subscription_cycle", FEB_1)
    waiting = customer_org.reconcile(draft, FEB_1 + timedelta(minutes=1), hold=True)
    assert waiting.status is Status.AWAITING_USAGE
    note = _note(engine, waiting.reconciliation_id)
    assert "we sent 800, Stripe shows 0" in note
    assert f"Stripe rejected the copilot_messages report {push.identifier}" in note
    assert "meter_event_customer_not_found" in note

    judged = customer_org.reconcile(draft, FEB_1 + timedelta(minutes=20), hold=True)
    assert (judged.status, judged.held) == (Status.MISMATCHED, True)
    assert f"Stripe rejected the copilot_messages report {push.identifier}" in _note(
        engine, judged.reconciliation_id
    )


def test_a_bad_signature_is_a_400_and_nothing_is_stored(site: Site) -> None:
    body = json.dumps(
        {
            "id": "evt_test_forged",
            "object": "v2.core.event",
            "type": ERROR_REPORT,
            "created": "2026-01-20T00:00:00.000Z",
            "livemode": False,
            "context": None,
            "reason": None,
            "related_object": {"id": "mtr_x", "type": "billing.meter", "url": "/v1/x"},
        }
    ).encode()
    forged = _post(site, body, sign(body, "whsec_not_the_secret", _now()))
    assert forged.status_code == 400
    assert "invalid signature" in forged.json()["error"]
    unsigned = _post(site, body, "")
    assert unsigned.status_code == 400
    assert _reports(site.world.engine) == []


def _now() -> int:
    """The signature's stamp: Stripe signs with its wall clock."""
    return int(time.time())


def _note(engine: Engine, reconciliation_id: int) -> str:
    with Session(engine) as session:
        row = session.get(Reconciliation, reconciliation_id)
        assert row is not None
        assert row.note is not None
        return row.note
