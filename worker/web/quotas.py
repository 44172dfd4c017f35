"""The quota check over HTTP: `POST /api/quotas/check`, for the product before it starts a task.

`make_routes` builds the handler without authentication (it validates the body and calls
`QuotaService.check`, blocking Redis and SQL work, in a worker thread); the module's `routes`,
which `worker/web/app.py` mounts, first require an admin bearer token, as the usage ingestion
endpoint does: a consuming check counts usage. 401 without a token, 403 with a support token.

Request: `{"org": ID, "quota": NAME, "amount": N}` (`amount` optional, default 1; optional
`"consume": false` asks without counting). Answers 200 with
`{"allowed", "limit", "used", "remaining", "mode"}` whether the check was allowed or denied
(`limit`/`remaining` are null when unlimited); 400 for a body that is not a JSON object (413 over
MAX_BODY_BYTES); 404 for an unknown org; 422 for a bad or unknown field. Errors are
`{"error": TEXT, "field": NAME}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeAlias

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.quotas.service import QuotaDecision, QuotaRequestError, QuotaService
from worker import clock
from worker.composition import quota_service
from worker.web.auth import Role, bearer_role
from worker.web.bodies import BodyTooLarge, read_limited
from worker.web.common import json_error, services_of

# Returns the refusal to send, or None to let the request through.
Authorize: TypeAlias = Callable[[Request], Response | None]
MAX_BODY_BYTES = 16 * 1024  # a check is a few short fields


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def decision_body(decision: QuotaDecision) -> dict[str, object]:
    return {
        "allowed": decision.allowed,
        "limit": decision.limit,
        "used": decision.used,
        "remaining": decision.remaining,
        "mode": decision.mode.value,
    }


def make_routes(
    service: Callable[[], QuotaService], *, authorize: Authorize | None = None
) -> list[Route]:
    """The quota routes, calling the service `service()` returns (built on first request)."""

    async def check_quota(request: Request) -> Response:
        if authorize is not None and (refusal := authorize(request)) is not None:
            return refusal
        try:
            body = json.loads(await read_limited(request, MAX_BODY_BYTES))
        except BodyTooLarge as exc:
            return _error(413, str(exc))
        except (ValueError, RecursionError):  # not JSON, or arrays nested thousands deep
            return _error(400, "the body must be a JSON object")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        for field in ("org", "quota"):
            if not isinstance(body.get(field), str) or not body[field]:
                return _error(422, f"{field} must be a non-empty string", field)
        amount = body.get("amount", 1)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            return _error(422, f"amount must be a positive integer, got {amount!r}", "amount")
        consume = body.get("consume", True)
        if not isinstance(consume, bool):
            return _error(422, "consume must be true or false", "consume")
        quota_service = service()
        try:
            decision = await run_in_threadpool(
                quota_service.check,
                body["org"],
                body["quota"],
                clock.now(),
                amount=amount,
                consume=consume,
            )
        except QuotaRequestError as exc:
            return _error(404 if exc.field == "org" else 422, str(exc), exc.field)
        return JSONResponse(decision_body(decision))

    return [Route("/api/quotas/check", check_quota, methods=["POST"])]


def require_admin_token(request: Request) -> Response | None:
    """The web app's bearer-token check (`worker/web/auth.py`): admin tokens only."""
    role = bearer_role(request, services_of(request))
    if role is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    if role is not Role.ADMIN:
        return json_error(403, "quota checks count usage: an admin token is required")
    return None


routes: list[Route] = make_routes(quota_service, authorize=require_admin_token)
