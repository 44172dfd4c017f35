"""Helpers shared by CLI commands: one-line errors and JSON-safe numbers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from billing.core.money import format_decimal
from billing.pricing.book import PriceBook, PriceBookError, UnknownTermsError, load_book


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2, no traceback."""


def load_book_or_fail(name_or_path: str) -> PriceBook:
    try:
        return load_book(name_or_path)
    except UnknownTermsError as exc:
        raise CliError(str(exc).strip("'\"")) from None
    except PriceBookError as exc:
        problems = "; ".join(f"{key}: {problem}" for key, problem in exc.problems)
        raise CliError(f"invalid price book {exc.source}: {problems}") from None


def decimal_json(value: Decimal) -> int | str:
    """Whole quantities as JSON integers; fractional ones as exact decimal strings."""
    if value == value.to_integral_value():
        return int(value)
    return format_decimal(value)


@contextmanager
def user_errors() -> Iterator[None]:
    """Configuration problems and unknown records become one-line errors (exit 2)."""
    from worker.composition import ConfigurationError

    try:
        yield
    except (ConfigurationError, LookupError) as exc:
        raise CliError(str(exc).strip("'\"")) from None


def require_org(org_id: str) -> None:
    """Fail with `unknown org 'X'` unless the ledger knows the org."""
    from sqlmodel import Session

    from models.ledger import Org
    from worker.composition import database

    with Session(database()) as session:
        if session.get(Org, org_id) is None:
            raise CliError(f"unknown org {org_id!r}")
