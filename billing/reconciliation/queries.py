"""Read-only queries over stored reconciliations: lists, one result with its lines, counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.money import format_decimal
from billing.core.periods import isoformat_z
from models.reconciliation import PriceCheck, Reconciliation, ReconciliationLine


@dataclass(frozen=True)
class ReconciliationView:
    reconciliation: Reconciliation
    lines: tuple[ReconciliationLine, ...]


def _latest_ids() -> Any:
    return sa.select(sa.func.max(col(Reconciliation.id))).group_by(
        col(Reconciliation.stripe_invoice_id)
    )


def list_reconciliations(
    session: Session,
    *,
    status: str | None = None,
    org_id: str | None = None,
    period: str | None = None,
    stripe_invoice_id: str | None = None,
    latest_only: bool = True,
    limit: int = 200,
) -> list[Reconciliation]:
    """Newest first; by default only the latest result of each invoice."""
    query = select(Reconciliation)
    if latest_only:
        query = query.where(col(Reconciliation.id).in_(_latest_ids()))
    if status:
        query = query.where(Reconciliation.status == status)
    if org_id:
        query = query.where(Reconciliation.org_id == org_id)
    if period:
        query = query.where(Reconciliation.period == period)
    if stripe_invoice_id:
        query = query.where(Reconciliation.stripe_invoice_id == stripe_invoice_id)
    query = query.order_by(col(Reconciliation.id).desc()).limit(limit)
    return list(session.exec(query).all())


# Row ids are 64-bit integers (SQL BIGINT): a larger id names no row, and neither SQLite nor
# PostgreSQL would take it as a parameter.
MAX_ROW_ID = 2**63 - 1


def get_reconciliation(session: Session, reconciliation_id: int) -> ReconciliationView | None:
    """One reconciliation with its lines; None when no row has this id (any integer)."""
    if not 0 < reconciliation_id <= MAX_ROW_ID:
        return None
    row = session.get(Reconciliation, reconciliation_id)
    if row is None:
        return None
    lines = session.exec(
        select(ReconciliationLine)
        .where(ReconciliationLine.reconciliation_id == reconciliation_id)
        .order_by(col(ReconciliationLine.position))
    ).all()
    return ReconciliationView(row, tuple(lines))


def reconciliation_counts(
    session: Session, *, org_id: str | None = None, period: str | None = None
) -> dict[str, int]:
    """The latest result of each invoice, counted by status (e.g. {"matched": 9, ...})."""
    query = (
        sa.select(col(Reconciliation.status), sa.func.count())
        .where(col(Reconciliation.id).in_(_latest_ids()))
        .group_by(col(Reconciliation.status))
    )
    if org_id:
        query = query.where(col(Reconciliation.org_id) == org_id)
    if period:
        query = query.where(col(Reconciliation.period) == period)
    return {str(status): int(count) for status, count in session.execute(query).all()}


def latest_price_check(session: Session) -> PriceCheck | None:
    return session.exec(select(PriceCheck).order_by(col(PriceCheck.id).desc()).limit(1)).first()


def reconciliation_json(row: Reconciliation) -> dict[str, Any]:
    return {
        "id": row.id,
        "stripe_invoice_id": row.stripe_invoice_id,
        "stripe_customer_id": row.stripe_customer_id,
        "org_id": row.org_id,
        "invoice_status": row.invoice_status,
        "billing_reason": row.billing_reason,
        "period": row.period,
        "period_start": isoformat_z(row.period_start_at) if row.period_start_at else None,
        "period_end": isoformat_z(row.period_end_at) if row.period_end_at else None,
        "currency": row.currency,
        "status": row.status,
        "expected_total_amount": row.expected_total_amount,
        "stripe_total_amount": row.stripe_total_amount,
        "trigger": row.trigger,
        "held": row.held,
        "note": row.note,
        "created_at": isoformat_z(row.created_at),
    }


def line_json(line: ReconciliationLine) -> dict[str, Any]:
    return {
        "component": line.component,
        "status": line.status,
        "expected_quantity": _num(line.expected_quantity),
        "expected_amount": line.expected_amount,
        "stripe_quantity": _num(line.stripe_quantity),
        "stripe_amount": line.stripe_amount,
        "difference_amount": line.difference_amount,
        "explanation": line.explanation,
        "trace": json.loads(line.trace_json),
    }


def view_json(view: ReconciliationView) -> dict[str, Any]:
    return {
        **reconciliation_json(view.reconciliation),
        "lines": [line_json(line) for line in view.lines],
    }


def _num(value: Any) -> str | None:
    return None if value is None else format_decimal(value)
