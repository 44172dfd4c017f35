"""Token authentication: support reads, admin also acts; tokens compared in constant time."""

from __future__ import annotations

import hmac
from enum import StrEnum

from starlette.requests import Request

from worker.web.services import WebServices

COOKIE = "billing_session"


class Role(StrEnum):
    SUPPORT = "support"
    ADMIN = "admin"


def role_of_token(token: str, services: WebServices) -> Role | None:
    """The role a token grants; every configured token is compared, in constant time."""
    if not token:
        return None
    given = token.encode()
    admin = False
    support = False
    for candidate in services.admin_tokens:
        admin |= hmac.compare_digest(given, candidate.encode())
    for candidate in services.support_tokens:
        support |= hmac.compare_digest(given, candidate.encode())
    if admin:
        return Role.ADMIN
    return Role.SUPPORT if support else None


def bearer_role(request: Request, services: WebServices) -> Role | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return role_of_token(token.strip(), services)


def cookie_role(request: Request, services: WebServices) -> Role | None:
    return role_of_token(request.cookies.get(COOKIE, ""), services)
