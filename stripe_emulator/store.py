"""The emulator's in-memory data: objects by kind, clocks, ids, events, lists and expansion.

Objects are kept as plain dicts already in Stripe's wire shape; keys starting with ``_`` are
internal bookkeeping and never rendered.  The store is deliberately plain data so that invoice
previews can run real operations on a deep copy and throw it away.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stripe_emulator.errors import invalid, not_found
from stripe_emulator.forms import Params, get_int, get_list, get_str

API_VERSION = "2026-10-28.endive"

PREFIX_KIND = {
    "cus": "customer",
    "prod": "product",
    "price": "price",
    "mtr": "billing.meter",
    "sub": "subscription",
    "si": "subscription_item",
    "ii": "invoiceitem",
    "in": "invoice",
    "clock": "test_helpers.test_clock",
    "we": "webhook_endpoint",
    "evt": "event",
}
KIND_NAME = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "billing.meter": "billing meter",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "invoiceitem": "invoiceitem",
    "invoice": "invoice",
    "test_helpers.test_clock": "test clock",
    "webhook_endpoint": "webhook endpoint",
    "event": "event",
}

Renderer = Callable[["Store", dict[str, Any], set[str]], dict[str, Any]]
RENDERERS: dict[str, Renderer] = {}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class MeterEventRecord:
    """One accepted meter event (v1 has no id; the identifier is the key)."""

    identifier: str
    event_name: str
    meter_id: str
    customer_id: str
    value: Any  # Decimal
    timestamp: int
    received_at: int  # account wall clock at receipt
    seq: int
    cancelled: bool = False
    # time.monotonic() at receipt: the aggregation delay counts real seconds from here
    # (stripe_emulator.metering), whatever the account or test clocks say
    received_monotonic: float = field(default_factory=time.monotonic)


@dataclass
class Store:
    """All emulated Stripe state of one account."""

    frozen_time: int | None = None
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # meter events by (meter_id, customer_id), and the identifier index (global per account)
    meter_events: dict[tuple[str, str], list[MeterEventRecord]] = field(default_factory=dict)
    identifiers: dict[str, MeterEventRecord] = field(default_factory=dict)
    # ids of each kind's objects per customer, in creation order (lists filtered by customer
    # must not scan every object of an account with thousands of customers)
    by_customer: dict[str, dict[str, dict[str, None]]] = field(default_factory=dict)
    # ids of each kind in creation order, and each id's place in it: an account-wide list page
    # starts at its cursor instead of filtering and sorting the whole table (`list_table`)
    order: dict[str, list[str]] = field(default_factory=dict)
    positions: dict[str, dict[str, int]] = field(default_factory=dict)
    meter_event_seq: int = 0
    # v2 meter event stream (stripe_emulator.meter_stream): session token → expiry (account
    # clock), the asynchronous error reports, and the stream's request/event counters.
    meter_event_sessions: dict[str, int] = field(default_factory=dict)
    meter_event_stream_errors: list[dict[str, Any]] = field(default_factory=list)
    meter_event_stream_counts: dict[str, int] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # events awaiting delivery
    # v2 (stripe_emulator.event_destinations): destinations by id, thin events by id, and the
    # thin events awaiting delivery.
    event_destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    thin_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    thin_outbox: list[dict[str, Any]] = field(default_factory=list)
    request_id: str | None = None
    preview: bool = False
    config: Any = None  # the EmulatorConfig (grace period, auto_pay) — set by EmulatorState

    # ----- time -----------------------------------------------------------------------------
    def wall_now(self) -> int:
        return self.frozen_time if self.frozen_time is not None else int(time.time())

    def clock_now(self, clock_id: str | None) -> int:
        if clock_id is None:
            return self.wall_now()
        clock = self.table("test_helpers.test_clock").get(clock_id)
        if clock is None:
            return self.wall_now()
        return int(clock["frozen_time"])

    def customer_clock(self, customer_id: str) -> str | None:
        customer = self.table("customer").get(customer_id)
        return None if customer is None else customer.get("test_clock")

    def customer_now(self, customer_id: str) -> int:
        return self.clock_now(self.customer_clock(customer_id))

    # ----- objects ---------------------------------------------------------------------------
    def table(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(kind, {})

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        table = self.table(obj["object"])
        if obj["id"] not in table and not self.preview:  # a preview's shadow shares the index
            ids = self.order.setdefault(obj["object"], [])
            self.positions.setdefault(obj["object"], {})[obj["id"]] = len(ids)
            ids.append(obj["id"])
        table[obj["id"]] = obj
        customer = obj.get("customer")
        if isinstance(customer, str):
            kinds = self.by_customer.setdefault(obj["object"], {})
            kinds.setdefault(customer, {})[obj["id"]] = None
        return obj

    def of_customer(self, kind: str, customer_id: str) -> list[dict[str, Any]]:
        """The customer's objects of `kind`, in creation order."""
        table = self.table(kind)
        ids = self.by_customer.get(kind, {}).get(customer_id, {})
        return [table[object_id] for object_id in ids if object_id in table]

    def get(self, kind: str, object_id: str | None, param: str = "id") -> dict[str, Any]:
        obj = self.table(kind).get(object_id or "")
        if obj is None or obj.get("deleted"):
            raise not_found(KIND_NAME.get(kind, kind), str(object_id), param)
        return obj

    def find(self, object_id: str) -> dict[str, Any] | None:
        prefix = object_id.split("_", 1)[0]
        kind = PREFIX_KIND.get(prefix)
        return None if kind is None else self.table(kind).get(object_id)

    # ----- events -----------------------------------------------------------------------------
    def emit(
        self,
        type_: str,
        obj: dict[str, Any],
        created: int,
        previous_attributes: dict[str, Any] | None = None,
    ) -> None:
        if self.preview:
            return
        data: dict[str, Any] = {"object": self.render(obj, set())}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": self.request_id, "idempotency_key": None},
            "type": type_,
        }
        self.add(event)
        self.outbox.append(event)

    # ----- rendering --------------------------------------------------------------------------
    def render(self, obj: dict[str, Any], expand: Iterable[str]) -> dict[str, Any]:
        expand_set = set(expand)
        renderer = RENDERERS.get(obj.get("object", ""))
        if renderer is not None:
            out = renderer(self, obj, expand_set)
        else:
            out = {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}
        for path in expand_set:
            self._expand(out, path.split("."))
        return out

    def _expand(self, node: Any, path: list[str]) -> None:
        if not path or not isinstance(node, dict):
            return
        head, rest = path[0], path[1:]
        if node.get("object") == "list" and head == "data":
            for item in node.get("data", []):
                self._expand(item, rest)
            return
        value = node.get(head)
        if isinstance(value, str):
            target = self.find(value)
            if target is not None:
                sub_expand = {".".join(rest)} if rest else set()
                node[head] = self.render(target, sub_expand)
                return
        if isinstance(value, dict):
            self._expand(value, rest)

    def list_response(
        self,
        url: str,
        items: list[dict[str, Any]],
        params: Params,
        *,
        newest_first: bool = True,
    ) -> dict[str, Any]:
        """Paginate ``items`` (in creation order) Stripe-style and render them."""
        limit = get_int(params, "limit") or 10
        if not 1 <= limit <= 100:
            raise invalid("Limit must be between 1 and 100.", "limit")
        ordered = list(reversed(items)) if newest_first else list(items)
        after = get_str(params, "starting_after")
        before = get_str(params, "ending_before")
        ids = [o["id"] for o in ordered]
        if after is not None:
            if after not in ids:
                raise invalid(f"No such object: '{after}'", "starting_after", "resource_missing")
            ordered = ordered[ids.index(after) + 1 :]
            page = ordered[:limit]
            has_more = len(ordered) > limit
        elif before is not None:
            if before not in ids:
                raise invalid(f"No such object: '{before}'", "ending_before", "resource_missing")
            ordered = ordered[: ids.index(before)]
            page = ordered[-limit:]
            has_more = len(ordered) > limit
        else:
            page = ordered[:limit]
            has_more = len(ordered) > limit
        expand = [p[len("data.") :] for p in get_list(params, "expand") if p.startswith("data.")]
        return {
            "object": "list",
            "data": [self.render(o, expand) for o in page],
            "has_more": has_more,
            "url": url,
        }

    def list_table(
        self, url: str, kind: str, params: Params, keep: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """An account-wide list of `kind`, newest first, of the objects `keep` accepts: the page
        is read from the cursor's place onwards and stops one past `limit` (Stripe serves a page
        in constant time; a filter of the whole table per page made a sweep of 200,000 invoices
        quadratic). `ending_before` pages backwards through `list_response`."""
        if get_str(params, "ending_before") is not None:
            return self.list_response(
                url, [o for o in self.table(kind).values() if keep(o)], params
            )
        limit = get_int(params, "limit") or 10
        if not 1 <= limit <= 100:
            raise invalid("Limit must be between 1 and 100.", "limit")
        table, ids = self.table(kind), self.order.get(kind, [])
        start = len(ids) - 1
        after = get_str(params, "starting_after")
        if after is not None:
            place = self.positions.get(kind, {}).get(after)
            if place is None:
                raise invalid(f"No such object: '{after}'", "starting_after", "resource_missing")
            start = place - 1
        page: list[dict[str, Any]] = []
        for index in range(start, -1, -1):
            obj = table[ids[index]]
            if keep(obj):
                page.append(obj)
                if len(page) > limit:
                    break
        expand = [p[len("data.") :] for p in get_list(params, "expand") if p.startswith("data.")]
        return {
            "object": "list",
            "data": [self.render(o, expand) for o in page[:limit]],
            "has_more": len(page) > limit,
            "url": url,
        }


def created_filter(params: Params, key: str = "created") -> Callable[[int], bool]:
    """Stripe's range filter: ``created=<ts>`` or ``created[gt|gte|lt|lte]=<ts>``."""
    raw = params.get(key)
    if raw is None or raw == "":
        return lambda _ts: True
    if isinstance(raw, str):
        exact = get_int(params, key)
        return lambda ts: ts == exact
    bounds = {op: get_int(raw, op, param=f"{key}[{op}]") for op in ("gt", "gte", "lt", "lte")}

    def check(ts: int) -> bool:
        gt, gte, lt, lte = bounds["gt"], bounds["gte"], bounds["lt"], bounds["lte"]
        return not (
            (gt is not None and ts <= gt)
            or (gte is not None and ts < gte)
            or (lt is not None and ts >= lt)
            or (lte is not None and ts > lte)
        )

    return check
