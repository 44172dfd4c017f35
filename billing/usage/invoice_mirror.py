"""The local mirror of Stripe's invoices: how a state is stored, and when the push may trust it.

The push asks one question of each ended usage period: which invoice bills it, and is that
invoice still a draft (usage may still reach it) or final (a ledger change becomes an
adjustment on the next invoice)? Asking Stripe costs one listing per org at the month close;
the mirror answers from states Stripe already sent: `invoice.*` webhook events
(billing.reconciliation.inbox) and account-wide sweeps (billing.usage.invoice_sweep, run once
before the close fans out).

Money safety: the one dangerous wrong answer is "draft" (or "no invoice yet") for a period
whose invoice Stripe has already finalized. The push would then report the period's changed
total to the meter, where Stripe no longer bills it, instead of as an adjustment on the next
invoice: usage lost. (The opposite mistake, "final" for a draft, cannot come from the mirror:
Stripe's states only move forward, draft → open → paid | void | uncollectible, and a stored
state is replaced only by one at least as far along, so a final state was true when seen and
stays true.) The mirror never gives the dangerous answer from a stale state, because:

- Stripe finalizes a subscription's draft automatically no sooner than one hour after creating
  it: "Stripe waits an hour after the invoice.created event to finalize it" (the grace period
  in which usage may still be reported; https://docs.stripe.com/billing/subscriptions/usage-
  based/recording-usage#grace-period, https://docs.stripe.com/invoicing/integration/automatic-
  advancement-collection). A draft whose `created` is less than `TRUST_WINDOW` (50 minutes:
  ten of margin for clocks and slow requests) before `now` cannot have been finalized by
  Stripe's schedule, whatever happened since it was mirrored. An older mirrored draft is not
  trusted: the push asks Stripe.
- "No invoice for this period" is trusted only from a sweep that listed every invoice created
  since before the period ended, that started after the period ended, and that started less
  than `TRUST_WINDOW` before `now`: an invoice Stripe created after the sweep started is at most
  that old, so still a draft. Webhooks cannot prove an absence (one may be lost); a sweep can.
- An earlier finalization (by hand, or by our own `finalize`) sends `invoice.finalized`, which
  the inbox mirrors at once. A mirrored row whose lines Stripe cut short (a webhook payload of
  a long invoice) is not trusted at all.

Everything else (no covering sweep, an old draft, a period not in the mirror) falls back to the
per-org listing, as before; each fallback is logged `usage.invoice_mirror_missed` and counted
in `MIRROR_COUNTS`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from billing.core.periods import Period
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine
from models.invoice_mirror import MirrorSource, StripeInvoiceMirror, StripeInvoiceSweep

log = structlog.get_logger(__name__)

# How long a mirrored draft (after its `created`) or a sweep's "no invoice" (after the sweep
# started) is trusted: under Stripe's one hour before it finalizes a draft on its own.
TRUST_WINDOW = timedelta(minutes=50)
# The per-org listing looks from a minute before the first ended period's end; so does this.
CREATED_MARGIN = timedelta(minutes=1)
DRAFT = "draft"
VOID = "void"
STATUS_RANK = {DRAFT: 0, "open": 1, "paid": 2, VOID: 2, "uncollectible": 2}
_ROWS_PER_STATEMENT = 500  # 20 parameters a row: well under PostgreSQL's 65,535 per statement
_MAX_INT = 2**31 - 1  # the amount columns are 32-bit integers
# Answers from the mirror ("hit") and fallbacks to the per-org listing ("miss"), this process.
MIRROR_COUNTS: Counter[str] = Counter()


def status_rank(status: str | None) -> int:
    """Stripe's one-way order of invoice states; an unknown state ranks as a draft."""
    return STATUS_RANK.get(status or DRAFT, 0)


# --------------------------------------------------------------------------- storing


def upsert_invoices(
    session: Session,
    invoices: Sequence[tuple[StripeInvoice, bool]],
    *,
    source: MirrorSource,
    observed_at: datetime,
    now: datetime,
) -> None:
    """Store each (invoice, lines_complete) unless the mirror already holds a state further
    along (higher status rank), or as far along and observed later. One statement, safe
    against concurrent writers of the same invoice (a webhook and a sweep)."""
    rows = [
        _row(invoice, complete, source, observed_at, now)
        for invoice, complete in invoices
        if _storable(invoice)
    ]
    rows.sort(key=lambda row: row["stripe_invoice_id"])  # one lock order for every writer
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        _upsert_rows(session, rows[start : start + _ROWS_PER_STATEMENT])


