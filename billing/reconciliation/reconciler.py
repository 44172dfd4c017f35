"""The Reconciler service: compares Stripe invoices with the ledger and stores every result.

What each invoice must hold comes from the ledger and the price book alone
(billing.reconciliation.expectations; late usage in billing.reconciliation.late_usage); push
records only explain timing, through named rules shown in the trace. Each invoice is read in
three steps: the ledger (database), then Stripe (the org's earlier invoices when late usage is
expected, the meters when a draft shows a stale quantity) with the database closed, then the
pure comparison, on amounts, of what Stripe bills or will bill at finalization; a draft whose
meters lag our pushes waits (`awaiting_usage`, billing.reconciliation.usage_lag). Results are
append-only: reconciling again adds a new row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.alerts.triggers import note_reconciliation
from billing.core.components import MINIMUM
from billing.core.periods import Period
from billing.ledger.expected_invoice import UnknownOrgError
from billing.pricing.book import MeterPrice, PriceBookError, Terms, UnknownTermsError
from billing.pricing.book_cache import BookCache
from billing.reconciliation.balance import carried_credit
from billing.reconciliation.component_map import ADJUSTMENT, ComponentMap
from billing.reconciliation.drafts import project_draft
from billing.reconciliation.expectations import (
    BOUNDARY_SLACK,
    Selection,
    TimingNote,
    invoice_period,
    select_expected,
)
from billing.reconciliation.holds import DEFAULT_HOLD_ON, HoldPolicy, hold_or_release, still_held
from billing.reconciliation.late_usage import (
    RULE_LATE_USAGE_JUST_BEFORE_DRAFT,
    LatePeriod,
    LateUsage,
    after_end_period,
    billed_for,
    describe_rule,
    late_periods,
)
from billing.reconciliation.match import (
    ExpectedCharge,
    InvoiceComparison,
    LineComparison,
    Status,
    compare_invoice,
    period_start_of_item,
)
from billing.reconciliation.records import (
    component_map,
    latest_statuses,
    meter_facts,
    meter_ids,
    meter_prices,
    org_of,
)
from billing.reconciliation.rejections import with_rejections
from billing.reconciliation.traces import MeterFacts
from billing.reconciliation.usage_lag import (
    DEFAULT_USAGE_DEADLINE,
    UsageLag,
    draft_differs,
    pushed_totals,
    usage_lag,
)
from billing.stripe_gateway.ports import MeterSummaryReader
from billing.stripe_gateway.records import (
    StripeInvoice,
    StripeInvoiceLine,
)
from billing.usage.invoice_sweep import record_listing
from models.db import unit_of_work
from models.reconciliation import Reconciliation, ReconciliationLine

log = structlog.get_logger(__name__)


class ReconciliationGateway(MeterSummaryReader, Protocol):
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
class _LedgerSide:
    """What the ledger and our catalog say about one invoice, read before Stripe is."""

    selection: Selection
    components: ComponentMap
    terms: Terms | None
    facts: Mapping[str, MeterFacts]
    late: tuple[LatePeriod, ...]
    late_since: Period | None = None  # a one-off invoice after the end: late usage since then
    meter_ids: Mapping[str, str] = field(default_factory=dict)
    prices: Mapping[str, MeterPrice] = field(default_factory=dict)
    pushed: Mapping[str, Decimal] = field(default_factory=dict)  # a draft's sent totals


class Reconciler:
    """Reconciles one invoice, a period's invoices, or the recent ones (the sweep)."""

    def __init__(
        self,
        engine: Engine,
        gateway: ReconciliationGateway,
        books: BookCache | None = None,
        *,
        hold_policy: HoldPolicy | None = None,
        usage_deadline: timedelta = DEFAULT_USAGE_DEADLINE,
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.books = books or BookCache()
        self.hold_policy = hold_policy or HoldPolicy()
        # A draft whose meters lag our pushes waits for them until this long after its period.
        self.usage_deadline = usage_deadline

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
        org_id, period, comparison, note, lag = self._comparison(invoice)
        status = Status.ERROR if comparison is None else comparison.status
        if lag is not None and lag.waiting(now):
            # Not judged yet: neither held nor released; checked again (worker, sweep).
            status, held, note = Status.AWAITING_USAGE, still_held(self.engine, invoice), lag.note()
        else:
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
        note = with_rejections(self.engine, note, org_id, period, lag)
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
                target = None if org_id is None else invoice_period(session, invoice, org_id)
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
        record_listing(self.engine, invoices, now - lookback, now)  # the invoice mirror's too
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
    ) -> tuple[str | None, Period | None, InvoiceComparison | None, str | None, UsageLag | None]:
        """The invoice's org, compared period and comparison, or why there is none; and for a
        draft whose usage we pushed, the meters whose Stripe summaries lag our pushes."""
        with Session(self.engine) as session:
            org_id = org_of(session, invoice.stripe_customer_id)
            if org_id is None:
                unknown = f"customer {invoice.stripe_customer_id} is not one of our orgs"
                return None, None, None, unknown, None
            try:
                side = self._ledger_side(session, invoice, org_id)
            except (UnknownOrgError, UnknownTermsError, PriceBookError) as exc:
                return org_id, invoice_period(session, invoice, org_id), None, str(exc), None
        # Stripe is read with the database closed.
        late = self._late_usage(invoice, side)
        period = side.selection.period
        comparison = compare_invoice(
            invoice,
            side.selection.lines,
            side.components,
            terms=side.terms,
            meter_facts=side.facts,
            adjustment=None if late is None else late[0],
            own_period_start=None if period is None else period.period_start,
            notes=_notes(side.selection.notes, () if late is None else late[1]),
            balance=self._balance(invoice),
        )
        lag = None
        if invoice.status == "draft" and period is not None:
            read = self._meter_reader(invoice.stripe_customer_id, period)
            deadline_at = period.period_end + self.usage_deadline
            lag = usage_lag(side.pushed, comparison.lines, side.meter_ids, read, deadline_at)
            values = self._stale_meter_values(comparison, side.meter_ids, read, side.pushed)
            comparison = project_draft(comparison, invoice, side.components, side.prices, values)
        return org_id, period, comparison, None, lag

    def _balance(self, invoice: StripeInvoice) -> ExpectedCharge | None:
        return carried_credit(self.engine, self.gateway, invoice)

    def _ledger_side(self, session: Session, invoice: StripeInvoice, org_id: str) -> _LedgerSide:
        """Everything the ledger and our catalog say about the invoice (database only)."""
        selection = select_expected(session, invoice, org_id, self.books)
        terms = None
        facts: dict[str, MeterFacts] = {}
        late: tuple[LatePeriod, ...] = ()
        if selection.expected is not None and selection.period is not None:
            exp, period = selection.expected, selection.period
            terms = self.books.terms(exp.book, exp.plan, exp.interval, org_id)
            facts = meter_facts(session, org_id, period)
            if invoice.billing_reason == "subscription_cycle":
                drafted_at = invoice.created_at or period.period_end
                late = late_periods(session, org_id, period, drafted_at, self.books)
        since = after_end_period(session, org_id, invoice)
        if since is not None:  # billing.usage.after_end: late usage of an ended subscription
            late = late_periods(session, org_id, since, since.period_end, self.books)
        draft = invoice.status == "draft"
        pushed = {}
        if draft and terms is not None and selection.period is not None:
            pushed = pushed_totals(session, org_id, selection.period, terms)
        return _LedgerSide(
            selection=selection,
            components=component_map(session, org_id),
            terms=terms,
            facts=facts,
            late=late,
            late_since=since,
            meter_ids=meter_ids(session, terms.book if terms else None) if draft else {},
            prices=meter_prices(session, self.books) if draft else {},
            pushed=pushed,
        )

    def _late_usage(
        self, invoice: StripeInvoice, side: _LedgerSide
    ) -> tuple[ExpectedCharge, tuple[TimingNote, ...]] | None:
        """The adjustment a cycle invoice must hold for earlier periods' late usage, from
        Stripe's own earlier invoices of the org (one listing, only when the ledger has
        late usage)."""
        period = side.selection.period or side.late_since
        if period is None or (
            invoice.billing_reason != "subscription_cycle" and not side.late_since
        ):
            return None
        drafted_at = invoice.created_at or period.period_end
        if not side.late:
            return ExpectedCharge(0, {"steps": ["no late usage in the ledger"]}), ()
        earlier = self.gateway.list_invoices(
            stripe_customer_id=invoice.stripe_customer_id,
            created_from_at=side.late[0].period.period_end - BOUNDARY_SLACK,
            created_before_at=drafted_at,
        )
        late = LateUsage(
            side.late,
            billed_for(
                side.late,
                earlier,
                side.components.component_of,
                own_invoice_id=invoice.stripe_invoice_id,
                drafted_at=drafted_at,
            ),
        )
        on_invoice = sum(
            line.amount for line in invoice.lines if _is_adjustment(line, period, side.components)
        )
        if on_invoice != late.amount and on_invoice == late.amount_before_window:
            note = TimingNote(RULE_LATE_USAGE_JUST_BEFORE_DRAFT, ADJUSTMENT, describe_rule(late))
            return ExpectedCharge(late.amount_before_window, late.trace()), (note,)
        return ExpectedCharge(late.amount, late.trace()), ()

    @staticmethod
    def _stale_meter_values(
        comparison: InvoiceComparison,
        ids: Mapping[str, str],
        read: Callable[[str], Decimal],
        pushed: Mapping[str, Decimal],
    ) -> dict[str, Decimal]:
        """Stripe's current meter value (summaries over the period) of each metered line whose
        draft quantity disagrees with the ledger's; the minimum's only when its top-up was
        reported as usage (an invoice-item top-up has no meter)."""
        values = {}
        for line in comparison.lines:
            meter_id = ids.get(line.component)
            if line.component == MINIMUM and line.component not in pushed:
                continue
            if meter_id is not None and draft_differs(line):
                values[line.component] = read(meter_id)
        return values

    def _meter_reader(self, customer_id: str, period: Period) -> Callable[[str], Decimal]:
        """Stripe's value of a meter over the period, read once per reconciliation."""
        values: dict[str, Decimal] = {}

        def read(meter_id: str) -> Decimal:
            if meter_id not in values:
                values[meter_id] = self._meter_value(meter_id, customer_id, period)
            return values[meter_id]

        return read

    def _meter_value(self, meter_id: str, customer_id: str, period: Period) -> Decimal:
        summaries = self.gateway.list_meter_event_summaries(
            meter_id,
            stripe_customer_id=customer_id,
            start_at=period.period_start,
            end_at=period.period_end,
        )
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
                # What Stripe bills: a draft's lines as they will finalize, and any balance
                # applied to a final invoice's amount due.
                stripe_total_amount=(
                    sum(line.amount for line in invoice.lines)
                    if comparison is None
                    else comparison.stripe_total_amount
                ),
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
            note_reconciliation(session, row)  # a held draft or a wrong final invoice alerts
            return row.id


def _is_adjustment(line: StripeInvoiceLine, period: Period, components: ComponentMap) -> bool:
    """Whether a Stripe line adjusts an earlier period (compare_invoice's grouping)."""
    component = components.component_of(line)
    if component == MINIMUM:
        start = period_start_of_item(line)
        return start is not None and abs(start - period.period_start) > BOUNDARY_SLACK
    return component == ADJUSTMENT


def _notes(*groups: Iterable[TimingNote]) -> dict[str, list[dict[str, str]]]:
    """The timing rules applied, by component, for the traces."""
    found: dict[str, list[dict[str, str]]] = {}
    for group in groups:
        for note in group:
            found.setdefault(note.component, []).append(note.as_json())
    return found


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
