"""What the simulation shows: per org, the subscription and every Stripe invoice with its lines
and its latest reconciliation, as SPEC §11's JSON object or as readable tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, col, select

from billing.core.periods import isoformat_z
from billing.pricing.lifecycle import NO_PLAN
from billing.reconciliation.component_map import UNEXPECTED, ComponentMap
from billing.reconciliation.records import component_map
from billing.stripe_gateway.gateway import StripeGateway
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine
from models.ledger import Org, OrgPlanChange
from models.reconciliation import Reconciliation
from models.stripe_records import StripeCustomerRecord, StripeSubscriptionRecord
from worker.commands.common import decimal_json
from worker.simulate.timeline import Refusal

OTHER = "other"


def simulation_json(
    *,
    session: Session,
    gateway: StripeGateway,
    start_at: datetime,
    end_at: datetime,
    refused: Sequence[Refusal],
    stripe_requests: int,
    meter_events_sent: int,
) -> dict[str, Any]:
    orgs: dict[str, Any] = {}
    for org in session.exec(select(Org).order_by(col(Org.id))).all():
        orgs[org.id] = _org_json(session, gateway, org, end_at)
    return {
        "start": isoformat_z(start_at),
        "end": isoformat_z(end_at),
        "refused": [r.as_json() for r in sorted(refused, key=lambda r: r.line)],
        "orgs": orgs,
        "stripe_requests": stripe_requests,
        "meter_events_sent": meter_events_sent,
    }


def _org_json(session: Session, gateway: StripeGateway, org: Org, now: datetime) -> dict[str, Any]:
    record = session.get(StripeSubscriptionRecord, org.id)
    customer = session.get(StripeCustomerRecord, org.id)
    status, cancel_at = None, None
    invoices: list[StripeInvoice] = []
    if record is not None and record.stripe_subscription_id:
        sub = gateway.retrieve_subscription(record.stripe_subscription_id)
        status, cancel_at = sub.status, sub.cancel_at
    if customer is not None and customer.stripe_customer_id:
        # Every subscription the org had: a plan change ends one and starts the next.
        invoices = gateway.list_invoices(stripe_customer_id=customer.stripe_customer_id)
    components = component_map(session, org.id)
    latest = _latest_reconciliations(session, [i.stripe_invoice_id or "" for i in invoices])
    plans = session.exec(
        select(OrgPlanChange).where(OrgPlanChange.org_id == org.id).order_by(col(OrgPlanChange.at))
    ).all()
    current = [row for row in plans if row.at <= now]
    shown = next((row for row in reversed(current) if row.plan != NO_PLAN), None)
    canceled = bool(current) and current[-1].plan == NO_PLAN
    scheduled = next((row for row in plans if row.at > now), None)
    return {
        "subscription": {
            "status": "canceled" if canceled else status or "not_provisioned",
            "book": shown.book if shown else org.book,
            "plan": shown.plan if shown else org.plan,
            "interval": shown.interval if shown else org.interval,
            "cancel_at": _iso(cancel_at),
            "scheduled_change": None if scheduled is None else _scheduled_json(scheduled),
        },
        "invoices": [
            _invoice_json(inv, components, latest.get(inv.stripe_invoice_id or ""))
            for inv in sorted(invoices, key=_invoice_order)
        ],
    }


def _scheduled_json(row: OrgPlanChange) -> dict[str, Any]:
    """A change or cancellation the ledger holds for later (SPEC §10)."""
    if row.plan == NO_PLAN:
        return {"at": isoformat_z(row.at), "cancel": True}
    return {
        "at": isoformat_z(row.at),
        "book": row.book,
        "plan": row.plan,
        "interval": row.interval,
    }


def _invoice_order(invoice: StripeInvoice) -> tuple[datetime, datetime, str]:
    """By creation; at one instant (a plan change ends one subscription and starts the next)
    the invoice of the earlier period first."""
    never = datetime.min.replace(tzinfo=UTC)
    return (
        invoice.created_at or never,
        invoice.period_start_at or never,
        invoice.stripe_invoice_id or "",
    )


def _invoice_json(
    invoice: StripeInvoice, components: ComponentMap, reconciliation: Reconciliation | None
) -> dict[str, Any]:
    found = components.components_of(invoice.lines)
    return {
        "id": invoice.stripe_invoice_id,
        "status": invoice.status,
        "billing_reason": invoice.billing_reason,
        "period_start": _iso(invoice.period_start_at),
        "period_end": _iso(invoice.period_end_at),
        "created": _iso(invoice.created_at),
        "total": invoice.total_amount,
        "amount_due": invoice.amount_due,
        "held": bool(reconciliation.held) if reconciliation else invoice.auto_advance is False,
        "lines": [
            _line_json(line, component)
            for line, component in zip(invoice.lines, found, strict=True)
        ],
        "reconciliation": None
        if reconciliation is None
        else {
            "status": reconciliation.status,
            "expected_total": reconciliation.expected_total_amount,
            "stripe_total": reconciliation.stripe_total_amount,
        },
    }


def _line_json(line: StripeInvoiceLine, component: str) -> dict[str, Any]:
    quantity = line.quantity_decimal
    return {
        "component": OTHER if component == UNEXPECTED else component,
        "description": line.description,
        "quantity": None if quantity is None else decimal_json(quantity),
        "amount": line.amount,
    }


def _latest_reconciliations(
    session: Session, invoice_ids: Sequence[str]
) -> Mapping[str, Reconciliation]:
    if not invoice_ids:
        return {}
    newest = (
        select(sa.func.max(Reconciliation.id))
        .where(col(Reconciliation.stripe_invoice_id).in_(list(invoice_ids)))
        .group_by(col(Reconciliation.stripe_invoice_id))
    )
    rows = session.exec(select(Reconciliation).where(col(Reconciliation.id).in_(newest))).all()
    return {row.stripe_invoice_id: row for row in rows}


def _iso(at: datetime | None) -> str | None:
    return isoformat_z(at) if at else None


def print_tables(result: Mapping[str, Any], console: Console) -> None:
    """One table of invoices per org, then the refused lines."""
    for org_id, org in result["orgs"].items():
        sub = org["subscription"]
        table = Table(
            title=f"{org_id} — {sub['book']}/{sub['plan']} ({sub['interval']}), {sub['status']}",
            title_justify="left",
        )
        for name in ("created", "reason", "lines", "total", "status", "reconciliation", "held"):
            table.add_column(name, justify="right" if name == "total" else "left")
        for inv in org["invoices"]:
            rec = inv["reconciliation"]
            table.add_row(
                (inv["created"] or "")[:16].replace("T", " "),
                inv["billing_reason"] or "",
                "\n".join(
                    f"{line['component']}: {_cents(line['amount'])}"
                    + (f" ({line['quantity']})" if line["quantity"] not in (None, 0) else "")
                    for line in inv["lines"]
                ),
                _cents(inv["total"]),
                inv["status"] or "",
                "—" if rec is None else rec["status"],
                "held" if inv["held"] else "",
            )
        console.print(table)
    if result["refused"]:
        refused = Table(title="refused lines", title_justify="left")
        refused.add_column("line", justify="right")
        refused.add_column("error")
        for row in result["refused"]:
            refused.add_row(str(row["line"]), row["error"])
        console.print(refused)
    console.print(
        f"{result['start']} → {result['end']}: {result['stripe_requests']} Stripe requests, "
        f"{result['meter_events_sent']} meter events"
    )


def _cents(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount) // 100:,}.{abs(amount) % 100:02d}"
