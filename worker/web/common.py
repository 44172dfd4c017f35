"""Helpers shared by the web routes: the services on the app, JSON errors, local redirects."""

from __future__ import annotations

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


def json_error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code)


def local_path(target: str, default: str) -> str:
    """`target` when it is a path of this site, else `default` (never another host: `//x` and
    `/\\x` are, to a browser)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
