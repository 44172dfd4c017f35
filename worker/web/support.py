"""Support pages (HTML, for a login session) and the same data as JSON (`/api/reconciliations`)."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from billing.reconciliation.match import Status
from billing.reconciliation.queries import (
    MAX_ROW_ID,
    get_reconciliation,
    latest_price_check,
    line_json,
    list_reconciliations,
    reconciliation_counts,
    reconciliation_json,
    view_json,
)
from worker.web.auth import CookieLogin, Role, bearer_role, cookie_login
from worker.web.common import TEMPLATES, json_error, services_of
from worker.web.login import login_page
from worker.web.services import WebServices

STATUSES = [status.value for status in Status]


def _filters(request: Request) -> dict[str, str | None]:
    return {
        name: (request.query_params.get(name) or "").strip() or None
        for name in ("status", "org", "period")
    }


def _filter_problem(filters: dict[str, str | None]) -> str | None:
    """Why a filter cannot be looked up, or None: a NUL matches no stored text, and PostgreSQL
    refuses it in a query (a 500, before this check)."""
    for name, value in filters.items():
        if value is not None and "\x00" in value:
            return f"{name}: must not contain NUL characters"
    return None


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


def _path_id(request: Request) -> int | None:
    """The path's `{id}` as a row id, or None when it names none. Read here, not by an `int`
    route convertor, which answers 500 past Python's 4,300-digit limit for int()."""
    text: str = request.path_params["id"]
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ROW_ID)):
        return int(text)
    return None


def _one(services: WebServices, reconciliation_id: int | None) -> dict[str, Any] | None:
    if reconciliation_id is None:
        return None
    with Session(services.engine) as session:
        view = get_reconciliation(session, reconciliation_id)
        return None if view is None else view_json(view)


# --------------------------------------------------------------------------- HTML


def _page_context(login: CookieLogin) -> dict[str, Any]:
    """What every signed-in page shows: the role, and the CSRF token its forms post back."""
    return {
        "role": login.role.value,
        "is_admin": login.role is Role.ADMIN,
        "csrf_token": login.session.csrf_token,
    }


async def home(_request: Request) -> Response:
    return RedirectResponse("/reconciliations", status_code=303)


async def reconciliations_page(request: Request) -> Response:
    services = services_of(request)
    login = await cookie_login(request, services)
    if login is None:
        return login_page(request, 401, "Log in to see reconciliations.")
    filters = _filters(request)
    if problem := _filter_problem(filters):
        return PlainTextResponse(f"400 Bad Request: {problem}", status_code=400)
    data = await run_in_threadpool(_list, services, filters)
    return TEMPLATES.TemplateResponse(
        request,
        "list.html",
        {**data, "filters": filters, "statuses": STATUSES, **_page_context(login)},
    )


async def reconciliation_page(request: Request) -> Response:
    services = services_of(request)
    login = await cookie_login(request, services)
    if login is None:
        return login_page(request, 401, "Log in to see reconciliations.")
    data = await run_in_threadpool(_one, services, _path_id(request))
    if data is None:
        return TEMPLATES.TemplateResponse(
            request, "missing.html", _page_context(login), status_code=404
        )
    for line in data["lines"]:
        line["trace_text"] = json.dumps(line["trace"], indent=2, sort_keys=True)
    return TEMPLATES.TemplateResponse(request, "detail.html", {"rec": data, **_page_context(login)})


# --------------------------------------------------------------------------- JSON


async def reconciliations_json(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    filters = _filters(request)
    if problem := _filter_problem(filters):
        return json_error(400, problem)
    return JSONResponse(await run_in_threadpool(_list, services, filters))


async def reconciliation_json_one(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    data = await run_in_threadpool(_one, services, _path_id(request))
    if data is None:
        return json_error(404, "no such reconciliation")
    return JSONResponse(data)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/reconciliations", reconciliations_page, methods=["GET"]),
    Route("/reconciliations/{id}", reconciliation_page, methods=["GET"]),
    Route("/api/reconciliations", reconciliations_json, methods=["GET"]),
    Route("/api/reconciliations/{id}", reconciliation_json_one, methods=["GET"]),
]

__all__ = ["line_json", "routes"]
