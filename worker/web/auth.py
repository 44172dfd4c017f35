"""Who is asking: a bearer token (the API) or a login session's cookie (the pages), and its role."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from worker.web.common import services_of
from worker.web.services import WebServices
from worker.web.sessions import LoginSession, token_fingerprint

COOKIE = "billing_session"  # holds a session id, never a token


class Role(StrEnum):
    SUPPORT = "support"
    ADMIN = "admin"


def _role(given: str, services: WebServices, form: Callable[[str], str]) -> Role | None:
    """Every configured token is compared (as `form` of it), in constant time."""
    if not given:
        return None

    def matches(candidates: Iterable[str]) -> bool:
        found = False
        for candidate in candidates:
            found |= hmac.compare_digest(given.encode(), form(candidate).encode())
        return found

    admin = matches(services.admin_tokens)
    support = matches(services.support_tokens)
    if admin:
        return Role.ADMIN
    return Role.SUPPORT if support else None


def role_of_token(token: str, services: WebServices) -> Role | None:
    """The role a token grants."""
    return _role(token, services, str)


def bearer_role(request: Request, services: WebServices) -> Role | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return role_of_token(token.strip(), services)


@dataclass(frozen=True)
class CookieLogin:
    session: LoginSession
    role: Role


async def cookie_session(request: Request, services: WebServices) -> LoginSession | None:
    """The unexpired session the request's cookie names, whatever its token has become."""
    session_id = request.cookies.get(COOKIE, "")
    if not session_id:
        return None
    return await run_in_threadpool(services.sessions.find, session_id)


async def cookie_login(request: Request, services: WebServices) -> CookieLogin | None:
    """The request's session and the role its token grants today (None: log in again)."""
    session = await cookie_session(request, services)
    if session is None:
        return None
    role = _role(session.token_fingerprint, services, token_fingerprint)
    return None if role is None else CookieLogin(session, role)


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    """HttpOnly, SameSite=Lax, and Secure as configured (None: when served over https)."""
    secure = services_of(request).secure_cookies
    if secure is None:
        secure = request.url.scheme == "https"
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=secure
    )
