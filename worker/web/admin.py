"""Admin actions: re-sync an org's seats or usage by enqueueing the task by its fixed name."""

from __future__ import annotations

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.web.auth import CookieLogin, Role, bearer_role, cookie_login
from worker.web.common import TEMPLATES, json_error, local_path, services_of
from worker.web.csrf import FIELD, STALE_FORM, origin_problem, read_form, refused, tokens_match
from worker.web.login import login_page
from worker.web.services import PUSH_USAGE, SYNC_SEATS

TASKS = {"seats": SYNC_SEATS, "usage": PUSH_USAGE}
log = structlog.get_logger(__name__)


async def _resync(request: Request, org_id: str, what: str) -> tuple[int, str]:
    task = TASKS.get(what)
    if task is None:
        return 422, f"what: must be one of {', '.join(TASKS)}"
    if not org_id:
        return 422, "org: required"
    try:
        message = await run_in_threadpool(services_of(request).dispatcher.send, task, [org_id])
    except LookupError as exc:
        return 503, str(exc)
    return 202, message


async def resync_api(request: Request) -> Response:
    role = bearer_role(request, services_of(request))
    if role is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    if role is not Role.ADMIN:
        return json_error(403, "re-sync needs an admin token")
    code, message = await _resync(
        request, request.path_params["org_id"], request.path_params["what"]
    )
    if code != 202:
        return json_error(code, message)
    return JSONResponse({"accepted": True, "detail": message}, status_code=202)


async def resync_form(request: Request) -> Response:
    """The re-sync buttons of a reconciliation page: same origin, the session's CSRF token,
    an admin's session."""
    problem = origin_problem(request)
    if problem is not None:
        return refused(problem)
    login = await cookie_login(request, services_of(request))
    if login is None:
        return login_page(request, 401, "Log in as an admin to re-sync.")
    form = await read_form(request)
    if not tokens_match(login.session.csrf_token, form.get(FIELD, "")):
        return refused(STALE_FORM)
    if login.role is not Role.ADMIN:
        return PlainTextResponse("403 Forbidden: re-sync needs an admin token", status_code=403)
    back = local_path(form.get("back", ""), "/reconciliations")
    org_id, what = form.get("org", ""), form.get("what", "")
    try:
        code, message = await _resync(request, org_id, what)
    except Exception as exc:
        log.exception("web.resync_failed", org_id=org_id, what=what)
        code, message = 502, f"{type(exc).__name__}: {exc}"
    if code != 202:
        action = f"Re-sync of {what or '?'} for {org_id or '?'}"
        return _failed(request, login, code, action, message=message, back=back)
    return RedirectResponse(back, status_code=303)


def _failed(
    request: Request, login: CookieLogin, code: int, action: str, *, message: str, back: str
) -> Response:
    """The page an admin sees when an action failed: what failed, why, and what to do."""
    advice = (
        "Nothing was changed by this attempt. Check the worker and Stripe status, then try "
        "again; the re-sync is safe to repeat."
        if code >= 500
        else "Correct the request and try again."
    )
    return TEMPLATES.TemplateResponse(
        request,
        "failed.html",
        {
            "title": f"{action} failed",
            "message": message,
            "advice": advice,
            "back": back,
            "role": login.role.value,
            "is_admin": True,
            "csrf_token": login.session.csrf_token,
        },
        status_code=code,
    )


routes = [
    Route("/api/admin/orgs/{org_id}/resync/{what}", resync_api, methods=["POST"]),
    Route("/admin/resync", resync_form, methods=["POST"]),
]
