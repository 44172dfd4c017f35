"""Stripe's rate limits in the emulator: global (live 100/s, sandbox 25/s), 25/s per endpoint,
1,000/s meter events (outside the global limit in live mode), and the 429 they answer.

The limiter is driven with an explicit clock for exact counts; the HTTP tests fire real bursts
through stripe-python and bound what got through by the elapsed time, so a slow machine cannot
make them fail."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from stripe_emulator.limits import METER_EVENTS, PROFILES, Limiter, profile
from tests.stripe_emulator.conftest import make_client

T0 = 1000.0


def _burst(limiter: Limiter, mode: str, endpoints: list[str], count: int) -> list[str | None]:
    """``count`` requests at one instant, round-robin over ``endpoints``."""
    limits = profile(mode)
    return [limiter.admit(endpoints[i % len(endpoints)], T0, limits) for i in range(count)]


def test_live_global_limit_is_100_per_second_across_endpoints() -> None:
    endpoints = [f"GET /v1/things_{n}" for n in range(8)]  # 8 × 25 = 200 endpoint tokens
    verdicts = _burst(Limiter(), "live", endpoints, 150)
    assert verdicts.count(None) == 100
    assert set(verdicts[100:]) == {"global-rate"}


def test_sandbox_global_limit_is_25_per_second() -> None:
    endpoints = [f"GET /v1/things_{n}" for n in range(8)]
    verdicts = _burst(Limiter(), "sandbox", endpoints, 60)
    assert verdicts.count(None) == 25
    assert set(verdicts[25:]) == {"global-rate"}


def test_each_endpoint_is_limited_to_25_per_second_by_default() -> None:
    limiter = Limiter()
    verdicts = _burst(limiter, "live", ["GET /v1/customers"], 40)
    assert verdicts.count(None) == 25
    assert set(verdicts[25:]) == {"endpoint-rate"}
    # Another endpoint still has its own 25, and the global 100 has room for it.
    assert _burst(limiter, "live", ["POST /v1/customers"], 25) == [None] * 25


def test_the_endpoint_is_the_route_template_not_the_object() -> None:
    limiter = Limiter()
    # Reads of different ids share "GET /v1/customers/{id}" (the server keys by template).
    assert _burst(limiter, "live", ["GET /v1/customers/{id}"], 26)[-1] == "endpoint-rate"


def test_live_meter_events_take_1000_per_second_outside_the_global_limit() -> None:
    limiter = Limiter()
    verdicts = _burst(limiter, "live", [METER_EVENTS], 1100)
    assert verdicts.count(None) == 1000
    assert set(verdicts[1000:]) == {"endpoint-rate"}
    # The global 100 is untouched by them.
    others = _burst(limiter, "live", [f"GET /v1/things_{n}" for n in range(4)], 100)
    assert others == [None] * 100


def test_sandbox_meter_events_also_count_against_the_global_limit() -> None:
    verdicts = _burst(Limiter(), "sandbox", [METER_EVENTS], 100)
    assert verdicts.count(None) == 25
    assert set(verdicts[25:]) == {"global-rate"}


def test_buckets_refill_at_their_rate_and_refusals_take_no_token() -> None:
    limiter, limits = Limiter(), PROFILES["live"]
    for _ in range(25):
        assert limiter.admit("GET /v1/invoices", T0, limits) is None
    for _ in range(10):  # refused requests do not push the refill further out
        assert limiter.admit("GET /v1/invoices", T0, limits) == "endpoint-rate"
    assert limiter.admit("GET /v1/invoices", T0 + 0.041, limits) is None  # 25/s: one per 40 ms
    assert limiter.admit("GET /v1/invoices", T0 + 0.041, limits) == "endpoint-rate"


def test_none_limits_nothing_and_the_global_override_still_applies() -> None:
    limiter = Limiter()
    assert _burst(limiter, "none", ["GET /v1/customers"], 5000) == [None] * 5000
    verdicts = [
        limiter.admit("GET /v1/x", T0, PROFILES["none"], global_override=3.0) for _ in range(5)
    ]
    assert verdicts == [None, None, None, "global-rate", "global-rate"]


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="limits must be one of live, sandbox, none"):
        profile("production")
    with pytest.raises(ValueError, match="limits must be one of"):
        EmulatorConfig(limits="fast")  # type: ignore[arg-type]
    config = EmulatorConfig()
    with pytest.raises(ValueError, match="got 'fast'"):
        config.update(limits="fast")
    assert config.limits == "none"


# ----- over HTTP, through stripe-python ----------------------------------------------------------


@pytest.fixture
def live() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(limits="live")) as server:
        yield server


def _stats(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _fire(call: object, count: int) -> tuple[int, list[stripe.RateLimitError], float]:
    ok, limited, started = 0, [], time.monotonic()
    for _ in range(count):
        try:
            call()  # type: ignore[operator]
            ok += 1
        except stripe.RateLimitError as exc:
            limited.append(exc)
    return ok, limited, time.monotonic() - started


def test_a_burst_on_one_endpoint_gets_stripes_429(live: EmulatorServer) -> None:
    client = make_client(live.url)
    ok, limited, elapsed = _fire(client.v1.customers.list, 60)
    # One second of tokens at start, then 25/s: nothing more can have got through.
    assert ok <= 25 + 25 * elapsed + 1
    assert limited, "a burst of 60 on one endpoint must be limited"
    error = limited[0]
    assert error.http_status == 429
    body = error.json_body["error"]  # type: ignore[index]
    assert body["type"] == "invalid_request_error"
    assert body["code"] == "rate_limit"
    assert "rate limit" in body["message"].lower()
    assert error.headers is not None
    assert error.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert "Stripe-Should-Retry" not in error.headers
    stats = _stats(live.url)
    assert stats["limits"] == "live"
    assert stats["rate_limited_by_reason"] == {"endpoint-rate": len(limited)}
    assert stats["rate_limited_by_route"] == {"GET /v1/customers": len(limited)}
    assert stats["responses_by_status"]["429"] == len(limited)


def test_sandbox_limits_the_account_across_endpoints_over_http() -> None:
    with EmulatorServer(EmulatorConfig(limits="sandbox")) as server:
        client = make_client(server.url)
        calls = [client.v1.customers.list, client.v1.products.list, client.v1.prices.list]
        ok, limited, started = 0, [], time.monotonic()
        for n in range(75):  # 25 per endpoint: only the global 25/s can refuse these
            try:
                calls[n % 3]()
                ok += 1
            except stripe.RateLimitError as exc:
                limited.append(exc)
        elapsed = time.monotonic() - started
        assert ok <= 25 + 25 * elapsed + 1
        assert limited
        reasons = {(e.headers or {}).get("Stripe-Rate-Limited-Reason") for e in limited}
        assert reasons == {"global-rate"}
        assert _stats(server.url)["rate_limited_by_reason"] == {"global-rate": len(limited)}


def test_live_meter_events_are_not_held_to_the_endpoint_default() -> None:
    # Buckets hold 40 ms of requests: 1 for a default endpoint, 40 for meter events.
    config = EmulatorConfig(limits="live", rate_limit_burst_seconds=0.04)
    with EmulatorServer(config) as server:
        client = make_client(server.url)
        customer = client.v1.customers.create({"email": "org@example.com"}).id
        client.v1.billing.meters.create(
            {
                "display_name": "Messages",
                "event_name": "messages",
                "default_aggregation": {"formula": "sum"},
            }
        )

        def push() -> None:
            client.v1.billing.meter_events.create(
                {
                    "event_name": "messages",
                    "payload": {"stripe_customer_id": customer, "value": "1"},
                    "timestamp": int(time.time()) - 60,
                }
            )

        # 30 back to back never empty a 40-token bucket refilled at 1,000/s...
        ok, limited, _ = _fire(push, 30)
        assert (ok, limited) == (30, [])
        # ...while the same burst on a default endpoint gets 1 + 25/s.
        ok, limited, elapsed = _fire(client.v1.customers.list, 30)
        assert ok <= 1 + 25 * elapsed + 1
        assert limited
        assert _stats(server.url)["requests_by_route"][METER_EVENTS] == 30


def test_the_mode_is_set_and_checked_through_the_control_endpoint(live: EmulatorServer) -> None:
    def post(body: dict) -> dict:  # type: ignore[type-arg]
        request = urllib.request.Request(
            f"{live.url}/_emulator/config",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    assert post({"limits": "sandbox"})["limits"] == "sandbox"
    with pytest.raises(urllib.error.HTTPError) as refused:
        post({"limits": "unlimited"})
    assert refused.value.code == 400
    assert "limits must be one of live, sandbox, none" in refused.value.read().decode()
    assert live.state.config.limits == "sandbox"
