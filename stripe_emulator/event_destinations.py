"""v2 event destinations and thin events: the meter event stream's asynchronous error reports.

Modelled from Stripe's API reference and stripe-python 16:

- ``POST /v2/core/event_destinations`` (https://docs.stripe.com/api/v2/core/event_destinations;
  ``stripe/params/v2/core/_event_destination_create_params.py``): JSON body with ``name``,
  ``type`` (only ``webhook_endpoint`` is modelled), ``event_payload`` (``thin`` or
  ``snapshot``; only thin destinations receive anything here), ``enabled_events`` and
  ``webhook_endpoint.url``; answers a ``v2.core.event_destination`` whose
  ``webhook_endpoint.signing_secret`` is present only when the request's ``include`` names
  ``webhook_endpoint.signing_secret`` ("Public API clients must include
  `webhook_endpoint.signing_secret` to receive the signing secret"; "only includable on
  creation"). ``GET`` of one destination answers it without the secret.
- Thin events (https://docs.stripe.com/api/v2/core/events/object,
  https://docs.stripe.com/api/v2/events/event-types): an event accepted by the meter event
  stream that then fails validation is dropped and reported as
  ``v1.billing.meter.error_report_triggered`` (related object: the meter) or, when no meter has
  the event name, ``v1.billing.meter.no_meter_found`` (no related object)
  (https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api#error-handling).
  Each enabled thin destination whose ``enabled_events`` holds the type receives the
  notification (``id``, ``object: "v2.core.event"``, ``type``, ``created``, ``livemode``,
  ``context``, ``reason``, ``related_object {id, type, url}``; no ``data``), signed with the
  destination's secret exactly as webhook endpoints' deliveries are
  (``stripe_emulator.webhooks.sign``: what ``StripeClient.parse_event_notification`` verifies).
- ``GET /v2/core/events/{id}`` answers the full event with ``data``: ``reason.error_count``,
  ``reason.error_types[{code, error_count, sample_errors[{error_message, request
  {identifier}}]}]``, ``validation_start``, ``validation_end`` and
  ``developer_message_summary`` (the shape of the docs' example and of stripe-python's
  ``V1BillingMeterErrorReportTriggeredEvent``).

Assumptions (undocumented details): one report per meter (or per event name without a meter) for
the events of one stream request that failed validation, its window the 10 seconds (as in the
docs' example) holding the request's receipt on the account clock; at most
``MAX_SAMPLE_ERRORS`` sample errors per code; event ids are ``evt_test_…``; an unknown event or
destination answers 404 in the v2 error shape; thin deliveries are retried like webhook
deliveries and counted in the same history.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from stripe_emulator.errors import V2ApiError
from stripe_emulator.forms import Params
from stripe_emulator.metering import meter_for_event
from stripe_emulator.routing import route
from stripe_emulator.store import Store

DESTINATIONS_PATH = "/v2/core/event_destinations"
ERROR_REPORT = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND = "v1.billing.meter.no_meter_found"
MAX_SAMPLE_ERRORS = 5
WINDOW_SECONDS = 10
INCLUDE_SIGNING_SECRET = "webhook_endpoint.signing_secret"  # noqa: S105 - a field name


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _bad(message: str) -> V2ApiError:
    return V2ApiError(400, message, code="invalid_fields")


def _str_list(params: Params, key: str) -> list[str]:
    value = params.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"`{key}` must be a list of strings.")
    return list(value)


def _public(destination: dict[str, Any], include: list[str]) -> dict[str, Any]:
    out = {k: v for k, v in destination.items() if not k.startswith("_")}
    endpoint = {"url": destination["_url"], "signing_secret": None}
    if INCLUDE_SIGNING_SECRET in include:
        endpoint["signing_secret"] = destination["_secret"]
    out["webhook_endpoint"] = endpoint
    return out


@route("POST", DESTINATIONS_PATH)
def create_destination(store: Store, params: Params) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("`name` is required.")
    if params.get("type") != "webhook_endpoint":
        raise _bad("Only `type: webhook_endpoint` destinations are supported.")
    if params.get("event_payload") not in ("thin", "snapshot"):
        raise _bad("`event_payload` must be `thin` or `snapshot`.")
    events = _str_list(params, "enabled_events")
    if not events:
        raise _bad("`enabled_events` must name at least one event type.")
    webhook = params.get("webhook_endpoint")
    url = webhook.get("url") if isinstance(webhook, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _bad("`webhook_endpoint.url` must be an http(s) URL.")
    now = _iso(store.wall_now())
    destination = {
        "id": f"ed_test_{secrets.token_hex(12)}",
        "object": "v2.core.event_destination",
        "created": now,
        "updated": now,
        "description": str(params.get("description") or ""),
        "enabled_events": events,
        "event_payload": params["event_payload"],
        "events_from": ["@self"],
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "name": name,
        "snapshot_api_version": None,
        "status": "enabled",
        "status_details": None,
        "type": "webhook_endpoint",
        "amazon_eventbridge": None,
        "azure_event_grid": None,
        "_url": url,
        "_secret": f"whsec_{secrets.token_hex(16)}",
    }
    store.event_destinations[destination["id"]] = destination
    return _public(destination, _str_list(params, "include"))


@route("GET", DESTINATIONS_PATH + "/{id}")
def retrieve_destination(store: Store, _params: Params, destination_id: str) -> dict[str, Any]:
    destination = store.event_destinations.get(destination_id)
    if destination is None:
        raise V2ApiError(404, f"No such event destination: '{destination_id}'")
    return _public(destination, [])


@route("GET", "/v2/core/events/{id}")
def retrieve_event(store: Store, _params: Params, event_id: str) -> dict[str, Any]:
    event = store.thin_events.get(event_id)
    if event is None:
        raise V2ApiError(404, f"No such event: '{event_id}'")
    return json.loads(json.dumps(event))


def notification(event: dict[str, Any]) -> dict[str, Any]:
    """What a thin destination receives: the event without its ``data``."""
    return {k: v for k, v in event.items() if k != "data"}


def thin_targets(store: Store, event_type: str) -> list[tuple[str, str]]:
    """(url, secret) of every enabled thin destination that takes ``event_type``."""
    return [
        (d["_url"], d["_secret"])
        for d in store.event_destinations.values()
        if d["status"] == "enabled"
        and d["event_payload"] == "thin"
        and (event_type in d["enabled_events"] or "*" in d["enabled_events"])
    ]


def _error_types(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_code: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        by_code.setdefault(str(error["code"]), []).append(error)
    return [
        {
            "code": code,
            "error_count": len(items),
            "sample_errors": [
                {"error_message": e["message"], "request": {"identifier": e["identifier"]}}
                for e in items[:MAX_SAMPLE_ERRORS]
            ],
        }
        for code, items in by_code.items()
    ]


def _report(store: Store, errors: list[dict[str, Any]], meter: dict[str, Any] | None) -> None:
    now = store.wall_now()
    start = now - now % WINDOW_SECONDS
    count = len(errors)
    summary = f"There {'is' if count == 1 else 'are'} {count} invalid event{'s' * (count != 1)}"
    event: dict[str, Any] = {
        "id": f"evt_test_{secrets.token_hex(16)}",
        "object": "v2.core.event",
        "context": None,
        "created": _iso(now),
        "data": {
            "developer_message_summary": summary,
            "reason": {"error_count": count, "error_types": _error_types(errors)},
            "validation_end": _iso(start + WINDOW_SECONDS),
            "validation_start": _iso(start),
        },
        "livemode": False,
        "reason": None,
        "type": NO_METER_FOUND if meter is None else ERROR_REPORT,
    }
    if meter is not None:
        event["related_object"] = {
            "id": meter["id"],
            "type": "billing.meter",
            "url": f"/v1/billing/meters/{meter['id']}",
        }
    store.thin_events[event["id"]] = event
    store.thin_outbox.append(event)


def report_errors(store: Store, errors: list[dict[str, Any]]) -> None:
    """One thin event per meter (or per unknown event name) for one request's invalid events."""
    groups: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
    for error in errors:
        meter = meter_for_event(store, error["event_name"])
        key = meter["id"] if meter is not None else f"name:{error['event_name']}"
        groups.setdefault(key, (meter, []))[1].append(error)
    for meter, items in groups.values():
        _report(store, items, meter)
