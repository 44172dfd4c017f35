"""The credit ledger's read side: each grant's balance before a period, and an org's credits as
support sees them (granted, applied per invoice, remaining, lapsed).

A grant's balance before a usage period is its amount less what it paid on the invoices of
earlier periods: the allocations of the `credit_applications` rows (done, or started and being
resent) of periods that began before it. The worker applying a period's credit and the expected
invoice reconciliation checks it against both read this same balance, so they agree to the
cent; the period's own earlier items are never part of it (a correction recomputes them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from billing.core.periods import Period, isoformat_z
from billing.pricing.credits import GrantBalance
from models.credits import CreditAllocation, CreditApplication, CreditGrant
from models.stripe_records import WriteStatus

# Two usage periods of an org start a month apart; bounds written by different clocks differ
# by far less. An application starting this much before a period belongs to an earlier one.
_PERIOD_SLACK = timedelta(hours=1)
_COUNTED = (WriteStatus.DONE.value, WriteStatus.STARTED.value)


def _t(model: type[Any]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def org_filter(table: sa.Table, org_id: str | Collection[str] | None) -> list[Any]:
    """The filter of a ledger table on one org, on some orgs, or none (every org)."""
    if org_id is None:
        return []
    if isinstance(org_id, str):
        return [table.c.org_id == org_id]
    return [table.c.org_id.in_(list(org_id))]


def grant_balances(
    connection: sa.Connection, period: Period, org_id: str | Collection[str] | None = None
) -> dict[str, list[GrantBalance]]:
    """Per org (one, some, or all with grants), each grant made before the period ended, with
    what earlier periods left of it. Two queries, whatever the number of orgs."""
    grants, allocations, applications = _t(CreditGrant), _t(CreditAllocation), _t(CreditApplication)
    only = org_filter(grants, org_id)
    rows = connection.execute(
        sa.select(
            grants.c.org_id, grants.c.grant_id, grants.c.amount, grants.c.at, grants.c.expires_at
        )
        .where(grants.c.at < period.period_end, *only)
        .order_by(grants.c.org_id, grants.c.at, grants.c.grant_id)
    ).all()
    if not rows:
        return {}
    used_only = org_filter(allocations, org_id)
    used = {
        (org, grant): int(amount)
        for org, grant, amount in connection.execute(
            sa.select(
                allocations.c.org_id, allocations.c.grant_id, sa.func.sum(allocations.c.amount)
            )
            .join(applications, applications.c.id == allocations.c.application_id)
            .where(
                applications.c.period_start_at < period.period_start - _PERIOD_SLACK,
                applications.c.status.in_(_COUNTED),
                *used_only,
            )
            .group_by(allocations.c.org_id, allocations.c.grant_id)
        )
    }
    found: dict[str, list[GrantBalance]] = {}
    for org, grant, amount, at, expires_at in rows:
        remaining = amount - used.get((org, grant), 0)
        found.setdefault(org, []).append(GrantBalance(grant, at, expires_at, remaining))
    return found


# --------------------------------------------------------------------------- support view


class GrantStatus(StrEnum):
    """Where a grant stands at a given instant."""

    ACTIVE = "active"  # a balance left, usable on coming invoices
    USED = "used"  # paid out in full
    LAPSED = "lapsed"  # expired with a balance left unused


@dataclass(frozen=True)
class AppliedCredit:
    """A credit item on one invoice, and the grants that paid it."""

    period_start_at: datetime
    period_end_at: datetime
    stripe_invoice_id: str
    stripe_invoice_item_id: str | None
    amount: int
    charge_amount: int
    status: str
    grants: Mapping[str, int]


@dataclass(frozen=True)
class GrantView:
    grant_id: str
    amount: int
    at: datetime
    expires_at: datetime | None
    reason: str
    applied_amount: int
    remaining_amount: int
    lapsed_amount: int
    status: GrantStatus


@dataclass(frozen=True)
class CreditLedger:
    org_id: str
    grants: tuple[GrantView, ...]
    applied: tuple[AppliedCredit, ...]

    @property
    def granted_amount(self) -> int:
        return sum(grant.amount for grant in self.grants)

    @property
    def remaining_amount(self) -> int:
        return sum(grant.remaining_amount for grant in self.grants)

    @property
    def lapsed_amount(self) -> int:
        return sum(grant.lapsed_amount for grant in self.grants)

    def as_json(self) -> dict[str, Any]:
        """The org's credit ledger as JSON (amounts in cents), for the CLI and the API."""
        return {
            "org": self.org_id,
            "granted": self.granted_amount,
            "remaining": self.remaining_amount,
            "lapsed": self.lapsed_amount,
            "grants": [
                {
                    "id": grant.grant_id,
                    "amount": grant.amount,
                    "at": isoformat_z(grant.at),
                    "expires_at": isoformat_z(grant.expires_at) if grant.expires_at else None,
                    "reason": grant.reason,
                    "applied": grant.applied_amount,
                    "remaining": grant.remaining_amount,
                    "lapsed": grant.lapsed_amount,
                    "status": grant.status.value,
                }
                for grant in self.grants
            ],
            "applied": [
                {
                    "period_start": isoformat_z(item.period_start_at),
                    "period_end": isoformat_z(item.period_end_at),
                    "stripe_invoice_id": item.stripe_invoice_id,
                    "stripe_invoice_item_id": item.stripe_invoice_item_id,
                    "amount": item.amount,
                    "charge_amount": item.charge_amount,
                    "status": item.status,
                    "grants": dict(item.grants),
                }
                for item in self.applied
            ],
        }


