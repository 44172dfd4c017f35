"""`POST /stripe/thin-events`: Stripe's thin (v2) events from an event destination.

Only meter error reports are taken (billing.usage.meter_errors): the notification is verified
against the raw body, the full event fetched from Stripe and stored once per event id. A bad
signature is a 400 and nothing is stored; a failed read of Stripe is a 502, and Stripe delivers
the event again.
"""

from __future__ import annotations

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.core.errors import BillingError
from billing.stripe_gateway.webhooks import WebhookEventError, WebhookSignatureError
from worker.web.bodies import BodyTooLarge, read_limited
from worker.web.common import json_error, services_of
from worker.web.webhook import MAX_BODY_BYTES

log = structlog.get_logger(__name__)


async def stripe_thin_event(request: Request) -> Response:
    services = services_of(request)
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)  # the exact bytes Stripe signed
    except BodyTooLarge as exc:
        log.warning("thin_event.rejected", reason=str(exc))
        return json_error(413, str(exc))
    intake = services.meter_errors
    if intake is None:
        log.warning("thin_event.rejected", reason="no event destination secret configured")
        return json_error(400, "invalid signature: no event destination secret configured")
    signature = request.headers.get("stripe-signature")
    try:
        result = await run_in_threadpool(intake.receive, raw, signature, services.clock())
    except WebhookSignatureError as exc:
        log.warning("thin_event.rejected", reason=str(exc))
        return json_error(400, f"invalid signature: {exc}")
    except WebhookEventError as exc:
        log.warning("thin_event.rejected", reason=str(exc))
        return json_error(400, f"invalid event: {exc}")
    except BillingError as exc:
        log.warning("thin_event.fetch_failed", reason=str(exc))
        return json_error(502, f"could not read the event from Stripe: {exc}")
    log.info(
        "thin_event.received",
        stripe_event_id=result.stripe_event_id,
        type=result.type,
        outcome=result.outcome,
        rows=result.rows,
        linked=result.linked,
    )
    return JSONResponse(
        {
            "received": True,
            "duplicate": result.outcome == "duplicate",
            "outcome": result.outcome,
            "rows": result.rows,
            "linked": result.linked,
        }
    )


routes = [Route("/stripe/thin-events", stripe_thin_event, methods=["POST"])]
