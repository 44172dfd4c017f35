"""Logging for every process: structlog (JSON in production), and no secret in an access log."""

from __future__ import annotations

import copy
import logging
import re
import sys
from typing import Any
from urllib.parse import unquote_plus

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


# A query parameter whose name contains one of these has its value replaced in the access log.
SENSITIVE_PARAMETER = re.compile(r"token|secret|key|pass|auth|sig|session|credential", re.I)
REDACTED = "***"


def redact_query(target: str) -> str:
    """`/p?token=abc&org=x` → `/p?token=***&org=x`: a request target fit for a log."""
    path, question_mark, query = target.partition("?")
    if not question_mark:
        return target
    pairs = []
    for pair in query.split("&"):
        name, equals, _value = pair.partition("=")
        sensitive = SENSITIVE_PARAMETER.search(unquote_plus(name)) is not None
        pairs.append(f"{name}={REDACTED}" if sensitive and equals else pair)
    return f"{path}?{'&'.join(pairs)}"


class RedactedAccessLog(logging.Filter):
    """Masks sensitive query values in uvicorn's access-log records, whose arguments are
    (client, method, path with query string, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, its access log passed through RedactedAccessLog."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415 - only `billing serve` needs it

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactedAccessLog}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_query"]
    return config
