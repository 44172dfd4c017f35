"""Credits against a period's usage charge (pure): usability, order of use, amounts in cents,
the properties that must hold for any grants and charge, and the book's welcome credit."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.core.periods import Period
from billing.pricing.book import BOOKS_DIR, PriceBookError, load_book
from billing.pricing.credits import (
    CreditShare,
    GrantBalance,
    WelcomeCredit,
    allocate_credits,
    credit_total,
)

MAY = Period(datetime(2027, 5, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC))
JUNE = Period(datetime(2027, 6, 1, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC))
FEB_LEAP = Period(datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC))


def grant(
    grant_id: str, remaining: int, at: datetime, expires_at: datetime | None = None
) -> GrantBalance:
    return GrantBalance(grant_id, at, expires_at, remaining)


@pytest.mark.parametrize(
    ("grant_at", "expires_at", "period", "usable"),
    [
        (datetime(2027, 5, 1, tzinfo=UTC), None, MAY, True),  # granted at the period start
        (datetime(2027, 5, 31, 23, 59, 59, tzinfo=UTC), None, MAY, True),  # last second
        (datetime(2027, 6, 1, tzinfo=UTC), None, MAY, False),  # at the period end: next one
        (datetime(2027, 5, 3, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC), JUNE, True),
        (datetime(2027, 5, 3, tzinfo=UTC), datetime(2027, 6, 30, 23, tzinfo=UTC), JUNE, False),
        (datetime(2028, 1, 15, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC), FEB_LEAP, True),
        (datetime(2028, 1, 15, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC), FEB_LEAP, False),
    ],
)
def test_a_grant_is_usable_on_periods_ending_after_it_and_by_its_expiry(
    grant_at: datetime, expires_at: datetime | None, period: Period, usable: bool
) -> None:
    assert grant("g", 100, grant_at, expires_at).usable_for(period) is usable


START = datetime(2027, 5, 1, tzinfo=UTC)
SOON = datetime(2027, 6, 15, tzinfo=UTC)
LATER = datetime(2027, 9, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("grants", "charge", "expected"),
    [
        # One grant larger than the charge pays all of it.
        ([grant("a", 3000, START)], 1300, [("a", 1300)]),
        # One grant smaller than the charge pays what it has.
        ([grant("a", 1700, START)], 2600, [("a", 1700)]),
        # The oldest-expiring first; a grant that never expires last.
        (
            [
                grant("never", 500, START),
                grant("later", 500, START, LATER),
                grant("soon", 500, START, SOON),
            ],
            1200,
            [("soon", 500), ("later", 500), ("never", 200)],
        ),
        # Same expiry: the oldest granted first, then the id.
        (
            [
                grant("b", 300, START + timedelta(days=2), LATER),
                grant("c", 300, START, LATER),
                grant("a", 300, START, LATER),
            ],
            700,
            [("a", 300), ("c", 300), ("b", 100)],
        ),
        # Nothing to pay, or nothing left: nothing applied.
        ([grant("a", 3000, START)], 0, []),
        ([grant("a", 0, START)], 1000, []),
        # Granted after the period ends, or expired before it ends: skipped.
        ([grant("late", 900, MAY.period_end), grant("ok", 50, START)], 1000, [("ok", 50)]),
    ],
)
def test_allocation_in_cents(
    grants: list[GrantBalance], charge: int, expected: list[tuple[str, int]]
) -> None:
    shares = allocate_credits(grants, MAY, charge)
    assert [(share.grant_id, share.amount) for share in shares] == expected


def test_an_expiring_grant_pays_may_but_not_june_which_ends_after_its_expiry() -> None:
    expiring = [grant("gone", 900, START, SOON)]
    assert allocate_credits(expiring, MAY, 1000) == (CreditShare("gone", 900),)
    assert allocate_credits(expiring, JUNE, 1000) == ()


instants = st.datetimes(
    min_value=datetime(2027, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
balances = st.builds(
    GrantBalance,
    grant_id=st.text(alphabet="abcdef", min_size=1, max_size=4),
    at=instants,
    expires_at=st.none() | instants,
    remaining_amount=st.integers(min_value=-500, max_value=10_000),
)


@given(
    grants=st.lists(balances, max_size=8, unique_by=lambda g: g.grant_id),
    charge=st.integers(min_value=-100, max_value=50_000),
    start=instants,
)
def test_allocation_properties(grants: list[GrantBalance], charge: int, start: datetime) -> None:
    period = Period(start, start + timedelta(days=31))
    shares = allocate_credits(grants, period, charge)
    by_id = {g.grant_id: g for g in grants}
    # Never negative or zero, never more than the charge, never more than a grant's balance,
    # only from grants usable for the period, each grant at most once.
    assert all(share.amount > 0 for share in shares)
    assert credit_total(shares) <= max(0, charge)
    assert all(share.amount <= by_id[share.grant_id].remaining_amount for share in shares)
    assert all(by_id[share.grant_id].usable_for(period) for share in shares)
    assert len({share.grant_id for share in shares}) == len(shares)
    # Credit left unused only when the charge is paid in full.
    usable = sum(max(0, g.remaining_amount) for g in grants if g.usable_for(period))
    assert credit_total(shares) == min(max(0, charge), usable)


def _book_with(tmp_path: Path, welcome: str) -> Path:
    text = (
        (BOOKS_DIR / "zenaton.toml")
        .read_text()
        .replace("# welcome_credit = { amount = 3_000, expires_after_days = 90 }", welcome)
    )
    path = tmp_path / "zen.toml"
    path.write_text(text)
    return path


def test_the_zenaton_book_ships_the_welcome_credit_commented_out(tmp_path: Path) -> None:
    assert load_book("zenaton").welcome_credit is None
    assert "welcome_credit" not in tomllib.loads((BOOKS_DIR / "zenaton.toml").read_text())
    book = load_book(
        _book_with(tmp_path, "welcome_credit = { amount = 3_000, expires_after_days = 90 }")
    )
    assert book.welcome_credit == WelcomeCredit(3000, 90)
    granted = datetime(2027, 5, 1, tzinfo=UTC)
    assert book.welcome_credit.expires_at(granted) == datetime(2027, 7, 30, tzinfo=UTC)
    forever = load_book(_book_with(tmp_path, "welcome_credit = { amount = 500 }")).welcome_credit
    assert forever is not None
    assert forever.expires_at(granted) is None


@pytest.mark.parametrize(
    ("welcome", "problem"),
    [
        ("welcome_credit = 3000", "welcome_credit: must be a table such as { amount = 3000 }"),
        ("welcome_credit = { expires_after_days = 9 }", "welcome_credit.amount: is required"),
        (
            "welcome_credit = { amount = 0 }",
            "welcome_credit.amount: must be a whole number of cents above 0, got 0",
        ),
        (
            "welcome_credit = { amount = -300 }",
            "welcome_credit.amount: must be a whole number of cents above 0, got -300",
        ),
        (
            "welcome_credit = { amount = 30.5 }",
            "welcome_credit.amount: must be a whole number of cents above 0, got 30.5",
        ),
        (
            "welcome_credit = { amount = 300, expires_after_days = 0 }",
            "welcome_credit.expires_after_days: must be a whole number of days above 0, got 0",
        ),
        ("welcome_credit = { amount = 300, days = 3 }", "welcome_credit.days: unknown key"),
        (
            "welcome_credit = { amount = 300, reason = '' }",
            "welcome_credit.reason: must be a non-empty string",
        ),
    ],
)
def test_a_bad_welcome_credit_names_the_book_and_the_field(
    tmp_path: Path, welcome: str, problem: str
) -> None:
    path = _book_with(tmp_path, welcome)
    with pytest.raises(PriceBookError) as caught:
        load_book(path)
    assert f"{path}: {problem}" in str(caught.value)
