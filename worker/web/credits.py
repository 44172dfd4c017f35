"""Credits on the support API: an org's credit ledger for support, a goodwill grant for admins.

`GET /api/orgs/{org}/credits` (any token) answers `billing credit list --json`'s object;
`POST /api/admin/orgs/{org}/credits` (an admin token) takes `{"amount", "reason",
"expires_at"?, "id"?}` and grants it now through billing.ledger.goodwill, as
`billing credit grant` does: 201 with the credit, 404 for an unknown org, 409 for an id already
used, 422 for any other refusal (each naming its field), nothing stored on a refusal.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.core.periods import PeriodError, parse_instant
from billing.ledger.credit_ledger import credit_ledger
from billing.ledger.goodwill import GoodwillGrant, GoodwillRefusal, grant_goodwill
from models.db import unit_of_work
from models.ledger import Org
from worker.web.auth import Role, bearer_role
from worker.web.bodies import read_limited
from worker.web.common import json_error, services_of
from worker.web.services import WebServices

MAX_BODY_BYTES = 4_096
_FIELDS = {"amount", "reason", "expires_at", "id"}


def _ledger(services: WebServices, org_id: str) -> dict[str, Any] | None:
    with Session(services.engine) as session:
        if session.get(Org, org_id) is None:
            return None
        return credit_ledger(session.connection(), org_id, services.clock()).as_json()


async def credits_json(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    org_id = request.path_params["org_id"]
    data = await run_in_threadpool(_ledger, services, org_id)
    if data is None:
        return json_error(404, f"unknown org {org_id!r}")
    return JSONResponse(data)


def _grant_of(org_id: str, raw: bytes) -> GoodwillGrant | GoodwillRefusal:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return GoodwillRefusal("body", "must be a JSON object")
    if not isinstance(body, dict):
        return GoodwillRefusal("body", "must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return GoodwillRefusal(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    expires = body.get("expires_at")
    expires_at = None
    if expires is not None:
        try:
            expires_at = parse_instant(expires) if isinstance(expires, str) else None
        except PeriodError as exc:
            return GoodwillRefusal("expires_at", str(exc))
        if expires_at is None:
            return GoodwillRefusal("expires_at", "must be an ISO 8601 string")
    credit_id = body.get("id")
    if credit_id is not None and not isinstance(credit_id, str):
        return GoodwillRefusal("id", "must be a string")
    return GoodwillGrant(org_id, body.get("amount"), body.get("reason"), expires_at, credit_id)


def _grant(services: WebServices, grant: GoodwillGrant) -> dict[str, Any] | list[GoodwillRefusal]:
    with unit_of_work(services.engine) as session:
        if session.get(Org, grant.org_id) is None:
            return [GoodwillRefusal("org", f"unknown org {grant.org_id!r}")]
        return grant_goodwill(session, grant, services.clock(), default_book=services.default_book)


async def grant_credit(request: Request) -> Response:
    services = services_of(request)
    role = bearer_role(request, services)
    if role is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    if role is not Role.ADMIN:
        return json_error(403, "granting a credit needs an admin token")
    grant = _grant_of(request.path_params["org_id"], await read_limited(request, MAX_BODY_BYTES))
    granted = (
        [grant]
        if isinstance(grant, GoodwillRefusal)
        else await run_in_threadpool(_grant, services, grant)
    )
    if not isinstance(granted, list):
        return JSONResponse(granted, status_code=201)
    status = (
        404
        if granted[0].field == "org" and "unknown org" in granted[0].problem
        else 409
        if any(refusal.conflict for refusal in granted)
        else 422
    )
    errors = [{"field": refusal.field, "message": refusal.problem} for refusal in granted]
    return json_error(status, "credit refused; nothing stored", errors=errors)


routes = [
    Route("/api/orgs/{org_id}/credits", credits_json, methods=["GET"]),
    Route("/api/admin/orgs/{org_id}/credits", grant_credit, methods=["POST"]),
]
