"""An admin's plan change or cancellation, from the CLI or the support console: the same `org`
or `cancel` event a product sends, stored through the ledger's one way in, so SPEC §10's rules
apply exactly as to ingested events. Returns the org's plan ledger and what is scheduled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from billing.core.periods import isoformat_z
from billing.ledger.formats import LineError
from billing.ledger.ingest import Ingestor
from billing.ledger.plan_timeline import schedule_text
from billing.pricing.book_cache import BookCache
from billing.pricing.lifecycle import NO_PLAN
from models.db import unit_of_work
from models.ledger import OrgPlanChange


@dataclass(frozen=True)
class OrgChange:
    """What the event did: the errors that refused it, or the org's plan ledger after it."""

    org_id: str
    errors: tuple[LineError, ...] = ()
    plans: list[dict[str, Any]] = field(default_factory=list)
    scheduled: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"org": self.org_id, "plans": self.plans, "scheduled": self.scheduled}


def change_event(
    org_id: str,
    plan: str,
    at: datetime,
    *,
    interval: str | None = None,
    book: str | None = None,
    seats: int | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "org", "org": org_id, "plan": plan, "at": isoformat_z(at)}
    given = {"interval": interval, "book": book, "seats": seats}
    return event | {key: value for key, value in given.items() if value is not None}


def cancel_event(org_id: str, at: datetime, *, now: bool) -> dict[str, Any]:
    when = "now" if now else "term_end"
    return {"type": "cancel", "org": org_id, "when": when, "at": isoformat_z(at)}


def submit(
    engine: Engine, default_book: str, event: dict[str, Any], received: datetime
) -> OrgChange:
    """Store one event (nothing when it is refused) and read the org's plan ledger back."""
    org_id = str(event["org"])
    with unit_of_work(engine) as session:
        outcome = Ingestor(session, default_book=default_book).ingest([event], received)
        if not outcome.ok:
            session.rollback()
            return OrgChange(org_id, errors=outcome.errors)
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(OrgPlanChange)
            .where(OrgPlanChange.org_id == org_id)
            .order_by(col(OrgPlanChange.at))
        ).all()
        plans = [_row_json(row) for row in rows]
        scheduled = schedule_text(session, org_id, received, BookCache())
    return OrgChange(org_id, plans=plans, scheduled=scheduled)


def _row_json(row: OrgPlanChange) -> dict[str, Any]:
    return {
        "at": isoformat_z(row.at),
        "book": row.book,
        "plan": None if row.plan == NO_PLAN else row.plan,
        "interval": row.interval or None,
        "requested_at": isoformat_z(row.requested_at) if row.requested_at else "",
    }
