"""The Starlette application of `billing serve`, assembled from each module's route list."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from worker.settings import Settings, get_settings
from worker.web import (
    admin,
    credits,
    health,
    login,
    metrics,
    openapi,
    orgs,
    pricing,
    quotas,
    quote_api,
    status,
    subscription,
    support,
    thin_events,
    usage,
    webhook,
)
from worker.web.bodies import BodyTooLarge, body_too_large
from worker.web.services import WebServices, build_services

# Each module exposes `routes`; add a module here to mount it.
# Each is described in GET /openapi.json (worker/web/schemas/operations.py).
ROUTE_MODULES = [
    webhook,
    thin_events,
    usage,
    login,
    support,
    orgs,
    admin,
    quotas,
    health,
    pricing,
    quote_api,
    credits,
    metrics,
    status,
    subscription,
    openapi,
]


def all_routes() -> list[BaseRoute]:
    return [route for module in ROUTE_MODULES for route in module.routes]


def create_app(
    settings: Settings | None = None, *, services: WebServices | None = None
) -> Starlette:
    app = Starlette(routes=all_routes(), exception_handlers={BodyTooLarge: body_too_large})
    app.state.services = services or build_services(settings or get_settings())
    return app
