"""`/status` (an admin's login session) and `/api/status` (an admin token): the worker at a
glance, the same object as `billing status --json`."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.status_view import status_json
from worker.web.auth import Role, bearer_role, cookie_login
from worker.web.common import TEMPLATES, json_error, services_of
from worker.web.login import login_page

ADMIN_ONLY = "the status view needs an admin token"


async def status_page(request: Request) -> Response:
    services = services_of(request)
    login = await cookie_login(request, services)
    if login is None:
        return login_page(request, 401, "Log in as an admin to see the worker's status.")
    if login.role is not Role.ADMIN:
        return Response(f"403 Forbidden: {ADMIN_ONLY}", status_code=403)
    data = await run_in_threadpool(status_json, services.engine, services.clock())
    context = {
        "status": data,
        "role": login.role.value,
        "is_admin": True,
        "csrf_token": login.session.csrf_token,
    }
    return TEMPLATES.TemplateResponse(request, "status.html", context)


async def status_api(request: Request) -> Response:
    services = services_of(request)
    role = bearer_role(request, services)
    if role is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    if role is not Role.ADMIN:
        return json_error(403, ADMIN_ONLY)
    return JSONResponse(await run_in_threadpool(status_json, services.engine, services.clock()))


routes = [
    Route("/status", status_page, methods=["GET"]),
    Route("/api/status", status_api, methods=["GET"]),
]
