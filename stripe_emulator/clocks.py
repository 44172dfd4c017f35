"""Test clocks: create, list, advance (running every due effect in time order) and delete.

Assumptions: the advance call answers with ``status="advancing"`` as Stripe does, but the
emulator completes the advance before answering, so the next retrieve shows ``ready``;
deleting a clock deletes its customers (and so their subscriptions stop renewing).

Stripe's limits are enforced (API reference, "Advance a test clock", ``frozen_time``: "Cannot be
more than two intervals in the future from the shortest subscription in this test clock. If
there are no subscriptions in this test clock, it cannot be more than two years in the future";
https://docs.stripe.com/billing/testing/test-clocks, Limitations: a clock holds at most three
customers, ``EmulatorConfig.test_clock_max_customers``).
"""

from __future__ import annotations

from typing import Any

from stripe_emulator.cycles import run_due
from stripe_emulator.errors import invalid
from stripe_emulator.forms import Params, get_int, get_list, get_str
from stripe_emulator.periods import add_interval
from stripe_emulator.routing import route
from stripe_emulator.store import Store, new_id
from stripe_emulator.subscriptions import items_of


@route("POST", "/v1/test_helpers/test_clocks")
def create_clock(store: Store, params: Params) -> dict[str, Any]:
    frozen = get_int(params, "frozen_time", required=True)
    now = store.wall_now()
    clock = {
        "id": new_id("clock"),
        "object": "test_helpers.test_clock",
        "created": now,
        "deletes_after": now + 30 * 86_400,
        "frozen_time": frozen,
        "livemode": False,
        "name": get_str(params, "name"),
        "status": "ready",
        "status_details": {},
    }
    store.add(clock)
    return store.render(clock, [])


@route("GET", "/v1/test_helpers/test_clocks/{id}")
def retrieve_clock(store: Store, params: Params, clock_id: str) -> dict[str, Any]:
    return store.render(store.get("test_helpers.test_clock", clock_id), get_list(params, "expand"))


@route("GET", "/v1/test_helpers/test_clocks")
def list_clocks(store: Store, params: Params) -> dict[str, Any]:
    items = [c for c in store.table("test_helpers.test_clock").values() if not c.get("deleted")]
    return store.list_response("/v1/test_helpers/test_clocks", items, params)


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance")
def advance_clock(store: Store, params: Params, clock_id: str) -> dict[str, Any]:
    clock = store.get("test_helpers.test_clock", clock_id)
    target = get_int(params, "frozen_time", required=True)
    assert target is not None
    if target <= clock["frozen_time"]:
        raise invalid("The test clock can only be advanced to a time in the future.", "frozen_time")
    limit = advance_limit(store, clock_id, clock["frozen_time"])
    if target > limit:
        raise invalid(
            "Cannot advance the test clock more than two intervals of its shortest subscription "
            f"(or two years without one) past its frozen time: at most {limit}.",
            "frozen_time",
        )
    run_due(store, clock_id, target)
    clock["frozen_time"] = target
    out = store.render(clock, [])
    out["status"] = "advancing"
    out["status_details"] = {"advancing": {"target_frozen_time": target}}
    return out


def advance_limit(store: Store, clock_id: str, frozen_time: int) -> int:
    """The latest instant one advance may reach: two of the shortest interval of the clock's
    live subscriptions, or two years."""
    customers = {
        c["id"] for c in store.table("customer").values() if c.get("test_clock") == clock_id
    }
    limits = [add_interval(frozen_time, "year", 2)]
    for sub in store.table("subscription").values():
        if sub["customer"] not in customers or sub["status"] == "canceled":
            continue
        for item in items_of(store, sub):
            recurring = store.get("price", item["price"])["recurring"]
            count = 2 * int(recurring.get("interval_count") or 1)
            limits.append(add_interval(frozen_time, recurring["interval"], count))
    return min(limits)


def check_clock_capacity(store: Store, clock_id: str, limit: int | None) -> None:
    """A new customer on a full clock is refused, as Stripe refuses it."""
    if limit is None:
        return
    members = sum(
        1
        for c in store.table("customer").values()
        if c.get("test_clock") == clock_id and not c.get("deleted")
    )
    if members >= limit:
        raise invalid(
            f"The test clock {clock_id} already has the maximum of {limit} customers.",
            "test_clock",
        )


@route("DELETE", "/v1/test_helpers/test_clocks/{id}")
def delete_clock(store: Store, _params: Params, clock_id: str) -> dict[str, Any]:
    clock = store.get("test_helpers.test_clock", clock_id)
    clock["deleted"] = True
    for customer in store.table("customer").values():
        if customer["test_clock"] == clock_id:
            customer["deleted"] = True
    for sub in store.table("subscription").values():
        if sub["test_clock"] == clock_id:
            sub["status"] = "canceled"
    return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}
