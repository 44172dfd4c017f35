"""`billing serve`: the web process (webhooks, usage API, support pages) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
) -> None:
    """Serve POST /stripe/webhook, POST /api/usage, the support pages and the admin actions."""
    import uvicorn

    from worker.web.app import create_app

    uvicorn.run(create_app(), host=host, port=port, proxy_headers=True, log_level="info")
