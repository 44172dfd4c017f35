"""The invoice mirror's two feeds against the Stripe emulator: the account-wide sweep (a page
per 100 invoices, the lines of a long invoice fetched whole) and the webhook inbox (an
`invoice.*` event's invoice, its lines marked cut short when Stripe sent only the first 10)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.reconciliation.inbox import record_event
from billing.stripe_gateway import StripeConfig, StripeGateway
from billing.stripe_gateway.webhooks import verify_webhook
from billing.usage.invoice_sweep import sweep_invoices
from models.invoice_mirror import StripeInvoiceMirror
from stripe_emulator import EmulatorConfig, EmulatorServer
from stripe_emulator.webhooks import sign

NOW = datetime(2026, 11, 1, 0, 10, tzinfo=UTC)
LINE_COUNT = 12  # more than the 10 an invoice object carries
SECRET = "whsec_mirror"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(frozen_time=int(NOW.timestamp()))) as server:
        yield server


def long_invoice(gateway: StripeGateway, name: str) -> str:
    customer = gateway.create_customer(metadata={"org_id": name}, idempotency_key=f"c:{name}")
    for n in range(LINE_COUNT):
        gateway.create_invoice_item(
            stripe_customer_id=customer.stripe_customer_id,
            amount=100 + n,
            currency="usd",
            description=f"item {n}",
            idempotency_key=f"ii:{name}:{n}",
        )
    invoice = gateway.create_invoice(
        stripe_customer_id=customer.stripe_customer_id,
        description="many lines",
        idempotency_key=f"inv:{name}",
    )
    assert invoice.stripe_invoice_id is not None
    return invoice.stripe_invoice_id


def test_the_sweep_lists_every_invoice_with_all_its_lines_a_page_per_hundred(
    emulator: EmulatorServer, engine: Engine
) -> None:
    gateway = StripeGateway(StripeConfig(api_key="sk_test_sweep", api_base=emulator.url))
    long_id = long_invoice(gateway, "long")
    for n in range(104):
        customer = gateway.create_customer(metadata={"n": str(n)}, idempotency_key=f"c{n}")
        gateway.create_invoice_item(
            stripe_customer_id=customer.stripe_customer_id,
            amount=500,
            currency="usd",
            description="one",
            idempotency_key=f"i{n}",
        )
        gateway.create_invoice(
            stripe_customer_id=customer.stripe_customer_id,
            description="one line",
            idempotency_key=f"n{n}",
        )
    emulator.state.reset(stats_only=True)

    outcome = sweep_invoices(engine, gateway, NOW - timedelta(days=1), NOW)

    routes = emulator.state.stats()["requests_by_route"]
    assert outcome.invoice_count == 105
    assert (outcome.page_requests, outcome.line_requests) == (2, 1)
    assert sum(routes.values()) == 3, routes  # two pages and one invoice's remaining lines
    with Session(engine) as session:
        row = session.get(StripeInvoiceMirror, long_id)
        assert row is not None
        assert row.lines_complete
        assert len(json.loads(row.lines_json)) == LINE_COUNT
        assert row.source == "sweep"


def test_an_invoice_event_is_mirrored_in_the_inbox_transaction(
    emulator: EmulatorServer, engine: Engine
) -> None:
    gateway = StripeGateway(StripeConfig(api_key="sk_test_sweep", api_base=emulator.url))
    invoice_id = long_invoice(gateway, "webhook")
    raw = httpx.get(
        f"{emulator.url}/v1/invoices/{invoice_id}",
        headers={"Authorization": "Bearer sk_test_sweep"},
    ).json()
    assert raw["lines"]["has_more"] is True  # Stripe's object carries the first 10 lines

    def deliver(event_id: str, status: str, created: datetime) -> None:
        body = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": "invoice.finalized" if status != "draft" else "invoice.created",
                "created": int(created.timestamp()),
                "livemode": False,
                "data": {"object": {**raw, "status": status}},
            }
        ).encode()
        signed = sign(body, SECRET, int(created.timestamp()))
        event = verify_webhook(body, signed, SECRET, now=created.timestamp())
        assert record_event(engine, event, created)

    deliver("evt_2", "open", NOW + timedelta(minutes=60))
    deliver("evt_1", "draft", NOW)  # delivered late: the mirror keeps the later state
    with Session(engine) as session:
        row = session.get(StripeInvoiceMirror, invoice_id)
        assert row is not None
        assert (row.status, row.source, row.lines_complete) == ("open", "webhook", False)
        assert len(json.loads(row.lines_json)) == 10
