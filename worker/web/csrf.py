"""Cross-site request forgery checks of the cookie-authenticated forms (origin, form token)."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from worker.web.bodies import read_limited

# The forms hold a few short fields; a bigger body is refused before it is read whole.
MAX_FORM_BYTES = 64 * 1024
FIELD = "csrf_token"  # the hidden input of every form
STALE_FORM = "the form's CSRF token is missing or stale: reload the page and submit it again"


def origin_problem(request: Request) -> str | None:
    """Why a POST does not come from a page of this site, or None when it does: its `Origin`
    (or else its `Referer`) must name the host and port the request was sent to (`Host`)."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if not source or source == "null":
        return "the request carries no Origin or Referer header"
    parts = urlsplit(source)
    host = request.headers.get("host", "").lower()
    if not host or parts.netloc.lower() != host:
        return f"it was sent from {parts.scheme}://{parts.netloc}, not from this site ({host})"
    return None


def tokens_match(expected: str, given: str) -> bool:
    """Constant-time comparison; an empty expected token matches nothing."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def refused(problem: str) -> Response:
    return PlainTextResponse(f"403 Forbidden: cross-site request refused: {problem}", 403)


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body as {name: first value}; BodyTooLarge (413,
    worker/web/bodies.py) past MAX_FORM_BYTES."""
    body = await read_limited(request, MAX_FORM_BYTES)
    form = parse_qs(body.decode("utf-8", "replace"))
    return {name: values[0] for name, values in form.items()}
