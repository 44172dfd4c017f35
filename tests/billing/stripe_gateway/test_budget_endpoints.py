"""The per-endpoint request budget on the real Redis: each request takes a slot of its endpoint
(25/s by default, meter events 1,000/s) and of the global budget, endpoints do not queue behind
each other, live-mode meter events bypass the global budget, and workers pacing themselves this
way get no 429 from an emulator that enforces Stripe's limits."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import uuid

import pytest
import redis
import stripe

from billing.stripe_gateway.budget import (
    METER_EVENTS,
    EndpointLimits,
    LocalRequestBudget,
    RedisRequestBudget,
    endpoint_of,
)
from billing.stripe_gateway.http import BudgetedRequestsClient
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.redis


def _budget(rate: float = 1000.0, **kwargs: object) -> tuple[RedisRequestBudget, list[float]]:
    slept: list[float] = []
    budget = RedisRequestBudget(
        redis.Redis.from_url(REDIS_TEST_URL),
        rate=rate,
        key=f"test:budget:{uuid.uuid4().hex}",
        sleep=slept.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return budget, slept


@pytest.mark.parametrize(
    ("method", "url", "endpoint"),
    [
        ("get", "https://api.stripe.com/v1/customers", "GET /v1/customers"),
        (
            "get",
            "https://api.stripe.com/v1/customers/cus_NffrFeUfNV2Hib?expand[]=x",
            "GET /v1/customers/{id}",
        ),
        (
            "post",
            "http://127.0.0.1:1/v1/invoices/create_preview",
            "POST /v1/invoices/create_preview",
        ),
        (
            "post",
            "http://127.0.0.1:1/v1/test_helpers/test_clocks/clock_9f2a1c/advance",
            "POST /v1/test_helpers/test_clocks/{id}/advance",
        ),
        (
            "get",
            "https://api.stripe.com/v1/billing/meters/mtr_61Q8/event_summaries",
            "GET /v1/billing/meters/{id}/event_summaries",
        ),
        ("post", "https://api.stripe.com/v1/billing/meter_events", METER_EVENTS),
    ],
)
def test_endpoint_of_names_the_operation_not_the_object(
    method: str, url: str, endpoint: str
) -> None:
    assert endpoint_of(method, url) == endpoint


def test_requests_to_one_endpoint_are_spaced_by_its_rate() -> None:
    budget, slept = _budget(rate=1000.0)  # the global budget is not what limits here
    waits = [budget.reserve("GET /v1/invoices") for _ in range(4)]
    assert waits[0] == pytest.approx(0.0, abs=0.01)
    # 25/s by default: one slot every 40 ms.
    assert waits[3] == pytest.approx(0.12, abs=0.01)
    assert slept == []  # reserve never sleeps


def test_acquire_takes_the_endpoint_slot_then_the_global_one() -> None:
    budget, slept = _budget(rate=1000.0)
    for _ in range(3):
        budget.acquire("GET /v1/invoices")
    client = budget.client
    assert client.get(budget.endpoint_key("GET /v1/invoices")) is not None
    assert client.get(budget.key) is not None
    # The two later requests waited for their endpoint slots (40 and 80 ms) and a global one.
    assert max(slept) == pytest.approx(0.08, abs=0.01)


def test_a_busy_endpoint_does_not_hold_up_another() -> None:
    budget, _ = _budget(rate=1000.0, endpoints=EndpointLimits(default_rate=10.0))
    for _ in range(5):
        budget.reserve("GET /v1/invoices")  # booked 0.5 s ahead
    assert budget.reserve("GET /v1/customers") == pytest.approx(0.0, abs=0.01)


def test_meter_events_have_their_own_1000_per_second() -> None:
    budget, _ = _budget(rate=1000.0)
    waits = [budget.reserve(METER_EVENTS) for _ in range(11)]
    # Paced 1 ms apart (at most 10 ms ahead, less as time passes on a busy machine); at the
    # default 25/s the eleventh would wait 400 ms.
    assert max(waits) <= 0.013


def test_live_meter_events_bypass_the_global_budget_and_the_default_does_not() -> None:
    live, _ = _budget(endpoints=EndpointLimits.live())
    live.acquire(METER_EVENTS)
    assert live.client.get(live.key) is None
    cautious, _ = _budget()
    cautious.acquire(METER_EVENTS)
    assert cautious.client.get(cautious.key) is not None


def _reserve_endpoint(url: str, key: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    budget = RedisRequestBudget(
        redis.Redis.from_url(url),
        rate=1000.0,
        key=key,
        max_wait_seconds=3600,
        endpoints=EndpointLimits(default_rate=50.0),
    )
    for _ in range(count):
        out.put(budget.reserve_slot("GET /v1/invoices")[1])


def test_endpoint_slots_from_several_processes_never_exceed_its_rate() -> None:
    key = f"test:budget:{uuid.uuid4().hex}"
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_reserve_endpoint, args=(REDIS_TEST_URL, key, 15, queue))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    slots = sorted(queue.get(timeout=30) for _ in range(60))
    for worker in workers:
        worker.join(timeout=30)
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert min(gaps) >= 20_000  # 50/s: 20 ms apart, whichever process booked them
    assert slots[-1] - slots[0] <= 59 * 20_000 + 500_000


def test_local_budget_paces_each_endpoint_and_the_account() -> None:
    slept: list[float] = []
    budget = LocalRequestBudget(rate=1000.0, sleep=slept.append)
    for _ in range(3):
        budget.acquire("GET /v1/invoices")
    assert max(slept) == pytest.approx(0.08, abs=0.01)
    slept.clear()
    budget.acquire("GET /v1/customers")
    assert all(pause < 0.01 for pause in slept)


def test_paced_workers_get_no_429_from_stripes_limits() -> None:
    """Four threads, two endpoints, a sandbox's 25/s: paced by the shared budget, the emulator
    enforcing Stripe's limits refuses nothing. (Paced by the endpoints alone, 80 requests at
    2 × 25/s would overrun the sandbox's global 25/s and its one second of burst.)"""
    key = f"test:budget:{uuid.uuid4().hex}"
    with EmulatorServer(EmulatorConfig(limits="sandbox")) as emulator:

        def worker(list_customers: bool, out: list[int]) -> None:
            budget = RedisRequestBudget(redis.Redis.from_url(REDIS_TEST_URL), rate=25.0, key=key)
            http = BudgetedRequestsClient(budget, timeout=10, max_rate_limit_retries=0)
            client = stripe.StripeClient(
                "sk_test_budget", base_addresses={"api": emulator.url}, http_client=http
            )
            for _ in range(20):
                try:
                    (client.v1.customers if list_customers else client.v1.products).list()
                except stripe.RateLimitError:
                    out.append(429)

        refused: list[int] = []
        threads = [threading.Thread(target=worker, args=(n % 2 == 0, refused)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        stats = emulator.state.stats()
    assert refused == []
    assert stats["rate_limited_total"] == 0
    assert stats["requests_by_route"] == {"GET /v1/customers": 40, "GET /v1/products": 40}
