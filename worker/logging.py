"""Structured logging for every process: structlog, JSON in production, key=value otherwise."""

from __future__ import annotations

import logging
import sys

import structlog

from worker.settings import Environment, Settings


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Route structlog and the standard library through one renderer on stderr."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.environment is Environment.PRODUCTION
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Stripe library logs every request at INFO with its URL; keep it quiet.
    logging.getLogger("stripe").setLevel(logging.WARNING)
