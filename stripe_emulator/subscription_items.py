"""The ``/v1/subscription_items`` endpoints, thin wrappers over subscription item changes."""

from __future__ import annotations

from typing import Any

from stripe_emulator.forms import Params, get_list, req_str
from stripe_emulator.routing import route
from stripe_emulator.store import Store
from stripe_emulator.subscriptions import items_of, update_items


@route("POST", "/v1/subscription_items")
def create_subscription_item(store: Store, params: Params) -> dict[str, Any]:
    sub = store.get("subscription", req_str(params, "subscription"), "subscription")
    node = {k: params[k] for k in ("price", "quantity", "metadata") if k in params}
    before = set(sub["_items"])
    update_items(store, sub, [(node, "")], params)
    new_id_ = next(i for i in sub["_items"] if i not in before)
    return store.render(store.get("subscription_item", new_id_), get_list(params, "expand"))


@route("GET", "/v1/subscription_items/{id}")
def retrieve_subscription_item(store: Store, params: Params, item_id: str) -> dict[str, Any]:
    return store.render(store.get("subscription_item", item_id), get_list(params, "expand"))


@route("POST", "/v1/subscription_items/{id}")
def update_subscription_item(store: Store, params: Params, item_id: str) -> dict[str, Any]:
    item = store.get("subscription_item", item_id)
    sub = store.get("subscription", item["subscription"])
    node = {k: params[k] for k in ("price", "quantity", "metadata") if k in params}
    node["id"] = item_id
    update_items(store, sub, [(node, "")], params)
    return store.render(item, get_list(params, "expand"))


@route("DELETE", "/v1/subscription_items/{id}")
def delete_subscription_item(store: Store, params: Params, item_id: str) -> dict[str, Any]:
    item = store.get("subscription_item", item_id)
    sub = store.get("subscription", item["subscription"])
    update_items(store, sub, [({"id": item_id, "deleted": "true"}, "")], params)
    return {"id": item_id, "object": "subscription_item", "deleted": True}


@route("GET", "/v1/subscription_items")
def list_subscription_items(store: Store, params: Params) -> dict[str, Any]:
    sub = store.get("subscription", req_str(params, "subscription"), "subscription")
    return store.list_response(
        "/v1/subscription_items", items_of(store, sub), params, newest_first=False
    )
