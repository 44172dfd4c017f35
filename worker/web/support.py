"""Support pages (HTML, for a login session) and the same data as JSON (`/api/reconciliations`).

The list searches (`q`: an invoice id or number, an org id or its prefix, a customer id) and
pages (`before`, 200 rows a page); a malformed filter is a 400 naming it. A reconciliation's
page explains each line in plain language (billing.reconciliation.explain) and shows the stored
trace as indented text.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from billing.pricing.book_cache import BookCache
from billing.reconciliation.explain import explain_invoice
from billing.reconciliation.explain_format import readable_trace
from billing.reconciliation.match import Status
from billing.reconciliation.org_summary import explain_context
from billing.reconciliation.queries import (
    MAX_ROW_ID,
    FilterError,
    Search,
    get_reconciliation,
    invoice_facts,
    latest_price_check,
    line_json,
    parse_search,
    reconciliation_counts,
    reconciliation_json,
    search_reconciliations,
    view_json,
)
from worker.web.auth import CookieLogin, Role, bearer_role, cookie_login
from worker.web.common import TEMPLATES, json_error, services_of
from worker.web.login import login_page
from worker.web.services import WebServices

STATUSES = [status.value for status in Status]


BOOKS = BookCache()  # the bundled price books, for the meters' units


def _list(services: WebServices, search: Search) -> dict[str, Any]:
    with Session(services.engine) as session:
        page = search_reconciliations(session, search)
        check = latest_price_check(session)
        return {
            "reconciliations": [reconciliation_json(row) for row in page.rows],
            "next_before": page.next_before_id,
            "counts": reconciliation_counts(session, org_id=search.org_id, period=search.period),
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
        if view is None:
            return None
        data = view_json(view)
        context = explain_context(
            session, view.reconciliation, data["lines"], services.clock(), BOOKS
        )
        explanations = explain_invoice(data["lines"], context)
        for line, explained in zip(data["lines"], explanations, strict=True):
            line["explained"] = {
                "title": explained.title,
                "summary": explained.summary,
                "steps": list(explained.steps),
                "stripe": list(explained.stripe),
                "rounding": explained.rounding,
                "verdict": explained.verdict,
            }
        facts = invoice_facts(session, [view.reconciliation.stripe_invoice_id]).get(
            view.reconciliation.stripe_invoice_id
        )
        data["number"] = facts.number if facts else None
        data["hosted_invoice_url"] = facts.hosted_invoice_url if facts else None
        return data


# --------------------------------------------------------------------------- HTML


def page_context(login: CookieLogin) -> dict[str, Any]:
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
    filters = {k: request.query_params.get(k, "") for k in ("q", "status", "org", "period")}
    context = {"filters": filters, "statuses": STATUSES, **page_context(login)}
    try:
        search = parse_search(request.query_params)
    except FilterError as exc:
        return TEMPLATES.TemplateResponse(
            request,
            "list.html",
            {**context, "error": str(exc), "counts": {}, "reconciliations": []},
            status_code=400,
        )
    data = await run_in_threadpool(_list, services, search)
    return TEMPLATES.TemplateResponse(request, "list.html", {**data, **context})


async def reconciliation_page(request: Request) -> Response:
    services = services_of(request)
    login = await cookie_login(request, services)
    if login is None:
        return login_page(request, 401, "Log in to see reconciliations.")
    data = await run_in_threadpool(_one, services, _path_id(request))
    if data is None:
        return TEMPLATES.TemplateResponse(
            request,
            "missing.html",
            {**page_context(login), "what": "reconciliation"},
            status_code=404,
        )
    for line in data["lines"]:
        line["trace_text"] = readable_trace(line["trace"])
    return TEMPLATES.TemplateResponse(request, "detail.html", {"rec": data, **page_context(login)})


# --------------------------------------------------------------------------- JSON


async def reconciliations_json(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    try:
        search = parse_search(request.query_params)
    except FilterError as exc:
        return json_error(400, str(exc), field=exc.field)
    return JSONResponse(await run_in_threadpool(_list, services, search))


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
