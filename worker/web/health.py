"""`GET /healthz`: whether the web process can serve (its database answers) and what it lacks."""

from __future__ import annotations

import asyncio
from enum import StrEnum

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from worker.web.common import services_of

log = structlog.get_logger(__name__)

# Said by `billing serve` at start and by /healthz while it holds.
UNVERIFIABLE_WEBHOOKS = (
    "BILLING_STRIPE_WEBHOOK_SECRET is not set: every Stripe webhook is refused as "
    "'invalid signature'"
)
# A database that does not answer within this many seconds counts as unreachable.
DATABASE_TIMEOUT_SECONDS = 5.0


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # serving, with a warning (e.g. no webhook secret)
    UNAVAILABLE = "unavailable"  # cannot serve: the database does not answer


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def database_reachable(engine: Engine) -> bool:
    try:
        await asyncio.wait_for(run_in_threadpool(_ping, engine), DATABASE_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to answer counts as "unreachable"
        log.warning("health.database_unreachable", error=" ".join(str(exc).split())[:300])
        return False
    return True


async def healthz(request: Request) -> JSONResponse:
    """200 while the database answers (with warnings, if any); 503 when it does not."""
    services = services_of(request)
    reachable = await database_reachable(services.engine)
    warnings = [] if services.webhook_secret else [UNVERIFIABLE_WEBHOOKS]
    status = Health.DEGRADED if warnings else Health.OK
    if not reachable:
        status = Health.UNAVAILABLE
    return JSONResponse(
        {
            "status": status.value,
            "database_reachable": reachable,
            "webhook_secret_set": bool(services.webhook_secret),
            "warnings": warnings,
        },
        status_code=503 if status is Health.UNAVAILABLE else 200,
    )


routes = [Route("/healthz", healthz, methods=["GET"])]
