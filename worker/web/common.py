"""Helpers shared by the web routes: the services on the app, JSON errors, local redirects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.templating import Jinja2Templates

from worker.web.services import WebServices

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def services_of(request: Request) -> WebServices:
    services: WebServices = request.app.state.services
    return services


class EscapedJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error that echoes a lone surrogate the
    client sent (JSON allows one as an escape, UTF-8 cannot encode it) is still sent, not a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def json_error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return EscapedJSONResponse({"error": message, **extra}, status_code=status_code)


def local_path(target: str, default: str) -> str:
    """`target` when it is a path of this site, else `default` (never another host: `//x` and
    `/\\x` are, to a browser)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
