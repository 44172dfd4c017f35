"""`billing serve`: the web process (webhooks, usage API, support pages) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import structlog
import typer

from worker.commands.common import load_book_or_fail
from worker.logging import uvicorn_log_config
from worker.settings import get_settings

log = structlog.get_logger(__name__)


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
) -> None:
    """Serve POST /stripe/webhook, POST /api/usage, the support pages, the admin actions and
    GET /healthz."""
    import uvicorn

    from worker.web.app import create_app
    from worker.web.health import UNVERIFIABLE_WEBHOOKS

    # A bad BILLING_BOOK (unreadable, not UTF-8, invalid) is one line now, not a 500 per page.
    load_book_or_fail(get_settings().book)
    app = create_app()  # refuses a schema that is behind before anything is said
    if get_settings().stripe_webhook_secret is None:
        log.warning("serve.started_without_webhook_secret", problem=UNVERIFIABLE_WEBHOOKS)
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        log_level="info",
        log_config=uvicorn_log_config(),  # query strings' tokens masked in the access log
    )
