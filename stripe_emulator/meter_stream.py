"""The v2 high-throughput meter event stream: sessions with short-lived tokens, and the stream.

Modelled from Stripe's API reference (https://docs.stripe.com/api/v2/billing-meter-stream) and
stripe-python 16's generated services (``stripe/v2/billing/_meter_event_session_service.py``,
``_meter_event_stream_service.py``, ``stripe/params/v2/billing/
_meter_event_stream_create_params.py``):

- ``POST /v2/billing/meter_event_session`` (secret key, JSON body) answers a
  ``v2.billing.meter_event_session`` with ``id``, ``authentication_token``, ``created``,
  ``expires_at`` (ISO 8601 strings; "Authentication tokens are only valid for 15 minutes") and
  ``livemode``.
- ``POST /v2/billing/meter_event_stream`` is sent by stripe-python to the ``meter_events`` base
  address with ``Authorization: Bearer <authentication_token>`` and ``{"events": [...]}``: "up
  to 100 events per request", each ``event_name``, optional ``identifier`` ("We'll enforce
  uniqueness within a rolling 24 hour period"), ``payload`` (string values) and optional
  ``timestamp`` (RFC 3339; past 35 days to 5 minutes ahead). "Events are processed
  asynchronously, including validation": the request is accepted and answered with an empty JSON
  object (stripe-python parses every answer as JSON, so an empty body would fail it); an event
  that fails validation is dropped and reported (Stripe sends
  ``v1.billing.meter.error_report_triggered``: ``stripe_emulator.event_destinations`` sends it to
  thin event destinations; it is also appended to ``Store.meter_event_stream_errors``, shown by
  ``/_emulator/stats``); an identifier already
  received in the past 24 hours is dropped without a report. Accepted events are stored by
  ``metering.record_event``, exactly as the v1 endpoint stores them.

Assumptions (undocumented details): an unknown or expired token answers 401 with the v2 error
``{"error": {"type": "temporary_session_expired", "code":
"billing_meter_event_session_expired", ...}}``, the type stripe-python maps to
``TemporarySessionExpiredError`` (``_api_requestor.specific_v2_api_error``); a malformed request
(no ``events`` list, more than 100 events, an event without ``event_name`` or ``payload``) is
refused synchronously with a 400 ``invalid_request_error``; token expiry follows the account
clock (``Store.wall_now``); ``EmulatorConfig.meter_event_stream=False`` models an account
without the stream (its session endpoint answers 404); the error report's codes are those the
v1 endpoint answers, plus ``timestamp_invalid`` for a timestamp that is not RFC 3339.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from stripe_emulator import event_destinations
from stripe_emulator.errors import ApiError, V2ApiError
from stripe_emulator.forms import Params
from stripe_emulator.limits import METER_EVENT_STREAM_MAX_EVENTS
from stripe_emulator.metering import check_event, record_event, seen_identifier
from stripe_emulator.routing import route
from stripe_emulator.store import Store, new_id

SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"
SESSION_SECONDS = 15 * 60


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def session_error(store: Store, token: str) -> V2ApiError | None:
    """Why ``token`` may not use the stream (unknown or expired), or None."""
    expires_at = store.meter_event_sessions.get(token)
    if expires_at is not None and store.wall_now() < expires_at:
        return None
    return V2ApiError(
        401,
        "The meter event session has expired. Create a new session to continue.",
        type_="temporary_session_expired",
        code="billing_meter_event_session_expired",
    )


@route("POST", SESSION_PATH)
def create_session(store: Store, _params: Params) -> dict[str, Any]:
    if store.config is not None and not store.config.meter_event_stream:
        raise V2ApiError(404, f"Unrecognized request URL (POST: {SESSION_PATH}).")
    now = store.wall_now()
    token = f"mes_tok_{secrets.token_hex(16)}"
    store.meter_event_sessions[token] = now + SESSION_SECONDS
    counts = store.meter_event_stream_counts
    counts["sessions"] = counts.get("sessions", 0) + 1
    return {
        "id": new_id("mes"),
        "object": "v2.billing.meter_event_session",
        "authentication_token": token,
        "created": _iso(now),
        "expires_at": _iso(now + SESSION_SECONDS),
        "livemode": False,
    }


def _malformed(message: str) -> V2ApiError:
    return V2ApiError(400, message, code="invalid_fields")


def _events(params: Params) -> list[dict[str, Any]]:
    events = params.get("events")
    if not isinstance(events, list) or not events:
        raise _malformed("`events` must be a non-empty list.")
    if len(events) > METER_EVENT_STREAM_MAX_EVENTS:
        raise _malformed(
            f"A request may hold at most {METER_EVENT_STREAM_MAX_EVENTS} events; "
            f"it held {len(events)}."
        )
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("event_name"), str):
            raise _malformed("Every event needs an `event_name`.")
        if not isinstance(event.get("payload"), dict):
            raise _malformed("Every event needs a `payload` object.")
    return events


def _timestamp(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ApiError(400, f"Invalid timestamp: {raw!r}", code="timestamp_invalid")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ApiError(400, f"Invalid timestamp: {raw!r}", code="timestamp_invalid") from exc
    if parsed.tzinfo is None:
        raise ApiError(400, f"Timestamp without a UTC offset: {raw!r}", code="timestamp_invalid")
    return int(parsed.timestamp())


def _ingest(store: Store, event: dict[str, Any]) -> str:
    """Validate and store one event; returns ``accepted``, ``duplicate`` or ``invalid``."""
    identifier = event.get("identifier") or new_id("mev")
    if seen_identifier(store, identifier):
        return "duplicate"
    payload = {str(k): str(v) for k, v in event["payload"].items()}
    try:
        timestamp = _timestamp(event.get("timestamp"))
        meter, customer_id, value, at = check_event(store, event["event_name"], payload, timestamp)
    except ApiError as exc:
        store.meter_event_stream_errors.append(
            {
                "identifier": identifier,
                "event_name": event["event_name"],
                "code": exc.code,
                "message": exc.message,
                "received_at": store.wall_now(),
            }
        )
        return "invalid"
    record_event(store, identifier, event["event_name"], meter, customer_id, value, at)
    return "accepted"


@route("POST", STREAM_PATH)
def create_stream_events(store: Store, params: Params) -> dict[str, Any]:
    """Accept up to 100 events (the token was checked by the server: ``session_error``)."""
    events = _events(params)
    counts = store.meter_event_stream_counts
    counts["requests"] = counts.get("requests", 0) + 1
    counts["events"] = counts.get("events", 0) + len(events)
    errors_before = len(store.meter_event_stream_errors)
    for event in events:
        verdict = _ingest(store, event)
        counts[verdict] = counts.get(verdict, 0) + 1
    event_destinations.report_errors(store, store.meter_event_stream_errors[errors_before:])
    return {}


def stream_stats(store: Store) -> dict[str, Any]:
    """The stream's figures for ``/_emulator/stats``."""
    counts = store.meter_event_stream_counts
    return {
        "meter_event_sessions_created": counts.get("sessions", 0),
        "meter_event_stream_requests": counts.get("requests", 0),
        "meter_event_stream_events": counts.get("events", 0),
        "meter_event_stream_accepted": counts.get("accepted", 0),
        "meter_event_stream_duplicates": counts.get("duplicate", 0),
        "meter_event_stream_errors": list(store.meter_event_stream_errors),
    }