def _upsert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    model: type[Any] = StripeInvoiceMirror
    table = model.__table__
    assert isinstance(table, sa.Table)
    statement = insert(table)  # the rows go as parameters: one compiled statement, cached
    new = statement.excluded
    newer = sa.or_(
        table.c.status_rank < new.status_rank,
        sa.and_(
            table.c.status_rank == new.status_rank,
            table.c.stripe_observed_at <= new.stripe_observed_at,
        ),
    )
    columns = [name for name in rows[0] if name != "stripe_invoice_id"]
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["stripe_invoice_id"],
            set_={name: new[name] for name in columns},
            where=newer,
        ),
        rows,
    )


def _storable(invoice: StripeInvoice) -> bool:
    """Whether the invoice fits the mirror's columns (Stripe's always do; a hostile webhook
    body may not, and must not fail the inbox's transaction)."""
    texts = (
        (invoice.stripe_invoice_id, 255),
        (invoice.stripe_customer_id, 255),
        (invoice.stripe_subscription_id or "", 255),
        (invoice.status or "", 20),
        (invoice.billing_reason or "", 50),
        (invoice.currency, 10),
    )
    amounts = (invoice.subtotal_amount, invoice.total_amount, invoice.amount_due)
    return (
        invoice.created_at is not None
        and all(text is not None and len(text) <= size for text, size in texts)
        and all(abs(amount) <= _MAX_INT for amount in amounts)
    )


def forget_draft(session: Session, stripe_invoice_id: str) -> None:
    """A deleted draft (`invoice.deleted`: only drafts can be deleted) leaves the mirror."""
    session.execute(
        sa.delete(StripeInvoiceMirror).where(
            col(StripeInvoiceMirror.stripe_invoice_id) == stripe_invoice_id,
            col(StripeInvoiceMirror.status) == DRAFT,
        )
    )


