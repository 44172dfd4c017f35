"""Fixtures: one emulator per test module, a real stripe-python client, and small builders."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer

JAN_1_2026 = 1_767_225_600  # 2026-01-01T00:00:00Z
FEB_1_2026 = 1_769_904_000  # 2026-02-01T00:00:00Z
DAY = 86_400


def make_client(url: str, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_emulator",
        base_addresses={"api": url, "meter_events": url},
        max_network_retries=retries,
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture(scope="module")
def client(emulator: EmulatorServer) -> stripe.StripeClient:
    return make_client(emulator.url)


class Builders:
    """Creates the objects most tests need, through the API."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    def clock_customer(self, frozen_time: int = JAN_1_2026) -> tuple[str, str]:
        clock = self.client.v1.test_helpers.test_clocks.create({"frozen_time": frozen_time})
        customer = self.client.v1.customers.create(
            {"test_clock": clock.id, "email": "org@example.com"}
        )
        return clock.id, customer.id

    def meter(self, event_name: str, **extra: Any) -> str:
        params: dict[str, Any] = {
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
            **extra,
        }
        return self.client.v1.billing.meters.create(params).id  # type: ignore[arg-type]

    def metered_price(self, meter_id: str, tiers: list[dict[str, Any]]) -> str:
        product = self.client.v1.products.create({"name": f"Usage {meter_id}"})
        price = self.client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
                "tiers": tiers,  # type: ignore[typeddict-item]
            }
        )
        return price.id

    def seat_price(self, unit_amount: int, interval: str = "month") -> str:
        product = self.client.v1.products.create({"name": "Seats"})
        price = self.client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "unit_amount": unit_amount,
                "recurring": {"interval": interval},  # type: ignore[typeddict-item]
            }
        )
        return price.id

    def usage(
        self,
        event_name: str,
        customer_id: str,
        value: int,
        timestamp: int,
        identifier: str | None = None,
    ) -> None:
        params: dict[str, Any] = {
            "event_name": event_name,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "timestamp": timestamp,
        }
        if identifier:
            params["identifier"] = identifier
        self.client.v1.billing.meter_events.create(params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def build(client: stripe.StripeClient) -> Builders:
    return Builders(client)


class Receiver:
    """A tiny webhook receiver recording raw bodies and signature headers."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((body, self.headers.get("Stripe-Signature", "")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def types_for(self, object_id: str) -> list[str]:
        out = []
        for body, _ in self.received:
            event = json.loads(body)
            if event["data"]["object"].get("id") == object_id:
                out.append(event["type"])
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    recv.thread.start()
    yield recv
    recv.server.shutdown()
    recv.server.server_close()
