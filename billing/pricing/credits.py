"""Credits against a usage period's charge: which grants pay how much of it (pure).

The rules of SPEC §10 "Credits", made precise here once for the worker that applies credits to
Stripe's drafts (billing.usage.credits) and the expected invoice that reconciliation checks them
against (billing.ledger.expected_invoice), so both compute the same cents:

- A credit pays for a usage period's *usage charge*: its meter lines plus its minimum top-up,
  computed before credits (`max(minimum, usage)` on a plan with a minimum). Never seats, seat
  prorations, or late-usage adjustments of earlier periods (those are billed as they come).
- A grant is usable on the invoice of the usage period `[start, end)` when `at < end` (the
  period ends after the grant) and, if it expires, `end <= expires_at` (the period is over by
  the expiry). A credit granted on 15 May pays for May's invoice; one expiring on 1 July pays
  for June's (ending 1 July) but not July's.
- Grants are used oldest-expiring first (one that never expires comes last), then oldest
  granted, then by id, each paying `min(its remaining balance, what is left of the charge)`.
  The credit applied to a period never exceeds its usage charge, nor any grant its balance.
- What a grant has not paid by the time a period ending after its expiry is invoiced lapses.

A book may give every new org a `welcome_credit = { amount = 3000, expires_after_days = 90 }`
(seed 000's "$30 credit to each new account"), parsed here so that book.py stays the format's
dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.core.periods import Period
from billing.pricing.book_format import Validator

WELCOME_CREDIT = "welcome_credit"
_WELCOME_KEYS = {"amount", "expires_after_days", "reason"}
DEFAULT_WELCOME_REASON = "welcome credit"
MAX_CREDIT_AMOUNT = 2**31 - 1  # cents; the grants table's integer column
MAX_REASON_LENGTH = 200  # as an event's text fields (billing.ledger.formats)


@dataclass(frozen=True)
class WelcomeCredit:
    """The credit a book grants every new org when it is first subscribed."""

    amount: int  # cents
    expires_after_days: int | None = None  # None: never expires
    reason: str = DEFAULT_WELCOME_REASON

    def expires_at(self, granted_at: datetime) -> datetime | None:
        if self.expires_after_days is None:
            return None
        return granted_at + timedelta(days=self.expires_after_days)


def parse_welcome_credit(v: Validator, raw: object) -> WelcomeCredit | None:
    """The book's `welcome_credit` table (None when absent); problems go to `v`."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        v.problem(WELCOME_CREDIT, "must be a table such as { amount = 3000 }")
        return None
    v.keys(raw, WELCOME_CREDIT, _WELCOME_KEYS)
    amount = _positive_int(v, raw.get("amount"), f"{WELCOME_CREDIT}.amount", "cents")
    days: int | None = None
    if "expires_after_days" in raw:
        days = _positive_int(
            v, raw["expires_after_days"], f"{WELCOME_CREDIT}.expires_after_days", "days"
        )
        if days is None:
            return None
    reason = raw.get("reason", DEFAULT_WELCOME_REASON)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        v.problem(
            f"{WELCOME_CREDIT}.reason",
            f"must be a non-empty string of at most {MAX_REASON_LENGTH} characters, got {reason!r}",
        )
        return None
    if amount is None:
        return None
    return WelcomeCredit(amount, days, reason)


def _positive_int(v: Validator, value: Any, key: str, unit: str) -> int | None:
    if value is None:
        v.problem(key, f"is required (a whole number of {unit} above 0)")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        v.problem(key, f"must be a whole number of {unit} above 0, got {value!r}")
        return None
    if value > MAX_CREDIT_AMOUNT:
        v.problem(key, f"is too large ({value})")
        return None
    return value


# --------------------------------------------------------------------------- allocation


@dataclass(frozen=True)
class GrantBalance:
    """One grant as an invoice of a period sees it: what is left of it before that period."""

    grant_id: str
    at: datetime
    expires_at: datetime | None
    remaining_amount: int  # granted less what earlier periods used, in cents

    def usable_for(self, period: Period) -> bool:
        """Whether the grant may pay for the invoice of `period` (see the module docstring)."""
        if self.at >= period.period_end:
            return False
        return self.expires_at is None or period.period_end <= self.expires_at


@dataclass(frozen=True)
class CreditShare:
    """What one grant pays of one period's usage charge, in cents (> 0)."""

    grant_id: str
    amount: int


def use_order(grant: GrantBalance) -> tuple[int, datetime, datetime, str]:
    """Oldest-expiring first, never-expiring last; then oldest granted; then id."""
    never = grant.expires_at is None
    return (int(never), grant.expires_at or grant.at, grant.at, grant.grant_id)


def allocate_credits(
    grants: Iterable[GrantBalance], period: Period, charge_amount: int
) -> tuple[CreditShare, ...]:
    """The credit each usable grant pays of `period`'s usage charge (before credits)."""
    left = max(0, charge_amount)
    shares: list[CreditShare] = []
    for grant in sorted(grants, key=use_order):
        if left == 0:
            break
        if grant.remaining_amount <= 0 or not grant.usable_for(period):
            continue
        paid = min(grant.remaining_amount, left)
        shares.append(CreditShare(grant.grant_id, paid))
        left -= paid
    return tuple(shares)


def credit_total(shares: Sequence[CreditShare]) -> int:
    return sum(share.amount for share in shares)


def describe_shares(shares: Sequence[CreditShare], charge_amount: int) -> str:
    """`credit 2500 of usage charge 2500 (welcome:acme 2500)`, for lines and traces."""
    parts = ", ".join(f"{share.grant_id} {share.amount}" for share in shares)
    return f"credit {credit_total(shares)} of usage charge {charge_amount} ({parts or 'none'})"
