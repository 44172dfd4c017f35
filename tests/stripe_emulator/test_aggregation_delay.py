"""Asynchronous aggregation: a meter event counts in summaries, drafts and finalization only once
`meter_aggregation_delay_seconds` real seconds have passed since the emulator received it.

No test waits for the delay: a delay of an hour keeps an event out, and the passage of real time
is modelled by moving the stored receipt stamp back (what the delay measures), or by setting the
delay back to 0 at run time through the control endpoint."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.stripe_emulator.conftest import DAY, FEB_1_2026, JAN_1_2026, Builders, make_client

HOUR = 3600.0


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(meter_aggregation_delay_seconds=HOUR)) as server:
        yield server


@pytest.fixture
def client(emulator: EmulatorServer) -> stripe.StripeClient:
    return make_client(emulator.url)


@pytest.fixture
def build(client: stripe.StripeClient) -> Builders:
    return Builders(client)


def _age_events(emulator: EmulatorServer, seconds: float) -> None:
    """As if `seconds` of real time had passed since every stored event was received."""
    with emulator.state.lock:
        for records in emulator.state.store.meter_events.values():
            for record in records:
                record.received_monotonic -= seconds


def _summary_total(client: stripe.StripeClient, meter_id: str, customer: str) -> Decimal:
    summaries = client.v1.billing.meters.event_summaries.list(
        meter_id, {"customer": customer, "start_time": JAN_1_2026, "end_time": FEB_1_2026}
    )
    return sum((Decimal(str(s.aggregated_value)) for s in summaries.data), Decimal(0))


def _post_config(emulator: EmulatorServer, changes: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{emulator.url}/_emulator/config",
        data=json.dumps(changes).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def test_summaries_reflect_an_event_only_after_the_delay(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    meter_id = build.meter("lag_messages")
    _, customer = build.clock_customer()
    build.usage("lag_messages", customer, 42, JAN_1_2026 + 60)
    assert _summary_total(client, meter_id, customer) == 0
    assert emulator.state.meter_total(customer, "lag_messages", 0, FEB_1_2026) == 0
    _age_events(emulator, HOUR - 60)
    assert _summary_total(client, meter_id, customer) == 0  # still a minute to go
    _age_events(emulator, 60)
    assert _summary_total(client, meter_id, customer) == 42
    build.usage("lag_messages", customer, 8, JAN_1_2026 + 120)  # a new event lags on its own
    assert _summary_total(client, meter_id, customer) == 42


def test_the_delay_is_set_at_run_time_through_the_control_endpoint(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    meter_id = build.meter("lag_config")
    _, customer = build.clock_customer()
    build.usage("lag_config", customer, 5, JAN_1_2026 + 60)
    assert _summary_total(client, meter_id, customer) == 0
    body = _post_config(emulator, {"meter_aggregation_delay_seconds": 0})
    assert body["meter_aggregation_delay_seconds"] == 0
    assert _summary_total(client, meter_id, customer) == 5
    with pytest.raises(urllib.error.HTTPError) as info:
        _post_config(emulator, {"meter_aggregation_delay_seconds": -1})
    assert info.value.code == 400
    info.value.close()


def test_draft_lines_and_finalization_count_only_aggregated_events(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    meter_id = build.meter("lag_runner")
    price = build.metered_price(meter_id, [{"up_to": "inf", "unit_amount": 2}])
    clock, customer = build.clock_customer()
    client.v1.subscriptions.create({"customer": customer, "items": [{"price": price}]})
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 2 * DAY})
    build.usage("lag_runner", customer, 100, JAN_1_2026 + DAY)
    _age_events(emulator, HOUR)  # aggregated
    build.usage("lag_runner", customer, 50, JAN_1_2026 + DAY + 60)  # not yet
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 600})
    draft = next(
        i
        for i in client.v1.invoices.list({"customer": customer}).data
        if i.billing_reason == "subscription_cycle"
    )
    assert draft.status == "draft"
    assert [(ln.quantity_decimal, ln.amount) for ln in draft.lines.data] == [(Decimal(100), 200)]
    preview = client.v1.invoices.create_preview({"customer": customer})
    assert all(ln.amount == 0 for ln in preview.lines.data)  # February: nothing yet
    _age_events(emulator, HOUR)  # the second event is aggregated now
    draft = client.v1.invoices.retrieve(draft.id)
    assert [(ln.quantity_decimal, ln.amount) for ln in draft.lines.data] == [(Decimal(150), 300)]
    build.usage("lag_runner", customer, 7, JAN_1_2026 + DAY + 120)  # in the grace period, late
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 2 * 3600})
    final = client.v1.invoices.retrieve(draft.id)
    assert final.status in ("open", "paid")
    # received too close to finalization to be aggregated: not on the invoice
    assert [(ln.quantity_decimal, ln.amount) for ln in final.lines.data] == [(Decimal(150), 300)]
