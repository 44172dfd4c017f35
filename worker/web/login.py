"""The login form and logout: a valid token opens a server-side session, logout closes it."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from worker.web.auth import COOKIE, cookie_session, role_of_token, set_cookie
from worker.web.common import TEMPLATES, local_path, services_of
from worker.web.csrf import FIELD, STALE_FORM, origin_problem, read_form, refused, tokens_match
from worker.web.sessions import new_secret, token_fingerprint

# Before there is a session, the login form's CSRF token is also kept in this cookie
# (double submit): a cross-site page can neither read it nor set the form field to match.
LOGIN_CSRF_COOKIE = "billing_login_csrf"


def _after_login(target: str) -> str:
    """Where the browser goes once logged in: the page it asked for, on this site."""
    target = local_path(target, "/")
    return "/" if target.startswith("/login") else target


def login_page(request: Request, status_code: int = 200, message: str = "") -> Response:
    """The login form, where a page refused (401) or a form failed; after logging in, the
    browser goes back to the page it asked for."""
    target = "/"
    if status_code == 401 and request.method == "GET":
        query = request.url.query
        target = _after_login(request.url.path + (f"?{query}" if query else ""))
    csrf_token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_secret()
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"message": message, "next": target, "csrf_token": csrf_token},
        status_code=status_code,
    )
    set_cookie(response, request, LOGIN_CSRF_COOKIE, csrf_token)
    return response


async def login_form(request: Request) -> Response:
    return login_page(request)


async def login(request: Request) -> Response:
    """A same-origin form with its CSRF token and a valid token: a new session (never the one
    the browser brought), its id in the cookie."""
    services = services_of(request)
    problem = origin_problem(request)
    if problem is not None:
        return refused(problem)
    form = await read_form(request)
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get(FIELD, "")):
        return login_page(request, 403, "That login form was stale (no CSRF token): try again.")
    token = form.get("token", "").strip()
    if role_of_token(token, services) is None:
        return login_page(request, 401, "That token is not valid.")
    previous = request.cookies.get(COOKIE, "")
    if previous:
        await run_in_threadpool(services.sessions.close, previous)
    session = await run_in_threadpool(services.sessions.open, token_fingerprint(token))
    response = RedirectResponse(_after_login(form.get("next", "/")), status_code=303)
    set_cookie(response, request, COOKIE, session.session_id, max_age=services.sessions.ttl_seconds)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


async def logout(request: Request) -> Response:
    """Closes the session (a same-origin form carrying its CSRF token) and drops the cookie."""
    problem = origin_problem(request)
    if problem is not None:
        return refused(problem)
    session = await cookie_session(request, services_of(request))
    if session is not None:
        form = await read_form(request)
        if not tokens_match(session.csrf_token, form.get(FIELD, "")):
            return refused(STALE_FORM)
        await run_in_threadpool(services_of(request).sessions.close, session.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