def credit_ledger(connection: sa.Connection, org_id: str, now: datetime) -> CreditLedger:
    """The org's grants with their balances at `now`, and every credit applied to its invoices
    (a failed item is listed with its status and counts against no grant)."""
    grants, allocations, applications = _t(CreditGrant), _t(CreditAllocation), _t(CreditApplication)
    split: dict[int, dict[str, int]] = {}
    for application_id, grant_id, amount in connection.execute(
        sa.select(allocations.c.application_id, allocations.c.grant_id, allocations.c.amount).where(
            allocations.c.org_id == org_id
        )
    ):
        split.setdefault(application_id, {})[grant_id] = amount
    applied = tuple(
        AppliedCredit(
            row.period_start_at,
            row.period_end_at,
            row.stripe_invoice_id,
            row.stripe_invoice_item_id,
            row.amount,
            row.charge_amount,
            row.status,
            split.get(row.id, {}),
        )
        for row in connection.execute(
            sa.select(applications)
            .where(applications.c.org_id == org_id)
            .order_by(applications.c.period_start_at, applications.c.sequence)
        )
    )
    used: dict[str, int] = {}
    for item in applied:
        if item.status in _COUNTED:
            for grant_id, amount in item.grants.items():
                used[grant_id] = used.get(grant_id, 0) + amount
    views = tuple(
        _view(row, used.get(row.grant_id, 0), now)
        for row in connection.execute(
            sa.select(grants)
            .where(grants.c.org_id == org_id)
            .order_by(grants.c.at, grants.c.grant_id)
        )
    )
    return CreditLedger(org_id, views, applied)


def _view(row: Any, applied: int, now: datetime) -> GrantView:
    left = row.amount - applied
    expired = row.expires_at is not None and row.expires_at <= now
    status = (
        GrantStatus.USED if left <= 0 else GrantStatus.LAPSED if expired else GrantStatus.ACTIVE
    )
    return GrantView(
        grant_id=row.grant_id,
        amount=row.amount,
        at=row.at,
        expires_at=row.expires_at,
        reason=row.reason,
        applied_amount=applied,
        remaining_amount=0 if expired else max(0, left),
        lapsed_amount=max(0, left) if expired else 0,
        status=status,
    )


__all__: Sequence[str] = (
    "AppliedCredit",
    "CreditLedger",
    "GrantStatus",
    "GrantView",
    "credit_ledger",
    "grant_balances",
)