def _row(
    invoice: StripeInvoice,
    lines_complete: bool,
    source: MirrorSource,
    observed_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    return {
        "stripe_invoice_id": invoice.stripe_invoice_id,
        "stripe_customer_id": invoice.stripe_customer_id,
        "stripe_subscription_id": invoice.stripe_subscription_id,
        "status": invoice.status or DRAFT,
        "status_rank": status_rank(invoice.status),
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "subtotal_amount": invoice.subtotal_amount,
        "total_amount": invoice.total_amount,
        "amount_due": invoice.amount_due,
        "auto_advance": invoice.auto_advance,
        "created_at": invoice.created_at,
        "period_start_at": invoice.period_start_at,
        "period_end_at": invoice.period_end_at,
        "lines_json": json.dumps([_line_json(line) for line in invoice.lines]),
        "lines_complete": lines_complete,
        "metadata_json": json.dumps(dict(invoice.metadata)),
        "source": source.value,
        "stripe_observed_at": observed_at,
        "synced_at": now,
    }


def _line_json(line: StripeInvoiceLine) -> dict[str, Any]:
    return {
        "id": line.stripe_invoice_line_id,
        "amount": line.amount,
        "currency": line.currency,
        "description": line.description,
        "quantity_decimal": None if line.quantity_decimal is None else str(line.quantity_decimal),
        "price": line.stripe_price_id,
        "proration": line.proration,
        "subscription_item": line.stripe_subscription_item_id,
        "invoice_item": line.stripe_invoice_item_id,
        "period_start": _unix(line.period_start_at),
        "period_end": _unix(line.period_end_at),
        "metadata": dict(line.metadata),
    }


def _unix(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _at(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _line(data: dict[str, Any]) -> StripeInvoiceLine:
    quantity = data["quantity_decimal"]
    return StripeInvoiceLine(
        stripe_invoice_line_id=data["id"],
        amount=data["amount"],
        currency=data["currency"],
        description=data["description"],
        quantity_decimal=None if quantity is None else Decimal(quantity),
        stripe_price_id=data["price"],
        proration=data["proration"],
        stripe_subscription_item_id=data["subscription_item"],
        stripe_invoice_item_id=data["invoice_item"],
        period_start_at=_at(data["period_start"]),
        period_end_at=_at(data["period_end"]),
        metadata=data["metadata"],
    )


def mirrored_invoice(row: StripeInvoiceMirror) -> StripeInvoice:
    return StripeInvoice(
        stripe_invoice_id=row.stripe_invoice_id,
        stripe_customer_id=row.stripe_customer_id,
        stripe_subscription_id=row.stripe_subscription_id,
        status=row.status,
        billing_reason=row.billing_reason,
        currency=row.currency,
        subtotal_amount=row.subtotal_amount,
        total_amount=row.total_amount,
        amount_due=row.amount_due,
        auto_advance=row.auto_advance,
        period_start_at=row.period_start_at,
        period_end_at=row.period_end_at,
        created_at=row.created_at,
        lines=tuple(_line(line) for line in json.loads(row.lines_json)),
        metadata=json.loads(row.metadata_json),
    )


# --------------------------------------------------------------------------- reading


def match_periods(
    invoices: Sequence[StripeInvoice], item_ids: set[str]
) -> dict[datetime, StripeInvoice]:
    """By period start, the first (newest) invoice not void holding a line of one of the
    subscription's metered items for that period."""
    found: dict[datetime, StripeInvoice] = {}
    for invoice in invoices:
        if invoice.status == VOID:
            continue
        for line in invoice.lines:
            if line.stripe_subscription_item_id in item_ids and line.period_start_at:
                found.setdefault(line.period_start_at, invoice)
    return found


def mirrored_periods(  # noqa: PLR0917 - the listing's question, and the rows if already read
    session: Session,
    stripe_subscription_id: str,
    item_ids: set[str],
    ended: Sequence[Period],
    now: datetime,
    rows: Sequence[StripeInvoiceMirror] | None = None,
) -> dict[datetime, StripeInvoice] | None:
    """What the per-org listing would say of the ended periods, from the mirror; None when the
    mirror cannot be trusted for one of them (see the module's docstring). `rows`: the
    subscription's mirrored invoices already read (mirror_rows), else they are read here."""
    created_from = ended[0].period_end - CREATED_MARGIN
    if rows is None:
        rows = mirror_rows(session, [stripe_subscription_id], created_from).get(
            stripe_subscription_id, []
        )
    else:
        rows = [row for row in rows if row.created_at >= created_from]
    if not all(row.lines_complete for row in rows):
        _miss(stripe_subscription_id, "lines_incomplete")
        return None
    found = match_periods([mirrored_invoice(row) for row in rows], item_ids)
    swept_at: datetime | None = None
    for period in ended:
        invoice = found.get(period.period_start)
        if invoice is None:
            swept_at = swept_at or _covering_sweep(session, created_from, ended[-1], now)
            if swept_at is None or now >= swept_at + TRUST_WINDOW:
                _miss(stripe_subscription_id, "no_covering_sweep")
                return None
        elif invoice.status == DRAFT:
            assert invoice.created_at is not None  # mirrored rows always have one
            if now >= invoice.created_at + TRUST_WINDOW:
                _miss(stripe_subscription_id, "draft_too_old")
                return None
    MIRROR_COUNTS["hit"] += 1
    return found


def mirror_rows(
    session: Session, stripe_subscription_ids: Collection[str], created_from: datetime
) -> dict[str, list[StripeInvoiceMirror]]:
    """By subscription, its mirrored invoices created since `created_from`, newest first."""
    found: dict[str, list[StripeInvoiceMirror]] = {}
    for row in session.exec(
        select(StripeInvoiceMirror)
        .where(
            col(StripeInvoiceMirror.stripe_subscription_id).in_(list(stripe_subscription_ids)),
            col(StripeInvoiceMirror.created_at) >= created_from,
        )
        .order_by(
            col(StripeInvoiceMirror.created_at).desc(),
            col(StripeInvoiceMirror.stripe_invoice_id).desc(),
        )
    ):
        found.setdefault(row.stripe_subscription_id or "", []).append(row)
    return found


def _covering_sweep(
    session: Session, created_from: datetime, last: Period, now: datetime
) -> datetime | None:
    """The start of the latest finished sweep that listed invoices created since
    `created_from` and began after `last` ended (and not after `now`)."""
    started: datetime | None = session.exec(
        select(sa.func.max(StripeInvoiceSweep.started_at)).where(
            col(StripeInvoiceSweep.finished_at).is_not(None),
            col(StripeInvoiceSweep.created_from_at) <= created_from,
            col(StripeInvoiceSweep.started_at) >= last.period_end,
            col(StripeInvoiceSweep.started_at) <= now,
        )
    ).one()
    if started is not None and started.tzinfo is None:  # SQLite: a bare aggregate is naive
        started = started.replace(tzinfo=UTC)
    return started


def _miss(stripe_subscription_id: str, reason: str) -> None:
    MIRROR_COUNTS["miss"] += 1
    MIRROR_COUNTS[f"miss:{reason}"] += 1
    log.info(
        "usage.invoice_mirror_missed",
        stripe_subscription_id=stripe_subscription_id,
        reason=reason,
    )
