"""Admin actions: re-sync an org's seats or usage by enqueueing the task by its fixed name."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.web.auth import Role, bearer_role, cookie_login
from worker.web.common import json_error, local_path, services_of
from worker.web.csrf import FIELD, STALE_FORM, origin_problem, read_form, refused, tokens_match
from worker.web.login import login_page
from worker.web.services import PUSH_USAGE, SYNC_SEATS

TASKS = {"seats": SYNC_SEATS, "usage": PUSH_USAGE}


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
    code, message = await _resync(request, form.get("org", ""), form.get("what", ""))
    if code != 202:
        return PlainTextResponse(f"{code}: {message}", status_code=code)  # with a Content-Type
    return RedirectResponse(back, status_code=303)


routes = [
    Route("/api/admin/orgs/{org_id}/resync/{what}", resync_api, methods=["POST"]),
    Route("/admin/resync", resync_form, methods=["POST"]),
]
