"""Support pages (HTML, cookie login) and the same data as JSON under `/api/reconciliations`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from billing.reconciliation.match import Status
from billing.reconciliation.queries import (
    get_reconciliation,
    latest_price_check,
    line_json,
    list_reconciliations,
    reconciliation_counts,
    reconciliation_json,
    view_json,
)
from worker.web.auth import COOKIE, Role, bearer_role, cookie_role, role_of_token
from worker.web.common import TEMPLATES, json_error, services_of
from worker.web.services import WebServices

STATUSES = [status.value for status in Status]


def _filters(request: Request) -> dict[str, str | None]:
    return {
        name: (request.query_params.get(name) or "").strip() or None
        for name in ("status", "org", "period")
    }


def _list(services: WebServices, filters: dict[str, str | None]) -> dict[str, Any]:
    with Session(services.engine) as session:
        rows = list_reconciliations(
            session, status=filters["status"], org_id=filters["org"], period=filters["period"]
        )
        check = latest_price_check(session)
        return {
            "reconciliations": [reconciliation_json(row) for row in rows],
            "counts": reconciliation_counts(
                session, org_id=filters["org"], period=filters["period"]
            ),
            "price_check": None
            if check is None
            else {
                "book": check.book,
                "checked_at": check.checked_at.isoformat(),
                "verified_count": check.verified_count,
                "drift_count": check.drift_count,
                "findings": json.loads(check.findings_json),
            },
        }


def _one(services: WebServices, reconciliation_id: int) -> dict[str, Any] | None:
    with Session(services.engine) as session:
        view = get_reconciliation(session, reconciliation_id)
        return None if view is None else view_json(view)


def login_page(request: Request, status_code: int = 200, message: str = "") -> Response:
    return TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"message": message, "next": request.url.path if status_code == 401 else "/"},
        status_code=status_code,
    )


# --------------------------------------------------------------------------- HTML


async def login_form(request: Request) -> Response:
    return login_page(request)


async def login(request: Request) -> Response:
    services = services_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = (form.get("next") or ["/"])[0]
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    if role_of_token(token, services) is None:
        return login_page(request, 401, "That token is not valid.")
    response = RedirectResponse(target if target != "/login" else "/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=services.secure_cookies,
        max_age=12 * 3600,
    )
    return response


async def logout(_request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


async def home(_request: Request) -> Response:
    return RedirectResponse("/reconciliations", status_code=303)


async def reconciliations_page(request: Request) -> Response:
    services = services_of(request)
    role = cookie_role(request, services)
    if role is None:
        return login_page(request, 401, "Log in to see reconciliations.")
    filters = _filters(request)
    data = await run_in_threadpool(_list, services, filters)
    return TEMPLATES.TemplateResponse(
        request,
        "list.html",
        {**data, "filters": filters, "statuses": STATUSES, "role": role.value},
    )


async def reconciliation_page(request: Request) -> Response:
    services = services_of(request)
    role = cookie_role(request, services)
    if role is None:
        return login_page(request, 401, "Log in to see reconciliations.")
    data = await run_in_threadpool(_one, services, int(request.path_params["id"]))
    if data is None:
        return TEMPLATES.TemplateResponse(
            request, "missing.html", {"role": role.value}, status_code=404
        )
    for line in data["lines"]:
        line["trace_text"] = json.dumps(line["trace"], indent=2, sort_keys=True)
    return TEMPLATES.TemplateResponse(
        request,
        "detail.html",
        {"rec": data, "role": role.value, "is_admin": role is Role.ADMIN},
    )


# --------------------------------------------------------------------------- JSON


async def reconciliations_json(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    return JSONResponse(await run_in_threadpool(_list, services, _filters(request)))


async def reconciliation_json_one(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    data = await run_in_threadpool(_one, services, int(request.path_params["id"]))
    if data is None:
        return json_error(404, "no such reconciliation")
    return JSONResponse(data)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/reconciliations", reconciliations_page, methods=["GET"]),
    Route("/reconciliations/{id:int}", reconciliation_page, methods=["GET"]),
    Route("/api/reconciliations", reconciliations_json, methods=["GET"]),
    Route("/api/reconciliations/{id:int}", reconciliation_json_one, methods=["GET"]),
]

__all__ = ["line_json", "routes"]
