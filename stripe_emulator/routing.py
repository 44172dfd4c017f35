"""The route table: HTTP method plus path template mapped to a handler, filled by decorators."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stripe_emulator.forms import Params
from stripe_emulator.store import Store

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. "/v1/customers/{id}" — also the key used in request statistics
    pattern: re.Pattern[str]
    handler: Handler


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    """Register ``handler(store, params, *path_ids) -> body`` for ``method template``."""
    regex = "^" + re.sub(r"\{[a-z_]+\}", r"([^/]+)", template) + "$"

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, template, re.compile(regex), handler))
        return handler

    return register


def resolve(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    for candidate in sorted(ROUTES, key=lambda r: r.template.count("{")):
        if candidate.method != method:
            continue
        match = candidate.pattern.match(path)
        if match:
            return candidate, match.groups()
    return None


def call(store: Store, matched: Route, params: Params, ids: tuple[str, ...]) -> dict[str, Any]:
    return matched.handler(store, params, *ids)
