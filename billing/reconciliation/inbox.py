"""Stripe webhook events: the inbox that drops redeliveries, and the handler of each event."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.reconciliation.reconciler import Reconciler, ReconciliationOutcome
from billing.reconciliation.records import org_of
from billing.stripe_gateway.invoice_reads import event_invoice
from billing.stripe_gateway.webhooks import WebhookEvent
from billing.usage.invoice_mirror import forget_draft, upsert_invoices
from models.db import unit_of_work
from models.invoice_mirror import MirrorSource
from models.reconciliation import WebhookEvent as InboxRow

log = structlog.get_logger(__name__)

INVOICE_CREATED = "invoice.created"
INVOICE_FINALIZED = "invoice.finalized"
INVOICE_DELETED = "invoice.deleted"
HANDLED_TYPES = frozenset({INVOICE_CREATED, INVOICE_FINALIZED})
# Pushes one org's usage totals as of an instant. The composition root passes one that holds
# the org's usage lock, as every other usage push does.
UsagePush = Callable[[str, datetime], object]


class HandleAction(StrEnum):
    RECONCILED = "reconciled"
    IGNORED = "ignored"
    ALREADY_HANDLED = "already_handled"
    UNKNOWN_EVENT = "unknown_event"


def record_event(engine: Engine, event: WebhookEvent, now: datetime) -> bool:
    """Store the event in the inbox (and an invoice event's invoice in the invoice mirror, in
    the same transaction); False when its id is already there (a redelivery)."""
    try:
        with unit_of_work(engine) as session:
            if session.get(InboxRow, event.stripe_event_id) is not None:
                return False
            session.add(
                InboxRow(
                    stripe_event_id=event.stripe_event_id,
                    type=event.type,
                    stripe_object_id=event.stripe_object_id,
                    payload_json=event.payload_json,
                    stripe_created_at=event.created_at,
                    received_at=now,
                )
            )
            mirror_event(session, event, now)
    except IntegrityError:  # the same event delivered twice at once: the other one won
        return False
    log.info("webhook.recorded", stripe_event_id=event.stripe_event_id, type=event.type)
    return True


def mirror_event(session: Session, event: WebhookEvent, now: datetime) -> None:
    """An `invoice.*` event's invoice goes into the local invoice mirror (unless the mirror
    holds a later state); `invoice.deleted` takes a deleted draft out of it."""
    try:
        carried = event_invoice(event)
    except (ValueError, TypeError, ArithmeticError, AttributeError, KeyError) as exc:
        # A signed body whose invoice is not shaped as Stripe's: kept in the inbox, not mirrored.
        log.warning(
            "webhook.invoice_not_mirrored", stripe_event_id=event.stripe_event_id, error=str(exc)
        )
        return
    if carried is None:
        return
    if event.type == INVOICE_DELETED:
        assert carried.invoice.stripe_invoice_id is not None
        forget_draft(session, carried.invoice.stripe_invoice_id)
        return
    upsert_invoices(
        session,
        [(carried.invoice, carried.lines_complete)],
        source=MirrorSource.WEBHOOK,
        observed_at=event.created_at or now,
        now=now,
    )


@dataclass(frozen=True)
class HandleOutcome:
    stripe_event_id: str
    type: str
    action: HandleAction
    reconciliation: ReconciliationOutcome | None = None


class EventHandler:
    """Handles one inbox event once: usage push then reconcile (and maybe hold) a new draft,
    reconcile a finalized invoice, ignore the rest."""

    def __init__(self, engine: Engine, reconciler: Reconciler, push_usage: UsagePush) -> None:
        self.engine = engine
        self.reconciler = reconciler
        self.push_usage = push_usage

    def handle(self, stripe_event_id: str, now: datetime) -> HandleOutcome:
        with unit_of_work(self.engine) as session:
            row = session.get(InboxRow, stripe_event_id)
            if row is None:
                log.warning("webhook.unknown_event", stripe_event_id=stripe_event_id)
                return HandleOutcome(stripe_event_id, "", HandleAction.UNKNOWN_EVENT)
            if row.handled_at is not None:
                return HandleOutcome(stripe_event_id, row.type, HandleAction.ALREADY_HANDLED)
            row.attempts += 1
            event_type, invoice_id = row.type, row.stripe_object_id
            customer_id = _customer_of(row.payload_json)
        outcome = HandleOutcome(stripe_event_id, event_type, HandleAction.IGNORED)
        if event_type in HANDLED_TYPES and invoice_id:
            created = event_type == INVOICE_CREATED
            if created:
                self._push_usage(customer_id, now)
            result = self.reconciler.reconcile_invoice(
                invoice_id, now, trigger=event_type, hold=created
            )
            outcome = HandleOutcome(stripe_event_id, event_type, HandleAction.RECONCILED, result)
        with unit_of_work(self.engine) as session:
            done = session.get(InboxRow, stripe_event_id)
            assert done is not None
            done.handled_at = now
            done.outcome = (
                outcome.action.value
                if outcome.reconciliation is None
                else f"reconciliation {outcome.reconciliation.reconciliation_id}: "
                f"{outcome.reconciliation.status.value}"
                + (" (held)" if outcome.reconciliation.held else "")
            )
        log.info(
            "webhook.handled",
            stripe_event_id=stripe_event_id,
            type=event_type,
            action=outcome.action.value,
        )
        return outcome

    def _push_usage(self, stripe_customer_id: str | None, now: datetime) -> None:
        """Usage can still be reported in the draft's grace period: push the org's totals."""
        if stripe_customer_id is None:
            return
        with Session(self.engine) as session:
            org_id = org_of(session, stripe_customer_id)
        if org_id is None:
            return
        self.push_usage(org_id, now)


def unhandled_events(
    engine: Engine, received_after: datetime, received_before: datetime, *, limit: int = 1000
) -> list[str]:
    """The ids of the inbox's events received in `[received_after, received_before)` and not
    handled yet (their handling failed, or its task was lost), oldest first."""
    with Session(engine) as session:
        return list(
            session.exec(
                select(InboxRow.stripe_event_id)
                .where(
                    col(InboxRow.handled_at).is_(None),
                    col(InboxRow.received_at) >= received_after,
                    col(InboxRow.received_at) < received_before,
                )
                .order_by(col(InboxRow.received_at))
                .limit(limit)
            ).all()
        )


def _customer_of(payload_json: str) -> str | None:
    """`data.object.customer` of a stored event body (an id, or an expanded object)."""
    try:
        body = json.loads(payload_json)
    except ValueError:
        return None
    customer = body.get("data", {}).get("object", {}).get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else None
