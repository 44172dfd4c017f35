"""Test clocks: create, list, advance (running every due effect in time order) and delete.

Assumptions: the advance call answers with ``status="advancing"`` as Stripe does, but the
emulator completes the advance before answering, so the next retrieve shows ``ready``;
deleting a clock deletes its customers (and so their subscriptions stop renewing).  Stripe's
limit of two billing intervals per advance is not enforced.
"""

from __future__ import annotations

from typing import Any

from stripe_emulator.cycles import run_due
from stripe_emulator.errors import invalid
from stripe_emulator.forms import Params, get_int, get_list, get_str
from stripe_emulator.routing import route
from stripe_emulator.store import Store, new_id


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
    run_due(store, clock_id, target)
    clock["frozen_time"] = target
    out = store.render(clock, [])
    out["status"] = "advancing"
    out["status_details"] = {"advancing": {"target_frozen_time": target}}
    return out


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
