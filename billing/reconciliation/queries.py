"""Read-only queries over stored reconciliations: search with paging, one result, counts.

Search (`search_reconciliations`) takes what a support person has in hand: an invoice id or
number, an org id or its prefix, a Stripe customer id. Invoice numbers are not on our rows:
Stripe assigns them at finalization, so they are read from the `invoice.*` events of the
webhook inbox. A malformed filter raises FilterError naming it, never an empty list.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.money import format_decimal
from billing.core.periods import PeriodError, isoformat_z, month_period
from billing.reconciliation.match import Status
from models.reconciliation import PriceCheck, Reconciliation, ReconciliationLine, WebhookEvent

PAGE_SIZE = 200
MAX_QUERY_LENGTH = 255  # Stripe ids are at most 255 characters; so is anything we search for


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


class FilterError(ValueError):
    """A search filter that cannot mean anything (a period not `YYYY-MM`, an unknown status)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Search:
    """A validated search: free text `q`, exact filters, and the page (rows older than
    `before_id`, newest first)."""

    q: str | None = None
    status: str | None = None
    org_id: str | None = None
    period: str | None = None
    before_id: int | None = None
    limit: int = PAGE_SIZE


def parse_search(params: Mapping[str, str]) -> Search:
    """The search the query parameters ask for; FilterError for a malformed one."""

    def text(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > MAX_QUERY_LENGTH:
            raise FilterError(name, f"at most {MAX_QUERY_LENGTH} characters")
        if "\x00" in value:  # matches no stored text; PostgreSQL refuses it in a query
            raise FilterError(name, "must not contain NUL characters")
        return value or None

    status, period, before = text("status"), text("period"), text("before")
    if status is not None and status not in Status._value2member_map_:
        raise FilterError("status", f"{status!r} is not one of {', '.join(Status)}")
    if period is not None:
        try:
            month_period(period)
        except PeriodError as exc:
            raise FilterError("period", str(exc)) from None
    before_id = None
    if before is not None:
        if not (before.isascii() and before.isdigit() and 0 < int(before[:20]) <= MAX_ROW_ID):
            raise FilterError("before", f"{before!r} is not a reconciliation id")
        before_id = int(before)
    return Search(
        q=text("q"), status=status, org_id=text("org"), period=period, before_id=before_id
    )


@dataclass(frozen=True)
class SearchPage:
    rows: tuple[Reconciliation, ...]
    next_before_id: int | None  # the `before` of the next page; None on the last page


def search_reconciliations(session: Session, search: Search) -> SearchPage:
    """The latest result of each invoice matching `search`, newest first, one page."""
    query = select(Reconciliation).where(col(Reconciliation.id).in_(_latest_ids()))
    if search.q:
        query = query.where(_matches(session, search.q))
    if search.status:
        query = query.where(Reconciliation.status == search.status)
    if search.org_id:
        query = query.where(Reconciliation.org_id == search.org_id)
    if search.period:
        query = query.where(Reconciliation.period == search.period)
    if search.before_id is not None:
        query = query.where(col(Reconciliation.id) < search.before_id)
    query = query.order_by(col(Reconciliation.id).desc()).limit(search.limit + 1)
    rows = list(session.exec(query).all())
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    return SearchPage(tuple(rows), rows[-1].id if more and rows else None)


def _matches(session: Session, q: str) -> Any:
    """An invoice id, an invoice number, a customer id, an org id or an org id's prefix."""
    prefix = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    conditions = [
        col(Reconciliation.stripe_invoice_id) == q,
        col(Reconciliation.stripe_customer_id) == q,
        col(Reconciliation.org_id).like(prefix, escape="\\"),
    ]
    numbered = invoices_numbered(session, q)
    if numbered:
        conditions.append(col(Reconciliation.stripe_invoice_id).in_(numbered))
    return sa.or_(*conditions)


def invoices_numbered(session: Session, number: str) -> list[str]:
    """The invoice ids whose Stripe number is `number`, from the webhook inbox's invoice events
    (each candidate's payload is parsed and its number compared, not merely its text)."""
    escaped = number.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = session.exec(
        select(WebhookEvent.stripe_object_id, WebhookEvent.payload_json).where(
            col(WebhookEvent.type).like("invoice.%"),
            col(WebhookEvent.payload_json).like(f"%{escaped}%", escape="\\"),
        )
    ).all()
    found = []
    for object_id, payload in rows:
        invoice = _event_object(payload)
        if object_id and invoice.get("number") == number:
            found.append(object_id)
    return sorted(set(found))


@dataclass(frozen=True)
class InvoiceFacts:
    """What only Stripe's invoice events tell: its number and hosted page (once final)."""

    number: str | None = None
    hosted_invoice_url: str | None = None


def invoice_facts(session: Session, stripe_invoice_ids: Collection[str]) -> dict[str, InvoiceFacts]:
    """The latest number and hosted URL each invoice's webhook events carried."""
    if not stripe_invoice_ids:
        return {}
    rows = session.exec(
        select(WebhookEvent.stripe_object_id, WebhookEvent.payload_json)
        .where(
            col(WebhookEvent.type).like("invoice.%"),
            col(WebhookEvent.stripe_object_id).in_(list(stripe_invoice_ids)),
        )
        .order_by(col(WebhookEvent.received_at))
    ).all()
    facts: dict[str, InvoiceFacts] = {}
    for object_id, payload in rows:
        invoice = _event_object(payload)
        number, url = invoice.get("number"), invoice.get("hosted_invoice_url")
        if object_id and (number or url):
            facts[object_id] = InvoiceFacts(
                number if isinstance(number, str) else None,
                url if isinstance(url, str) else None,
            )
    return facts


def _event_object(payload: str) -> Mapping[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError:
        return {}
    found = event.get("data", {}).get("object", {}) if isinstance(event, dict) else {}
    return found if isinstance(found, dict) else {}


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
