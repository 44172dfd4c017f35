"""What the ingestor knows of each org while it checks a batch: its plan now and its timeline
of plan changes (scheduled ones included), loaded once per batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from billing.core.meters import Interval
from billing.ledger.lifecycle_events import Timeline
from billing.pricing.book import PriceBookError, SeatPolicy, Terms, UnknownTermsError
from billing.pricing.book_cache import BookCache
from models.ledger import Org, OrgPlanChange

_IN_CHUNK = 500


@dataclass
class OrgState:
    book: str
    plan: str
    interval: str
    term_start_at: datetime
    subscribed_at: datetime  # the earliest plan change: the org's first subscription
    terms: Terms
    history: dict[datetime, tuple[str, str, str]]
    created_at: datetime | None = None  # set when the org is new in this batch
    requested: dict[datetime, datetime] = field(default_factory=dict)  # scheduled rows

    @property
    def timeline(self) -> Timeline:
        return Timeline(self.history, self.requested)


NO_TERMS = Terms(
    book="?",
    plan="?",
    interval=Interval.MONTH,
    currency="usd",
    seat_unit_amount=None,
    meters={},
    minimum_amount=0,
    quotas={},
    seat_policy=SeatPolicy(),
)


def load_org_states(session: Session, books: BookCache, org_ids: set[str]) -> dict[str, OrgState]:
    """The stored orgs among `org_ids`, each with its plan-change timeline."""
    states: dict[str, OrgState] = {}
    ordered = sorted(org_ids)
    for offset in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[offset : offset + _IN_CHUNK]
        orgs = session.exec(select(Org).where(col(Org.id).in_(chunk))).all()
        for org in orgs:
            try:
                terms = books.terms(org.book, org.plan, org.interval, org.id)
            except (UnknownTermsError, PriceBookError):
                # The book changed under a stored org: its lines get a clear error below.
                terms = NO_TERMS
            start_at = org.term_start_at
            states[org.id] = OrgState(
                org.book, org.plan, org.interval, start_at, start_at, terms, {}
            )
        known = [org.id for org in orgs]
        if not known:
            continue
        changes = session.exec(
            select(OrgPlanChange).where(col(OrgPlanChange.org_id).in_(known))
        ).all()
        for change in changes:
            state = states[change.org_id]
            state.history[change.at] = (change.book, change.plan, change.interval)
            if change.requested_at is not None:
                state.requested[change.at] = change.requested_at
            state.subscribed_at = min(state.subscribed_at, change.at)
    return states


def plan_row(
    org_id: str, plan: tuple[str, str, str], at: datetime, now: datetime
) -> dict[str, Any]:
    book, name, interval = plan
    return {
        "org_id": org_id,
        "book": book,
        "plan": name,
        "interval": interval,
        "at": at,
        "recorded_at": now,
        "requested_at": None,
        "cancel_credit": None,
    }
