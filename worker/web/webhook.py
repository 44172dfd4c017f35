"""`POST /stripe/webhook`: verify the raw body, store the event once, then hand it on."""

from __future__ import annotations

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.reconciliation.inbox import record_event
from billing.stripe_gateway.webhooks import WebhookEventError, WebhookSignatureError, verify_webhook
from worker.web.bodies import BodyTooLarge, read_limited
from worker.web.common import json_error, services_of
from worker.web.services import HANDLE_EVENT

log = structlog.get_logger(__name__)

# Stripe's events are a few KiB (an invoice with hundreds of lines stays well under this). The
# endpoint is public: a bigger body is refused before it is read, let alone verified.
MAX_BODY_BYTES = 1024 * 1024


async def stripe_webhook(request: Request) -> Response:
    services = services_of(request)
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)  # the exact bytes Stripe signed
    except BodyTooLarge as exc:
        log.warning("webhook.rejected", reason=str(exc))
        return json_error(413, str(exc))
    try:
        event = verify_webhook(
            raw,
            request.headers.get("stripe-signature"),
            services.webhook_secret,
            livemode=services.stripe_livemode,
        )
    except WebhookSignatureError as exc:
        log.warning("webhook.rejected", reason=str(exc))
        return json_error(400, f"invalid signature: {exc}")
    except WebhookEventError as exc:
        log.warning("webhook.rejected", reason=str(exc))
        return json_error(400, f"invalid event: {exc}")
    is_new = await run_in_threadpool(record_event, services.engine, event, services.clock())
    if not is_new:
        log.info("webhook.duplicate", stripe_event_id=event.stripe_event_id, type=event.type)
        return JSONResponse({"received": True, "duplicate": True})
    # The inbox row is committed: a crash from here on leaves it for the sweep, never lost.
    await run_in_threadpool(services.dispatcher.send, HANDLE_EVENT, [event.stripe_event_id])
    return JSONResponse({"received": True, "duplicate": False})


routes = [Route("/stripe/webhook", stripe_webhook, methods=["POST"])]
