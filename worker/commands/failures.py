"""What a configuration or infrastructure failure says on the command line: one line, no secret."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from worker.settings import Settings


def describe_failure(exc: BaseException, settings: Settings | None) -> str | None:
    """One line naming what failed (configuration, database, Redis, Stripe) and why, or None
    when `exc` is none of these (a bug, whose traceback must show)."""
    for link in _chain(exc):  # Celery, for one, wraps a lost Redis in a RuntimeError
        for describe in (_configuration, _database, _redis, _stripe):
            message = describe(link, settings)
            if message is not None:
                return message
    return None


def mask_url(url: str) -> str:
    """`postgresql://billing:pw@db/billing` → `postgresql://billing:***@db/billing`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it, down to the root (explicit causes and implicit contexts)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _root_reason(exc: BaseException) -> str | None:
    """The operating system's words for the deepest socket error: `Connection refused`."""
    reason = None
    for link in _chain(exc):
        if isinstance(link, OSError) and link.strerror:
            reason = link.strerror
        elif isinstance(link, TimeoutError):
            reason = "timed out"
    return reason


def _one_line(text: str) -> str:
    """A multi-line driver message on one line: `refused\n\tIs the server running…`."""
    return " ".join(text.split())


def _configuration(exc: BaseException, _settings: Settings | None) -> str | None:
    from worker.composition import ConfigurationError

    return str(exc) if isinstance(exc, ConfigurationError) else None


def _database(exc: BaseException, settings: Settings | None) -> str | None:
    import psycopg
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import InterfaceError, OperationalError

    where = f"database {mask_url(settings.database_url)}" if settings else "database"
    if isinstance(exc, OperationalError | InterfaceError):
        return f"{where}: {_one_line(str(exc.orig))}"
    if isinstance(exc, psycopg.OperationalError):
        return f"{where}: {_one_line(str(exc))}"
    if isinstance(exc, CommandError):
        # Alembic: the schema is at a revision this code does not know (a newer release ran).
        return f"{where}: schema migration failed: {_one_line(str(exc))}"
    return None


def _redis(exc: BaseException, settings: Settings | None) -> str | None:
    import redis
    from kombu.exceptions import OperationalError as BrokerError

    where = f"Redis at {mask_url(settings.redis_url)}" if settings else "Redis"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | BrokerError):
        return f"{where} unreachable: {_one_line(str(exc))}"
    return None


def _stripe(exc: BaseException, settings: Settings | None) -> str | None:
    import requests

    from billing.core.errors import BillingError

    if not isinstance(exc, BillingError):
        return None
    unreachable = exc.http_status is None and any(
        isinstance(link, requests.ConnectionError | requests.Timeout) for link in _chain(exc)
    )
    if unreachable:
        # Not stripe-python's "let us know at support@stripe.com": nothing answered at all.
        where = f"Stripe at {settings.stripe_api_base}" if settings else "Stripe"
        return f"{where} unreachable: {_root_reason(exc) or 'no connection'}"
    return f"Stripe: {_one_line(str(exc))}"
