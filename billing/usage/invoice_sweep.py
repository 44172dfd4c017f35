"""The account-wide invoice sweep: every invoice created since an instant, listed a page at a
time into the local mirror (billing.usage.invoice_mirror), and recorded as a sweep.

One request per 100 invoices (plus one per invoice whose lines Stripe cut short) replaces the
month close's one listing per org. A sweep counts as covering only once it has finished: a
crash half-way leaves a sweep row without `finished_at`, which the push never trusts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from billing.stripe_gateway.invoice_reads import InvoicePage
from billing.stripe_gateway.records import StripeInvoice
from billing.usage.invoice_mirror import upsert_invoices
from models.db import unit_of_work
from models.invoice_mirror import MirrorSource, StripeInvoiceSweep

log = structlog.get_logger(__name__)


class AccountInvoiceLister(Protocol):
    def list_account_invoices(
        self, *, created_from_at: datetime, starting_after: str | None = None
    ) -> InvoicePage: ...


@dataclass(frozen=True)
class InvoiceSweepOutcome:
    sweep_id: int
    created_from_at: datetime
    invoice_count: int
    page_requests: int
    line_requests: int


def sweep_invoices(
    engine: Engine, gateway: AccountInvoiceLister, created_from_at: datetime, now: datetime
) -> InvoiceSweepOutcome:
    """List every invoice of the account created at or after `created_from_at` into the
    mirror, as observed at `now`; each page is committed as it comes."""
    with unit_of_work(engine) as session:
        sweep = StripeInvoiceSweep(created_from_at=created_from_at, started_at=now)
        session.add(sweep)
        session.flush()
        assert sweep.id is not None
        sweep_id = sweep.id
    invoices = pages = line_requests = 0
    cursor: str | None = None
    while True:
        page = gateway.list_account_invoices(created_from_at=created_from_at, starting_after=cursor)
        pages += 1
        line_requests += page.line_requests
        invoices += len(page.invoices)
        with unit_of_work(engine) as session:
            upsert_invoices(
                session,
                [(invoice, True) for invoice in page.invoices],
                source=MirrorSource.SWEEP,
                observed_at=now,
                now=now,
            )
        cursor = page.next_starting_after
        if cursor is None:
            break
    with unit_of_work(engine) as session:
        row = session.get(StripeInvoiceSweep, sweep_id)
        assert row is not None
        row.finished_at = now
        row.invoice_count, row.page_requests, row.line_requests = invoices, pages, line_requests
    log.info(
        "usage.invoices_swept",
        sweep_id=sweep_id,
        invoices=invoices,
        page_requests=pages,
        line_requests=line_requests,
    )
    return InvoiceSweepOutcome(sweep_id, created_from_at, invoices, pages, line_requests)


def record_listing(
    engine: Engine, invoices: Sequence[StripeInvoice], created_from_at: datetime, now: datetime
) -> None:
    """A complete listing made elsewhere (every invoice created from `created_from_at` up to
    `now`, each with all its lines: the reconciliation sweep's) feeds the mirror as a finished
    sweep would. Best effort: a database error is logged, and the listing's own work goes on
    (the push then asks Stripe, as without a mirror)."""
    try:
        _record_listing(engine, invoices, created_from_at, now)
    except SQLAlchemyError as exc:
        log.warning("usage.invoice_listing_not_mirrored", error=str(exc))


def _record_listing(
    engine: Engine, invoices: Sequence[StripeInvoice], created_from_at: datetime, now: datetime
) -> None:
    with unit_of_work(engine) as session:
        upsert_invoices(
            session,
            [(invoice, True) for invoice in invoices],
            source=MirrorSource.SWEEP,
            observed_at=now,
            now=now,
        )
        session.add(
            StripeInvoiceSweep(
                created_from_at=created_from_at,
                started_at=now,
                finished_at=now,
                invoice_count=len(invoices),
            )
        )
