"""A credit granted now by support (the CLI's `billing credit grant`, the admin API): one
`credit` event dated now, through the same ingestion as every other surface.

Refusals name the field of the request: an unknown org, an amount not above 0, an expiry not
after now, an id already used (reusing an id makes a retried request safe, never a second
credit). Nothing is stored when the grant is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from billing.core.money import format_minor_units
from billing.core.periods import isoformat_z, to_unix
from billing.ledger.ingest import Ingestor
from models.credits import CreditGrant


@dataclass(frozen=True)
class GoodwillRefusal:
    """Why a grant was refused: `field` is the request's (`org`, `amount`, `expires_at`, …)."""

    field: str
    problem: str
    conflict: bool = False  # the id is already used

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


@dataclass(frozen=True)
class GoodwillGrant:
    """A grant as requested: `credit_id` None takes `support:{org}:{unix now}`."""

    org_id: str
    amount: Any  # validated by the ingestion: whole cents above 0
    reason: Any
    expires_at: datetime | None = None
    credit_id: str | None = None

    def event(self, now: datetime) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": "credit",
            "id": self.credit_id or f"support:{self.org_id}:{to_unix(now)}",
            "org": self.org_id,
            "amount": self.amount,
            "at": isoformat_z(now),
            "reason": self.reason,
        }
        if self.expires_at is not None:
            event["expires_at"] = isoformat_z(self.expires_at)
        return event


def grant_goodwill(
    session: Session, grant: GoodwillGrant, now: datetime, *, default_book: str
) -> dict[str, Any] | list[GoodwillRefusal]:
    """Store the grant in the caller's session (the caller commits): the event stored, or
    every refusal (nothing stored)."""
    now = now.replace(microsecond=0)
    if grant.expires_at is not None and grant.expires_at <= now:
        problem = f"{isoformat_z(grant.expires_at)} is not after now ({isoformat_z(now)})"
        return [GoodwillRefusal("expires_at", problem)]
    event = grant.event(now)
    earlier = session.exec(
        select(CreditGrant).where(
            CreditGrant.org_id == grant.org_id, CreditGrant.grant_id == event["id"]
        )
    ).first()
    if earlier is not None:
        return [
            GoodwillRefusal(
                "id",
                f"credit {event['id']!r} was already granted to {grant.org_id!r} on "
                f"{isoformat_z(earlier.at)} ({format_minor_units(earlier.amount, 'usd')})",
                conflict=True,
            )
        ]
    outcome = Ingestor(session, default_book=default_book).ingest([event], now)
    if not outcome.ok:
        return [GoodwillRefusal(error.field, error.problem) for error in outcome.errors]
    return {key: value for key, value in event.items() if key != "type"}
