"""Stripe's meter error reports, stored once and tied to the usage pushes Stripe dropped.

A meter event Stripe accepted can still fail its asynchronous validation; Stripe then drops it
and sends a thin event (billing.stripe_gateway.thin_events). `MeterErrorIntake.receive` verifies
the notification, fetches the report once per event id and stores one row per sample error,
linked by the sample's identifier to our `usage_pushes` row (models.meter_errors). The push's
rows are not changed: its meter event was sent and accepted, and the report says why Stripe
did not count it. `rejections_for` and `rejection_note` read them back for support staff and
for the reconciliation of a draft whose meters lag our pushes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.stripe_gateway.gateway import StripeGateway
from billing.stripe_gateway.thin_events import (
    METER_ERROR_EVENTS,
    MeterErrorEvent,
    fetch_meter_error_event,
    verify_thin_event,
)
from models.meter_errors import MeterErrorReport
from models.push_records import UsagePush

_MAX_MESSAGE = 2000


@dataclass(frozen=True)
class IntakeResult:
    stripe_event_id: str
    type: str
    outcome: str  # "stored", "duplicate" or "ignored" (not a meter error report)
    rows: int = 0
    linked: int = 0  # rows tied to one of our usage pushes


class MeterErrorIntake:
    """Receives thin events from the event destination (worker/web/thin_events.py)."""

    def __init__(
        self, engine: Engine, gateway: StripeGateway, secret: str, *, livemode: bool = False
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.secret = secret
        self.livemode = livemode

    def receive(self, raw_body: bytes, signature_header: str | None, now: datetime) -> IntakeResult:
        """Verify, then fetch and store a meter error report once. Raises the gateway's
        WebhookSignatureError / WebhookEventError before anything is stored."""
        note = verify_thin_event(
            self.gateway, raw_body, signature_header, self.secret, livemode=self.livemode
        )
        if note.type not in METER_ERROR_EVENTS:
            return IntakeResult(note.stripe_event_id, note.type, "ignored")
        if is_recorded(self.engine, note.stripe_event_id):
            return IntakeResult(note.stripe_event_id, note.type, "duplicate")
        report = fetch_meter_error_event(self.gateway, note.stripe_event_id)
        return record_report(self.engine, report, now)


def is_recorded(engine: Engine, stripe_event_id: str) -> bool:
    with Session(engine) as session:
        found = session.exec(
            select(MeterErrorReport.id).where(MeterErrorReport.stripe_event_id == stripe_event_id)
        ).first()
    return found is not None


def record_report(engine: Engine, report: MeterErrorEvent, now: datetime) -> IntakeResult:
    """One row per sample error, linked to the push with its identifier; a concurrent second
    delivery of the same event loses on the unique key and is reported as a duplicate."""
    with Session(engine) as session:
        pushes = _pushes(session, [s.identifier for s in report.samples if s.identifier])
        rows = [_row(report, n, now, pushes) for n in range(len(report.samples))]
        if not rows:  # a report without error types: kept, so it is not fetched again
            rows = [_empty_row(report, now)]
        session.add_all(rows)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return IntakeResult(report.stripe_event_id, report.type, "duplicate")
        linked = sum(1 for r in rows if r.usage_push_id is not None)
    return IntakeResult(report.stripe_event_id, report.type, "stored", len(rows), linked)


def _pushes(session: Session, identifiers: Collection[str]) -> dict[str, UsagePush]:
    if not identifiers:
        return {}
    found = session.exec(select(UsagePush).where(col(UsagePush.identifier).in_(identifiers)))
    return {p.identifier: p for p in found}


def _row(
    report: MeterErrorEvent, n: int, now: datetime, pushes: dict[str, UsagePush]
) -> MeterErrorReport:
    sample = report.samples[n]
    push = pushes.get(sample.identifier or "")
    row = _empty_row(report, now, position=n)
    row.code = sample.code[:100]
    message, identifier = sample.error_message, sample.identifier
    row.error_message = None if message is None else message[:_MAX_MESSAGE]
    row.identifier = None if identifier is None else identifier[:255]
    row.type_error_count = sample.type_error_count
    if push is not None:
        row.usage_push_id = push.id
        row.org_id, row.meter, row.period_start_at = push.org_id, push.meter, push.period_start_at
    return row


def _empty_row(report: MeterErrorEvent, now: datetime, position: int = 0) -> MeterErrorReport:
    return MeterErrorReport(
        stripe_event_id=report.stripe_event_id,
        position=position,
        event_type=report.type,
        stripe_meter_id=report.stripe_meter_id,
        type_error_count=0,
        event_error_count=report.error_count,
        summary=None if report.summary is None else report.summary[:_MAX_MESSAGE],
        validation_start_at=report.validation_start_at,
        validation_end_at=report.validation_end_at,
        event_created_at=report.created_at,
        received_at=now,
    )


def rejections_for(
    session: Session, org_id: str, period_start: datetime, meters: Iterable[str] | None = None
) -> list[MeterErrorReport]:
    """The org's pushes for the period (of `meters`, or all) that Stripe reported dropping."""
    query = select(MeterErrorReport).where(
        MeterErrorReport.org_id == org_id, MeterErrorReport.period_start_at == period_start
    )
    if meters is not None:
        query = query.where(col(MeterErrorReport.meter).in_(list(meters)))
    return list(session.exec(query.order_by(col(MeterErrorReport.id))))


def push_rejections(session: Session, push_ids: Collection[int]) -> dict[int, MeterErrorReport]:
    """Usage push id → the (first) report of Stripe dropping its meter event."""
    if not push_ids:
        return {}
    rows = session.exec(
        select(MeterErrorReport)
        .where(col(MeterErrorReport.usage_push_id).in_(list(push_ids)))
        .order_by(col(MeterErrorReport.id))
    )
    found: dict[int, MeterErrorReport] = {}
    for row in rows:
        if row.usage_push_id is not None:
            found.setdefault(row.usage_push_id, row)
    return found


def describe(row: MeterErrorReport) -> str:
    """One rejection in words for support staff."""
    message = f": {row.error_message}" if row.error_message else ""
    what = f"{row.meter or 'usage'} report {row.identifier}"
    return f"Stripe rejected the {what} ({row.code}{message})"


def rejection_note(
    session: Session, org_id: str, period_start: datetime, meters: Iterable[str]
) -> str | None:
    """Why Stripe's meters may never show what we sent, when Stripe told us; else None."""
    rows = rejections_for(session, org_id, period_start, meters)
    if not rows:
        return None
    shown = "; ".join(describe(r) for r in rows[:3])
    more = f" (and {len(rows) - 3} more)" if len(rows) > 3 else ""
    return (
        f"{shown}{more}. Stripe accepted that usage, then dropped it, so its meter does not "
        "count it and will not reach the total we sent until the cause is fixed."
    )
