"""Request bodies read up to a limit: refused on `Content-Length`, or while streaming, unread."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


class BodyTooLarge(ValueError):
    """A request body over its endpoint's limit (the rest of it is never read)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"the body is over {limit_bytes:,} bytes")
        self.limit_bytes = limit_bytes


def declared_length(request: Request) -> int | None:
    """The body size `Content-Length` announces, or None when it says nothing usable (a
    chunked body: the stream is then counted as it arrives)."""
    declared = request.headers.get("content-length", "").strip()
    if not declared.isascii() or not declared.isdigit():
        return None
    digits = declared.lstrip("0") or "0"
    # Past 18 digits it is over any limit (and int() refuses 5,000 digits).
    return int(digits) if len(digits) <= 18 else 10**18


async def read_limited(request: Request, limit_bytes: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as its `Content-Length` or the bytes received so
    far pass `limit_bytes`: a client cannot make the process hold more than the limit."""
    declared = declared_length(request)
    if declared is not None and declared > limit_bytes:
        raise BodyTooLarge(limit_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise BodyTooLarge(limit_bytes)
    return bytes(body)


async def body_too_large(_request: Request, exc: Exception) -> Response:
    """The app's handler of a BodyTooLarge its endpoint leaves to it (the HTML forms)."""
    return PlainTextResponse(f"413 Content Too Large: {exc}", 413)
