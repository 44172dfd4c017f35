"""The account-wide invoice sweep: every invoice created since an instant, listed a page at a
time into the local mirror (billing.usage.invoice_mirror), and recorded as a sweep.

One request per 100 invoices (plus one per invoice whose lines Stripe cut short) replaces the
month close's one listing per org. A sweep counts as covering only once it has finished: a
crash half-way leaves a sweep row without `finished_at`, which the push never trusts.

A sweep runs in steps (`sweep_step`): the month close makes each step a task of its own, so a
sweep of thousands of pages never outlives a task's time limit or the broker's visibility
timeout, and a step delivered twice saves its progress once (the other delivery stops).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
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


@dataclass(frozen=True)
class SweepStep:
    """Where a sweep stands after a step: `step` is the next step's number."""

    sweep_id: int
    step: int
    finished: bool
    superseded: bool = False  # another delivery saved this step first: this one stops here


def begin_sweep(engine: Engine, created_from_at: datetime, now: datetime) -> int:
    """A new sweep of every invoice created since `created_from_at`, as observed at `now`."""
    with unit_of_work(engine) as session:
        sweep = StripeInvoiceSweep(created_from_at=created_from_at, started_at=now)
        session.add(sweep)
        session.flush()
        assert sweep.id is not None
        return sweep.id


def sweep_step(
    engine: Engine,
    gateway: AccountInvoiceLister,
    sweep_id: int,
    step: int,
    *,
    max_pages: int | None = None,
    max_seconds: float | None = None,
) -> SweepStep:
    """Step `step` of a sweep: pages from where the last step stopped, each committed to the
    mirror as it comes, until the listing ends or a bound is reached; then the progress,
    saved only if no other delivery saved this step first (a compare-and-set on `step`)."""
    with unit_of_work(engine) as session:
        row = session.get(StripeInvoiceSweep, sweep_id)
        if row is None:
            raise ValueError(f"no invoice sweep {sweep_id}")
        if row.finished_at is not None or row.step != step:
            return SweepStep(sweep_id, row.step, row.finished_at is not None, superseded=True)
        created_from_at, observed_at, cursor = row.created_from_at, row.started_at, row.cursor
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    invoices = pages = line_requests = 0
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
                observed_at=observed_at,
                now=observed_at,
            )
        cursor = page.next_starting_after
        if cursor is None or pages == max_pages or (deadline and time.monotonic() >= deadline):
            break
    counted = (invoices, pages, line_requests)
    saved = _save_step(engine, sweep_id, step, cursor, counted)
    return SweepStep(sweep_id, step + 1, cursor is None, superseded=not saved)


def _save_step(
    engine: Engine, sweep_id: int, step: int, cursor: str | None, counted: tuple[int, int, int]
) -> bool:
    table = StripeInvoiceSweep.__table__  # type: ignore[attr-defined]
    invoices, pages, line_requests = counted
    values: dict[str, Any] = {
        "step": step + 1,
        "cursor": cursor,
        "invoice_count": table.c.invoice_count + invoices,
        "page_requests": table.c.page_requests + pages,
        "line_requests": table.c.line_requests + line_requests,
    }
    if cursor is None:  # the listing's end: the sweep covers from now on
        values["finished_at"] = table.c.started_at
    with unit_of_work(engine) as session:
        result = session.connection().execute(
            sa.update(table)
            .where(table.c.id == sweep_id, table.c.step == step, table.c.finished_at.is_(None))
            .values(**values)
        )
        return bool(result.rowcount)


def sweep_outcome(engine: Engine, sweep_id: int) -> InvoiceSweepOutcome:
    with unit_of_work(engine) as session:
        row = session.get(StripeInvoiceSweep, sweep_id)
        assert row is not None
        return InvoiceSweepOutcome(
            sweep_id, row.created_from_at, row.invoice_count, row.page_requests, row.line_requests
        )


def sweep_invoices(
    engine: Engine, gateway: AccountInvoiceLister, created_from_at: datetime, now: datetime
) -> InvoiceSweepOutcome:
    """List every invoice of the account created at or after `created_from_at` into the
    mirror, as observed at `now`, in this process (one step to the end)."""
    sweep_id = begin_sweep(engine, created_from_at, now)
    sweep_step(engine, gateway, sweep_id, 0)
    outcome = sweep_outcome(engine, sweep_id)
    log.info(
        "usage.invoices_swept",
        sweep_id=sweep_id,
        invoices=outcome.invoice_count,
        page_requests=outcome.page_requests,
        line_requests=outcome.line_requests,
    )
    return outcome


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
