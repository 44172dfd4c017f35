"""Billing meters, meter events, cancellations and usage aggregation (summaries and totals).

Documented rules applied synchronously here: one active meter per ``event_name``; an
``identifier`` is unique for 24 h after Stripe received the first event; ``timestamp`` must be
within the past 35 days and at most 5 minutes ahead of the customer's clock (its test clock's
frozen time when it has one, otherwise the account clock); values with more than 15
significant digits are refused; a cancel adjustment works only within 24 h of receipt; for
pre-aggregated meters (``event_time_window`` day/hour) only the most recently *received* event
of each UTC window counts.

Assumptions (Stripe reports several of these asynchronously through
``v1.billing.meter.error_report_triggered``; the emulator answers them synchronously with a
400 and the async reason code as ``code``): ``no_meter``, ``archived_meter``,
``meter_event_no_customer_defined``, ``meter_event_customer_not_found``,
``meter_event_invalid_value``, ``meter_event_value_too_many_digits``, ``timestamp_in_future``,
``timestamp_too_far_in_past``; a repeated identifier answers 400 with code
``duplicate_meter_event`` (the exact sync code is not documented).  Receipt time, identifier
uniqueness and the 24 h cancel window use the account clock (Stripe's processing time), not the
test clock.  The adjustment is applied immediately but answered with ``status="pending"``, as
Stripe answers it.  Meter events count against the emulator's rate limit like any request.

Asynchronous aggregation: "Meter events are processed asynchronously, so aggregated usage in
meter event summaries and on upcoming invoices might not immediately reflect recently received
meter events" (https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage).
Modelled by ``EmulatorConfig.meter_aggregation_delay_seconds``: an accepted event (whichever
endpoint recorded it: the stamp is taken on the stored ``MeterEventRecord``) counts in
``meter_total`` — and so in meter event summaries, draft and upcoming invoice metered lines and
at finalization — only once that many real, monotonic seconds have passed since the emulator
received it; test clocks and the frozen account clock do not speed it up.  Assumptions: Stripe
documents no bound on the lag, so the delay is one fixed figure for every event; validation
(identifier, timestamp, value) still answers synchronously; a cancel adjustment takes effect at
once, also for an event not yet aggregated; and an event received less than the delay before a
draft finalizes is left out of that invoice (Stripe's grace period exists for that reason:
report usage well before it ends).
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_emulator.errors import ApiError, invalid, missing
from stripe_emulator.forms import Params, get_dict, get_enum, get_int, get_list, get_str, req_str
from stripe_emulator.periods import floor_window
from stripe_emulator.routing import route
from stripe_emulator.store import MeterEventRecord, Store, new_id

DAY = 86_400
PAST_LIMIT = 35 * DAY
FUTURE_LIMIT = 300


def _error(message: str, code: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)


@route("POST", "/v1/billing/meters")
def create_meter(store: Store, params: Params) -> dict[str, Any]:
    display_name = req_str(params, "display_name")
    event_name = req_str(params, "event_name")
    aggregation = get_dict(params, "default_aggregation")
    formula = get_enum(aggregation, "formula", ("sum", "count", "last"))
    if formula is None:
        raise missing("default_aggregation[formula]")
    for meter in store.table("billing.meter").values():
        if meter["event_name"] == event_name and meter["status"] == "active":
            raise invalid(
                f"An active meter with event_name '{event_name}' already exists.",
                "event_name",
                "resource_already_exists",
            )
    mapping = get_dict(params, "customer_mapping")
    values = get_dict(params, "value_settings")
    now = store.wall_now()
    meter = {
        "id": new_id("mtr"),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": {
            "event_payload_key": get_str(mapping, "event_payload_key") or "stripe_customer_id",
            "type": "by_id",
        },
        "default_aggregation": {"formula": formula},
        "display_name": display_name,
        "event_name": event_name,
        "event_time_window": get_enum(params, "event_time_window", ("day", "hour")),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {"event_payload_key": get_str(values, "event_payload_key") or "value"},
    }
    store.add(meter)
    return store.render(meter, [])


@route("GET", "/v1/billing/meters/{id}")
def retrieve_meter(store: Store, params: Params, meter_id: str) -> dict[str, Any]:
    return store.render(store.get("billing.meter", meter_id), get_list(params, "expand"))


@route("POST", "/v1/billing/meters/{id}")
def update_meter(store: Store, params: Params, meter_id: str) -> dict[str, Any]:
    meter = store.get("billing.meter", meter_id)
    for key in params:
        if key not in ("display_name", "expand"):
            raise invalid(f"Received unknown parameter: {key}", key)
    if "display_name" in params:
        meter["display_name"] = req_str(params, "display_name")
        meter["updated"] = store.wall_now()
    return store.render(meter, [])


def _set_status(store: Store, meter_id: str, active: bool) -> dict[str, Any]:
    meter = store.get("billing.meter", meter_id)
    now = store.wall_now()
    meter["status"] = "active" if active else "inactive"
    meter["status_transitions"] = {"deactivated_at": None if active else now}
    meter["updated"] = now
    return store.render(meter, [])


@route("POST", "/v1/billing/meters/{id}/deactivate")
def deactivate_meter(store: Store, _params: Params, meter_id: str) -> dict[str, Any]:
    return _set_status(store, meter_id, active=False)


@route("POST", "/v1/billing/meters/{id}/reactivate")
def reactivate_meter(store: Store, _params: Params, meter_id: str) -> dict[str, Any]:
    return _set_status(store, meter_id, active=True)


@route("GET", "/v1/billing/meters")
def list_meters(store: Store, params: Params) -> dict[str, Any]:
    status = get_str(params, "status")
    items = [m for m in store.table("billing.meter").values() if status in (None, m["status"])]
    return store.list_response("/v1/billing/meters", items, params)


def meter_for_event(store: Store, event_name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    for meter in store.table("billing.meter").values():
        if meter["event_name"] == event_name:
            if meter["status"] == "active":
                return meter
            found = meter
    return found


def parse_value(raw: str | None) -> Decimal:
    if raw is None:
        raise _error("The meter event payload is missing its value.", "meter_event_invalid_value")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise _error(f"Invalid meter event value: {raw}", "meter_event_invalid_value") from exc
    if not value.is_finite():
        raise _error(f"Invalid meter event value: {raw}", "meter_event_invalid_value")
    digits = value.normalize().as_tuple().digits
    significant = len(str(int("".join(map(str, digits))))) if any(digits) else 1
    if significant > 15:
        raise _error(
            "Meter event values may have at most 15 significant digits.",
            "meter_event_value_too_many_digits",
            "payload",
        )
    return value


def check_event(
    store: Store, event_name: str, payload: dict[str, Any], timestamp: int | None
) -> tuple[dict[str, Any], str, Decimal, int]:
    """Validate one meter event: its (meter, customer id, value, timestamp), or an ApiError
    whose ``code`` is the reason (the v1 endpoint answers it; the v2 stream reports it)."""
    meter = meter_for_event(store, event_name)
    if meter is None:
        raise _error(
            f"No active meter found for event_name '{event_name}'.", "no_meter", "event_name"
        )
    if meter["status"] != "active":
        raise _error(f"The meter for '{event_name}' is inactive.", "archived_meter", "event_name")
    customer_key = meter["customer_mapping"]["event_payload_key"]
    customer_id = payload.get(customer_key)
    if not customer_id:
        raise _error(
            f"The payload is missing '{customer_key}'.",
            "meter_event_no_customer_defined",
            "payload",
        )
    customer = store.table("customer").get(customer_id)
    if customer is None or customer.get("deleted"):
        raise _error(
            f"No such customer: '{customer_id}'", "meter_event_customer_not_found", "payload"
        )
    value_key = meter["value_settings"]["event_payload_key"]
    formula = meter["default_aggregation"]["formula"]
    raw_value = payload.get(value_key)
    value = Decimal(1) if formula == "count" and raw_value is None else parse_value(raw_value)
    customer_now = store.customer_now(customer_id)
    if timestamp is None:
        timestamp = customer_now
    if timestamp < customer_now - PAST_LIMIT:
        raise _error(
            "Timestamp must be within the past 35 calendar days.",
            "timestamp_too_far_in_past",
            "timestamp",
        )
    if timestamp > customer_now + FUTURE_LIMIT:
        raise _error(
            "Timestamp must be at most 5 minutes in the future.", "timestamp_in_future", "timestamp"
        )
    return meter, str(customer_id), value, timestamp


def seen_identifier(store: Store, identifier: str) -> bool:
    """Whether an event with this identifier was received in the past 24 hours."""
    previous = store.identifiers.get(identifier)
    return previous is not None and store.wall_now() < previous.received_at + DAY


def record_event(  # noqa: PLR0917 - one accepted event's fields
    store: Store,
    identifier: str,
    event_name: str,
    meter: dict[str, Any],
    customer_id: str,
    value: Decimal,
    timestamp: int,
) -> MeterEventRecord:
    """Store one accepted meter event (the v1 endpoint and the v2 stream both end here)."""
    store.meter_event_seq += 1
    record = MeterEventRecord(
        identifier=identifier,
        event_name=event_name,
        meter_id=meter["id"],
        customer_id=customer_id,
        value=value,
        timestamp=timestamp,
        received_at=store.wall_now(),
        seq=store.meter_event_seq,
    )
    store.identifiers[identifier] = record
    store.meter_events.setdefault((meter["id"], customer_id), []).append(record)
    return record


@route("POST", "/v1/billing/meter_events")
def create_meter_event(store: Store, params: Params) -> dict[str, Any]:
    event_name = req_str(params, "event_name")
    payload = get_dict(params, "payload")
    if not payload:
        raise missing("payload")
    meter, customer_id, value, timestamp = check_event(
        store, event_name, payload, get_int(params, "timestamp")
    )
    identifier = get_str(params, "identifier") or new_id("mev")
    if seen_identifier(store, identifier):
        raise _error(
            f"An event with identifier '{identifier}' already exists.",
            "duplicate_meter_event",
            "identifier",
        )
    record = record_event(store, identifier, event_name, meter, customer_id, value, timestamp)
    return {
        "object": "billing.meter_event",
        "created": record.received_at,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": {k: str(v) for k, v in payload.items()},
        "timestamp": timestamp,
    }


@route("POST", "/v1/billing/meter_event_adjustments")
def create_adjustment(store: Store, params: Params) -> dict[str, Any]:
    event_name = req_str(params, "event_name")
    type_ = get_enum(params, "type", ("cancel",), "cancel")
    cancel = get_dict(params, "cancel")
    identifier = get_str(cancel, "identifier")
    if identifier is None:
        raise missing("cancel[identifier]")
    record = store.identifiers.get(identifier)
    if record is None or record.event_name != event_name:
        raise invalid(
            f"No meter event with identifier '{identifier}' was found.",
            "cancel[identifier]",
            "resource_missing",
        )
    if store.wall_now() >= record.received_at + DAY:
        raise invalid(
            "Meter events can only be cancelled within 24 hours of being received.",
            "cancel[identifier]",
        )
    record.cancelled = True
    return {
        "object": "billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "event_name": event_name,
        "livemode": False,
        "status": "pending",
        "type": type_,
    }


def _aggregate(meter: dict[str, Any], records: list[MeterEventRecord]) -> Decimal:
    window = meter.get("event_time_window")
    if window:
        newest: dict[int, MeterEventRecord] = {}
        for record in records:
            key = floor_window(record.timestamp, window)
            if key not in newest or record.seq > newest[key].seq:
                newest[key] = record
        records = list(newest.values())
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return Decimal(len(records))
    if formula == "last":
        if not records:
            return Decimal(0)
        return max(records, key=lambda r: (r.timestamp, r.seq)).value
    return sum((r.value for r in records), Decimal(0))


def meter_total(store: Store, customer_id: str, meter_id: str, start: int, end: int) -> Decimal:
    """Aggregated meter value for a customer over ``[start, end)``: the events aggregated
    by now (received at least ``meter_aggregation_delay_seconds`` real seconds ago)."""
    meter = store.get("billing.meter", meter_id)
    delay = store.config.meter_aggregation_delay_seconds if store.config is not None else 0.0
    settled_before = time.monotonic() - delay if delay > 0 else float("inf")
    records = [
        r
        for r in store.meter_events.get((meter_id, customer_id), [])
        if not r.cancelled and start <= r.timestamp < end and r.received_monotonic <= settled_before
    ]
    return _aggregate(meter, records)


@route("GET", "/v1/billing/meters/{id}/event_summaries")
def list_event_summaries(store: Store, params: Params, meter_id: str) -> dict[str, Any]:
    meter = store.get("billing.meter", meter_id)
    customer_id = req_str(params, "customer")
    start = get_int(params, "start_time", required=True)
    end = get_int(params, "end_time", required=True)
    assert start is not None
    assert end is not None
    window = get_enum(params, "value_grouping_window", ("day", "hour"))
    for name, ts in (("start_time", start), ("end_time", end)):
        if ts % 60:
            raise invalid(f"{name} must be aligned to minute boundaries.", name)
        if window and ts % (3600 if window == "hour" else DAY):
            raise invalid(f"{name} must be aligned to {window} boundaries.", name)
    if end <= start:
        raise invalid("end_time must be after start_time.", "end_time")
    step = end - start if window is None else (3600 if window == "hour" else DAY)
    summaries = []
    t = start
    while t < end:
        t_end = min(t + step, end)
        value = meter_total(store, customer_id, meter_id, t, t_end)
        summaries.append(
            {
                "id": f"mtrusg_{meter_id[4:]}_{t}",
                "object": "billing.meter_event_summary",
                "aggregated_value": float(value),
                "end_time": t_end,
                "livemode": False,
                "meter": meter["id"],
                "start_time": t,
            }
        )
        t = t_end
    return store.list_response(
        f"/v1/billing/meters/{meter_id}/event_summaries", summaries, params, newest_first=False
    )
