"""The Starlette application of `billing serve`, assembled from each module's route list."""

from __future__ import annotations

import importlib
import importlib.util

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from worker.settings import Settings, get_settings
from worker.web import admin, health, support, usage, webhook
from worker.web.services import WebServices, build_services

# Each module exposes `routes`; add a module here to mount it.
ROUTE_MODULES = [webhook, usage, support, admin, health]
OPTIONAL_ROUTE_MODULES = ["worker.web.quotas"]  # mounted when present (issue 7)


def all_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [route for module in ROUTE_MODULES for route in module.routes]
    for name in OPTIONAL_ROUTE_MODULES:
        if importlib.util.find_spec(name) is not None:
            routes.extend(importlib.import_module(name).routes)
    return routes


def create_app(
    settings: Settings | None = None, *, services: WebServices | None = None
) -> Starlette:
    app = Starlette(routes=all_routes())
    app.state.services = services or build_services(settings or get_settings())
    return app
