"""The Reconciler service: compares Stripe invoices with the ledger and stores every result.

Which expected lines belong on which invoice: a `subscription_create` invoice carries the
upfront seats of the first term; a `subscription_cycle` invoice at boundary B carries the usage,
seat prorations and minimum of the monthly usage period ending at B plus the upfront seats of a
term beginning at B (renewals are billed in advance); any other invoice is compared only on
what it holds (seat prorations at their instants, adjustments by invoice item). Results are
append-only: reconciling again adds a new row.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.core.components import SEAT_PRORATION, SEATS
from billing.core.periods import Period, add_months, month_period_of
from billing.ledger.expected_invoice import (
    ExpectedInvoice,
    ExpectedLine,
    UnknownOrgError,
)
from billing.ledger.queries import expected_invoice
from billing.pricing.book import PriceBookError, UnknownTermsError
from billing.pricing.book_cache import BookCache
from billing.reconciliation.holds import hold_or_release
from billing.reconciliation.match import (
    InvoiceComparison,
    LineComparison,
    MeterFacts,
    Status,
    compare_invoice,
)
from billing.reconciliation.records import (
    adjustments,
    component_map,
    latest_statuses,
    meter_facts,
    meter_ids,
    org_of,
    pushed_prorations,
    usage_period_ending,
)
from billing.stripe_gateway.records import StripeInvoice, StripeMeterEventSummary
from models.db import unit_of_work
from models.reconciliation import Reconciliation, ReconciliationLine

log = structlog.get_logger(__name__)

# A term found within this much of the invoice's boundary is the one it bills (the ledger's
# term start and Stripe's anchor are written by different clocks).
BOUNDARY_SLACK = timedelta(hours=1)
DEFAULT_HOLD_ON: frozenset[Status] = frozenset(
    {Status.MISMATCHED, Status.MISSING_IN_STRIPE, Status.UNEXPECTED_IN_STRIPE}
)


class ReconciliationGateway(Protocol):
    """The part of the Stripe gateway reconciliation uses (a fake in service tests)."""

    def retrieve_invoice(self, stripe_invoice_id: str) -> StripeInvoice: ...

    def list_invoices(
        self,
        *,
        stripe_customer_id: str | None = None,
        stripe_subscription_id: str | None = None,
        status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None,
        created_from_at: datetime | None = None,
        created_before_at: datetime | None = None,
    ) -> list[StripeInvoice]: ...

    def set_invoice_auto_advance(
        self, stripe_invoice_id: str, *, auto_advance: bool, idempotency_key: str
    ) -> StripeInvoice: ...

    def list_meter_event_summaries(
        self,
        stripe_meter_id: str,
        *,
        stripe_customer_id: str,
        start_at: datetime,
        end_at: datetime,
        value_grouping_window: Literal["day", "hour"] | None = None,
    ) -> list[StripeMeterEventSummary]: ...


@dataclass(frozen=True)
class HoldPolicy:
    """Which invoice statuses hold a draft (auto_advance=false); `rounding` never does."""

    hold_on: frozenset[Status] = DEFAULT_HOLD_ON

    @classmethod
    def parse(cls, text: str) -> HoldPolicy:
        """`mismatched,missing_in_stripe` → a policy; unknown names raise ValueError."""
        names = [part.strip() for part in text.split(",") if part.strip()]
        statuses = frozenset(Status(name) for name in names)
        if Status.ROUNDING in statuses or Status.MATCHED in statuses:
            raise ValueError("matched and rounding invoices are never held")
        return cls(statuses)

    def holds(self, status: Status) -> bool:
        return status in self.hold_on


@dataclass(frozen=True)
class ReconciliationOutcome:
    reconciliation_id: int
    stripe_invoice_id: str
    org_id: str | None
    status: Status
    held: bool
    lines: tuple[LineComparison, ...] = ()


@dataclass(frozen=True)
class SweepOutcome:
    listed: int
    reconciled: tuple[ReconciliationOutcome, ...]


@dataclass(frozen=True)
class _Selection:
    lines: tuple[ExpectedLine, ...]
    period: Period | None
    expected: ExpectedInvoice | None  # the usage period's (for terms and traces)


class Reconciler:
    """Reconciles one invoice, a period's invoices, or the recent ones (the sweep)."""

    def __init__(
        self,
        engine: Engine,
        gateway: ReconciliationGateway,
        books: BookCache | None = None,
        *,
        hold_policy: HoldPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.books = books or BookCache()
        self.hold_policy = hold_policy or HoldPolicy()

    # ------------------------------------------------------------------ entry points

    def reconcile_invoice(
        self, stripe_invoice_id: str, now: datetime, *, trigger: str, hold: bool = False
    ) -> ReconciliationOutcome:
        """Read the invoice (all lines) from Stripe, compare, store; hold a bad draft if asked."""
        invoice = self.gateway.retrieve_invoice(stripe_invoice_id)
        return self.reconcile(invoice, now, trigger=trigger, hold=hold)

    def reconcile(
        self, invoice: StripeInvoice, now: datetime, *, trigger: str, hold: bool = False
    ) -> ReconciliationOutcome:
        assert invoice.stripe_invoice_id is not None, "previews are not reconciled"
        org_id, period, comparison, note = self._comparison(invoice)
        status = Status.ERROR if comparison is None else comparison.status
        held, note = hold_or_release(
            self.engine,
            self.gateway,
            self.hold_policy,
            invoice,
            comparison,
            status,
            hold=hold,
            note=note,
        )
        rec_id = self._store(invoice, org_id, period, comparison, status, trigger, held, note, now)
        log.info(
            "reconciliation.reconciled",
            reconciliation_id=rec_id,
            stripe_invoice_id=invoice.stripe_invoice_id,
            org_id=org_id,
            status=status.value,
            held=held,
            trigger=trigger,
        )
        if held:
            log.warning(
                "reconciliation.invoice_held",
                stripe_invoice_id=invoice.stripe_invoice_id,
                org_id=org_id,
                status=status.value,
            )
        return ReconciliationOutcome(
            rec_id,
            invoice.stripe_invoice_id,
            org_id,
            status,
            held,
            () if comparison is None else comparison.lines,
        )

    def reconcile_period(self, period: Period, now: datetime) -> list[ReconciliationOutcome]:
        """Every invoice whose compared period is `period` (created from its start to a day
        after its end, so the cycle invoice at its end is included)."""
        invoices = self.gateway.list_invoices(
            created_from_at=period.period_start,
            created_before_at=period.period_end + timedelta(days=1),
        )
        outcomes = []
        for invoice in sorted(invoices, key=lambda i: (i.created_at or now, i.stripe_invoice_id)):
            with Session(self.engine) as session:
                org_id = org_of(session, invoice.stripe_customer_id)
                target = None if org_id is None else self._period_of(session, invoice, org_id)
            if target is not None and target.label() == period.label():
                outcomes.append(self.reconcile(invoice, now, trigger="cli"))
        return outcomes

    def sweep(self, now: datetime, lookback: timedelta) -> SweepOutcome:
        """Reconcile recent invoices whose status changed since their last reconciliation
        (or that were never reconciled), and every draft: a missed webhook loses nothing, a
        draft that went wrong in its grace period is held, and one we held that is right
        again is released."""
        invoices = self.gateway.list_invoices(
            created_from_at=now - lookback, created_before_at=now + timedelta(seconds=1)
        )
        done = []
        with Session(self.engine) as session:
            seen = latest_statuses(session, [i.stripe_invoice_id or "" for i in invoices])
        for invoice in invoices:
            invoice_id = invoice.stripe_invoice_id or ""
            if invoice.status != "draft" and seen.get(invoice_id, "") == invoice.status:
                continue
            done.append(
                self.reconcile(invoice, now, trigger="sweep", hold=invoice.status == "draft")
            )
        log.info("reconciliation.swept", listed=len(invoices), reconciled=len(done))
        return SweepOutcome(len(invoices), tuple(done))

    def _comparison(
        self, invoice: StripeInvoice
    ) -> tuple[str | None, Period | None, InvoiceComparison | None, str | None]:
        """The invoice's org, compared period and comparison, or why there is none. The
        ledger is read first; a draft's metered lines are then refreshed from Stripe's meters
        with the database closed."""
        period: Period | None = None
        with Session(self.engine) as session:
            org_id = org_of(session, invoice.stripe_customer_id)
            if org_id is None:
                unknown = f"customer {invoice.stripe_customer_id} is not one of our orgs"
                return None, None, None, unknown
            try:
                selection = self._select(session, invoice, org_id)
                period = selection.period
                comparison = self._compare(session, invoice, org_id, selection)
            except (UnknownOrgError, UnknownTermsError, PriceBookError) as exc:
                return org_id, period, None, str(exc)
            draft = invoice.status == "draft" and period is not None
            ids = meter_ids(session) if draft else {}
        if draft and period is not None:
            comparison = self._refreshed_draft(invoice, comparison, period, ids)
        return org_id, period, comparison, None

    # ------------------------------------------------------------------ selection

    def _period_of(self, session: Session, invoice: StripeInvoice, org_id: str) -> Period | None:
        if invoice.billing_reason == "subscription_create":
            start = invoice.period_start_at or invoice.created_at
            return None if start is None else Period(start, add_months(start, 1))
        if invoice.billing_reason == "subscription_cycle" and invoice.period_end_at:
            return usage_period_ending(session, org_id, invoice.period_end_at)
        return None

    def _select(self, session: Session, invoice: StripeInvoice, org_id: str) -> _Selection:
        period = self._period_of(session, invoice, org_id)
        if invoice.billing_reason == "subscription_create" and period is not None:
            lines = self._upfront_seats(session, org_id, period.period_start)
            return _Selection(lines, period, None)
        if invoice.billing_reason == "subscription_cycle" and period is not None:
            usage = expected_invoice(session, org_id, period, self.books)
            arrears = tuple(
                line for line in usage.lines if line.code not in (SEATS, SEAT_PRORATION)
            )
            # Stripe sweeps a proration into the first invoice it creates after the quantity
            # change reached it: a step of the period's last minutes, synced after the period
            # ended, is billed (and expected) on the next invoice.
            pushed = self._prorations_at(
                session,
                org_id,
                pushed_prorations(
                    session, org_id, period.period_start, invoice.created_at or period.period_end
                ),
            )
            renewal = self._upfront_seats(session, org_id, period.period_end)
            return _Selection(arrears + pushed + renewal, period, usage)
        return _Selection(self._held_prorations(session, invoice, org_id), None, None)

    def _upfront_seats(
        self, session: Session, org_id: str, boundary: datetime
    ) -> tuple[ExpectedLine, ...]:
        window = Period(boundary - BOUNDARY_SLACK, add_months(boundary, 1))
        try:
            found = expected_invoice(session, org_id, window, self.books)
        except UnknownOrgError:
            return ()
        return tuple(
            line
            for line in found.lines
            if line.code == SEATS
            and line.period_start is not None
            and abs(line.period_start - boundary) <= BOUNDARY_SLACK
        )

    def _held_prorations(
        self, session: Session, invoice: StripeInvoice, org_id: str
    ) -> tuple[ExpectedLine, ...]:
        """For other invoices: the expected seat steps at the instants Stripe prorated."""
        instants = {
            line.period_start_at
            for line in invoice.lines
            if line.proration and line.period_start_at
        }
        return self._prorations_at(session, org_id, instants)

    def _prorations_at(
        self, session: Session, org_id: str, instants: Collection[datetime]
    ) -> tuple[ExpectedLine, ...]:
        """The expected seat steps (ledger lines) prorated at these instants."""
        lines: list[ExpectedLine] = []
        for month in sorted({month_period_of(at) for at in instants}):
            found = expected_invoice(session, org_id, month, self.books)
            lines.extend(
                line
                for line in found.lines
                if line.code == SEAT_PRORATION and line.proration_at in instants
            )
        return tuple(lines)

    # ------------------------------------------------------------------ comparison

    def _compare(
        self, session: Session, invoice: StripeInvoice, org_id: str, selection: _Selection
    ) -> InvoiceComparison:
        components = component_map(session, org_id)
        terms = None
        facts: dict[str, MeterFacts] = {}
        if selection.expected is not None and selection.period is not None:
            exp = selection.expected
            terms = self.books.terms(exp.book, exp.plan, exp.interval, org_id)
            facts = meter_facts(session, org_id, selection.period)
        return compare_invoice(
            invoice,
            selection.lines,
            components,
            terms=terms,
            meter_facts=facts,
            adjustments=adjustments(session, invoice),
        )

    def _refreshed_draft(
        self,
        invoice: StripeInvoice,
        comparison: InvoiceComparison,
        period: Period,
        ids: Mapping[str, str],
    ) -> InvoiceComparison:
        """A draft's metered lines are refreshed from the meter at finalization: a quantity
        the meter already holds (pushed during the grace period) is not a discrepancy.
        `ids` are the Stripe meter ids by meter code."""
        lines = []
        for line in comparison.lines:
            meter_id = ids.get(line.component)
            if (
                line.status is Status.MISMATCHED
                and meter_id is not None
                and line.expected_quantity is not None
                and line.stripe_quantity != line.expected_quantity
            ):
                held = self._meter_value(meter_id, invoice.stripe_customer_id, period)
                if held == line.expected_quantity:
                    why = (
                        f"{line.component}: draft line shows {line.stripe_quantity}, Stripe's "
                        f"meter now holds {held} as the ledger does; refreshed at finalization"
                    )
                    trace = {**line.trace, "verdict": why, "stripe_meter_value": str(held)}
                    lines.append(
                        LineComparison(
                            line.component,
                            Status.MATCHED,
                            line.expected_quantity,
                            line.expected_amount,
                            line.stripe_quantity,
                            line.stripe_amount,
                            why,
                            trace,
                        )
                    )
                    continue
            lines.append(line)
        return InvoiceComparison(tuple(lines))

    def _meter_value(self, meter_id: str, customer_id: str, period: Period) -> Decimal | None:
        summaries = self.gateway.list_meter_event_summaries(
            meter_id,
            stripe_customer_id=customer_id,
            start_at=period.period_start,
            end_at=period.period_end,
        )
        if not summaries:
            return None
        return sum((s.aggregated_value for s in summaries), Decimal(0))

    # ------------------------------------------------------------------ storage

    def _store(  # noqa: PLR0917 - one row from the parts computed above
        self,
        invoice: StripeInvoice,
        org_id: str | None,
        period: Period | None,
        comparison: InvoiceComparison | None,
        status: Status,
        trigger: str,
        held: bool,
        note: str | None,
        now: datetime,
    ) -> int:
        with unit_of_work(self.engine) as session:
            row = Reconciliation(
                stripe_invoice_id=invoice.stripe_invoice_id or "",
                stripe_customer_id=invoice.stripe_customer_id,
                org_id=org_id,
                invoice_status=invoice.status,
                billing_reason=invoice.billing_reason,
                period=None if period is None else period.label(),
                period_start_at=None if period is None else period.period_start,
                period_end_at=None if period is None else period.period_end,
                currency=invoice.currency,
                status=status.value,
                expected_total_amount=0 if comparison is None else comparison.expected_total_amount,
                stripe_total_amount=sum(line.amount for line in invoice.lines),
                trigger=trigger,
                held=held,
                note=note,
                created_at=now,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            for position, line in enumerate(() if comparison is None else comparison.lines):
                session.add(
                    ReconciliationLine(
                        reconciliation_id=row.id,
                        position=position,
                        component=line.component,
                        status=line.status.value,
                        expected_quantity=line.expected_quantity,
                        expected_amount=line.expected_amount,
                        stripe_quantity=line.stripe_quantity,
                        stripe_amount=line.stripe_amount,
                        difference_amount=line.difference_amount,
                        explanation=line.explanation,
                        trace_json=json.dumps(line.trace, default=str, sort_keys=True),
                    )
                )
            return row.id


def statuses_of(lines: Iterable[LineComparison]) -> Mapping[str, str]:
    """Component → status, for logs and tests."""
    return {line.component: line.status.value for line in lines}


__all__: Sequence[str] = (
    "DEFAULT_HOLD_ON",
    "HoldPolicy",
    "Reconciler",
    "ReconciliationGateway",
    "ReconciliationOutcome",
    "SweepOutcome",
    "statuses_of",
)
