"""Plan changes and cancellation on the support console (SPEC §10), for admins.

`POST /api/admin/orgs/{org_id}/subscription` (an admin token) takes `{"action": "change",
"plan", "interval"?, "book"?, "seats"?}` or `{"action": "cancel", "when": "term_end" | "now"}`
and answers 201 with the org's plan ledger and what is scheduled, 404 for an unknown org, 422
naming the field otherwise; nothing is stored on a refusal. `POST /admin/orgs/{org_id}/
subscription` is the org page's form: same origin, the session's CSRF token, an admin's session,
and, to cancel, the org id typed again (the confirmation a person expects before ending a
customer's subscription). Both store the same event as `billing org change|cancel`
(worker/org_changes.py); beat's lifecycle job carries it to Stripe within the minute.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.org_changes import OrgChange, cancel_event, change_event, submit
from worker.web.auth import Role, bearer_role, cookie_login
from worker.web.bodies import read_limited
from worker.web.common import json_error, services_of
from worker.web.csrf import FIELD, STALE_FORM, origin_problem, read_form, refused, tokens_match
from worker.web.login import login_page
from worker.web.services import WebServices

MAX_BODY_BYTES = 4_096
_ACTIONS = ("change", "cancel")


def _event(org_id: str, fields: dict[str, Any], services: WebServices) -> dict[str, Any] | str:
    """The event the fields ask for, or what is wrong with them (`field: problem`)."""
    action = fields.get("action")
    now = services.clock()
    if action == "cancel":
        when = fields.get("when") or "term_end"
        if when not in ("term_end", "now"):
            return "when: must be 'term_end' or 'now'"
        return cancel_event(org_id, now, now=when == "now")
    if action != "change":
        return f"action: must be one of {', '.join(_ACTIONS)}"
    plan = fields.get("plan")
    if not isinstance(plan, str) or not plan:
        return "plan: required"
    seats = fields.get("seats")
    if isinstance(seats, str) and seats.strip():
        if not seats.strip().isdigit():
            return "seats: must be a whole number"
        seats = int(seats)
    elif seats in ("", None):
        seats = None
    if seats is not None and (isinstance(seats, bool) or not isinstance(seats, int)):
        return "seats: must be a whole number"
    interval = fields.get("interval") or None
    book = fields.get("book") or None
    if (interval is not None and not isinstance(interval, str)) or (
        book is not None and not isinstance(book, str)
    ):
        return "interval, book: must be strings"
    return change_event(org_id, plan, now, interval=interval, book=book, seats=seats)


def _submit(services: WebServices, event: dict[str, Any]) -> OrgChange:
    return submit(services.engine, services.default_book, event, services.clock())


def _unknown(change: OrgChange) -> bool:
    return any(e.field == "org" and "unknown org" in e.problem for e in change.errors)


async def subscription_api(request: Request) -> Response:
    services = services_of(request)
    role = bearer_role(request, services)
    if role is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    if role is not Role.ADMIN:
        return json_error(403, "changing a subscription needs an admin token")
    try:
        body = json.loads(await read_limited(request, MAX_BODY_BYTES))
    except (ValueError, UnicodeDecodeError):
        return json_error(422, "body: must be a JSON object")
    if not isinstance(body, dict):
        return json_error(422, "body: must be a JSON object")
    org_id = request.path_params["org_id"]
    event = _event(org_id, body, services)
    if isinstance(event, str):
        return json_error(422, event, field=event.split(":", 1)[0])
    change = await run_in_threadpool(_submit, services, event)
    if change.errors:
        error = change.errors[0]
        code = 404 if _unknown(change) else 422
        return json_error(code, f"{error.field}: {error.problem}", field=error.field)
    return JSONResponse(change.as_json(), status_code=201)


async def subscription_form(request: Request) -> Response:
    problem = origin_problem(request)
    if problem is not None:
        return refused(problem)
    services = services_of(request)
    login = await cookie_login(request, services)
    if login is None:
        return login_page(request, 401, "Log in as an admin to change a subscription.")
    form = await read_form(request)
    if not tokens_match(login.session.csrf_token, form.get(FIELD, "")):
        return refused(STALE_FORM)
    if login.role is not Role.ADMIN:
        return PlainTextResponse("403 Forbidden: needs an admin session", status_code=403)
    org_id = request.path_params["org_id"]
    if form.get("action") == "cancel" and form.get("confirm", "").strip() != org_id:
        return PlainTextResponse(
            f"422 Unprocessable Entity: confirm: type the org id {org_id!r} to cancel it",
            status_code=422,
        )
    event = _event(org_id, dict(form), services)
    if isinstance(event, str):
        return PlainTextResponse(f"422 Unprocessable Entity: {event}", status_code=422)
    change = await run_in_threadpool(_submit, services, event)
    if change.errors:
        error = change.errors[0]
        code = 404 if _unknown(change) else 422
        return PlainTextResponse(f"{code}: {error.field}: {error.problem}", status_code=code)
    return RedirectResponse(f"/orgs/{org_id}", status_code=303)


routes = [
    Route("/api/admin/orgs/{org_id}/subscription", subscription_api, methods=["POST"]),
    Route("/admin/orgs/{org_id}/subscription", subscription_form, methods=["POST"]),
]
