"""What a Stripe invoice must contain, from the ledger and the price book alone.

Every charge the ledger implies is assigned to exactly one invoice of the org:
- the first seat term's upfront charge: the `subscription_create` invoice;
- a seat term beginning at a renewal boundary B (seats are billed in advance): the
  `subscription_cycle` invoice at B; a term beginning inside a usage period (a plan change): the
  cycle invoice at the end of that period;
- a coalesced seat step prorated at t: the cycle invoice that ends the usage period holding t;
- the usage per meter and the minimum top-up of the usage period [A, B): the cycle invoice at B;
- late usage of an earlier period: the cycle invoice drafted after it arrived (late_usage.py).
Any other invoice (one made by hand, say) is expected to hold the ledger's seat steps at the
instants Stripe prorated, and nothing else.

Push records never create an expectation. They may only move one in time, through a named rule
that appears in the trace:
- `seat_step_reached_stripe_after_draft`: a seat step of the period whose quantity update
  reached Stripe after Stripe drafted the period's invoice is on the next invoice (Stripe sweeps
  a pending proration into the first invoice it creates after the update); that next invoice
  expects it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.components import SEAT_CREDIT, SEAT_PRORATION, SEATS
from billing.core.periods import Period, add_months, isoformat_z, month_period_of
from billing.ledger.expected_invoice import ExpectedInvoice, ExpectedLine, UnknownOrgError
from billing.ledger.queries import expected_invoice
from billing.pricing.book_cache import BookCache
from billing.reconciliation.records import usage_period_ending
from billing.stripe_gateway.records import StripeInvoice
from models.ledger import OrgPlanChange
from models.lifecycle_records import SubscriptionEnding
from models.push_records import SeatPush, SeatPushKind
from models.stripe_records import WriteStatus

# A term found within this much of the invoice's boundary is the one it bills (the ledger's
# term start and Stripe's anchor are written by different clocks).
BOUNDARY_SLACK = timedelta(hours=1)
RULE_SEAT_STEP_AFTER_DRAFT = "seat_step_reached_stripe_after_draft"


@dataclass(frozen=True)
class TimingNote:
    """A named timing rule applied to one component of one invoice, for the trace."""

    rule: str
    component: str
    explanation: str

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "explanation": self.explanation}


@dataclass(frozen=True)
class Selection:
    """The expected lines of one invoice, its usage period and the timing rules applied."""

    lines: tuple[ExpectedLine, ...]
    period: Period | None
    expected: ExpectedInvoice | None  # the usage period's (for terms and traces)
    notes: tuple[TimingNote, ...] = ()


def invoice_period(session: Session, invoice: StripeInvoice, org_id: str) -> Period | None:
    """The usage period an invoice is compared for (None: not a create or cycle invoice)."""
    if invoice.billing_reason == "subscription_create":
        start = invoice.period_start_at or invoice.created_at
        return None if start is None else Period(start, add_months(start, 1))
    if invoice.billing_reason == "subscription_cycle" and invoice.period_end_at:
        return usage_period_ending(session, org_id, invoice.period_end_at)
    return None


def select_expected(
    session: Session, invoice: StripeInvoice, org_id: str, books: BookCache
) -> Selection:
    """The lines `invoice` must hold by the ledger (see the module docstring)."""
    period = invoice_period(session, invoice, org_id)
    if invoice.billing_reason == "subscription_create" and period is not None:
        return Selection(_upfront_seats(session, org_id, period.period_start, books), period, None)
    if invoice.billing_reason == "subscription_cycle" and period is not None:
        return _cycle(session, invoice, org_id, period, books)
    instants = {line.period_start_at for line in invoice.lines if line.proration}
    steps = _steps_at(session, org_id, {at for at in instants if at is not None}, books)
    return Selection(steps, None, None)


def _cycle(
    session: Session, invoice: StripeInvoice, org_id: str, period: Period, books: BookCache
) -> Selection:
    usage = expected_invoice(session, org_id, period, books)
    start, end = period.period_start, period.period_end
    arrears = tuple(line for line in usage.lines if line.code not in (SEATS, SEAT_PRORATION))
    # A term that began inside the period (a plan change) is billed at its end; the term that
    # began at its start was billed by the invoice at the start.
    new_terms = tuple(
        line
        for line in usage.lines
        if line.code == SEATS
        and line.period_start is not None
        and start + BOUNDARY_SLACK < line.period_start < end - BOUNDARY_SLACK
    )
    steps, notes = _seat_steps(session, org_id, period, invoice.created_at or end, usage, books)
    # A subscription the ledger ends at `end` (a plan change, a cancellation) does not renew:
    # the next subscription's own first invoice bills its seats.
    renewal = () if _ends_at(session, org_id, end) else _upfront_seats(session, org_id, end, books)
    return Selection(
        _credit_on_final(session, invoice, arrears) + new_terms + steps + renewal,
        period,
        usage,
        notes,
    )


def _credit_on_final(
    session: Session, invoice: StripeInvoice, lines: tuple[ExpectedLine, ...]
) -> tuple[ExpectedLine, ...]:
    """The unused seat time of a subscription ended early is credited on the final invoice our
    cancellation made (billing.lifecycle.apply), never on another. When that cancellation fell
    exactly on a period boundary, Stripe's cycle invoice there billed the period's usage, and
    the final invoice (an empty period) holds the credit alone."""
    final = session.exec(
        select(SubscriptionEnding.id).where(
            SubscriptionEnding.stripe_final_invoice_id == invoice.stripe_invoice_id,
            SubscriptionEnding.how == "now",
        )
    ).first()
    if final is None:
        return tuple(line for line in lines if line.code != SEAT_CREDIT)
    if invoice.period_start_at is not None and invoice.period_start_at == invoice.period_end_at:
        return tuple(line for line in lines if line.code == SEAT_CREDIT)
    return lines


def _seat_steps(  # noqa: PLR0917 - one invoice's period, its draft instant and its ledger
    session: Session,
    org_id: str,
    period: Period,
    drafted_at: datetime,
    usage: ExpectedInvoice,
    books: BookCache,
) -> tuple[tuple[ExpectedLine, ...], tuple[TimingNote, ...]]:
    """The ledger's seat steps of the period, less those that reached Stripe after the draft,
    plus earlier periods' steps that reached Stripe after their own invoice was drafted."""
    reached = _step_pushes(session, org_id, period.period_start)
    own = [line for line in usage.lines if line.code == SEAT_PRORATION]
    notes: list[TimingNote] = []
    kept: list[ExpectedLine] = []
    for line in own:
        at = line.proration_at
        finished = None if at is None else reached.get(at)
        if finished is not None and finished >= drafted_at:
            notes.append(
                _note(
                    line,
                    f"reached Stripe at {isoformat_z(finished)}, after this "
                    f"invoice was drafted at {isoformat_z(drafted_at)}: billed on "
                    "the next invoice",
                )
            )
        else:
            kept.append(line)
    earlier = {
        at for at, finished in reached.items() if at < period.period_start and finished < drafted_at
    }
    carried = _steps_at(session, org_id, earlier, books)
    notes.extend(
        _note(
            line,
            "its period's invoice was drafted before the step reached Stripe: billed "
            "here, the first invoice after it",
        )
        for line in carried
    )
    return (*kept, *carried), tuple(notes)


def _note(line: ExpectedLine, why: str) -> TimingNote:
    at = isoformat_z(line.proration_at) if line.proration_at else "?"
    return TimingNote(
        RULE_SEAT_STEP_AFTER_DRAFT,
        SEAT_PRORATION,
        f"seats {line.from_quantity} → {line.to_quantity} prorated at {at} {why}",
    )


def _step_pushes(session: Session, org_id: str, since: datetime) -> dict[datetime, datetime]:
    """When each prorated seat step reached Stripe (proration instant → finish), for the
    steps that reached it since `since` (the seat sync's records; timing only)."""
    rows = session.exec(
        select(SeatPush.proration_at, SeatPush.finished_at).where(
            SeatPush.org_id == org_id,
            SeatPush.kind == SeatPushKind.STEP,
            SeatPush.status == WriteStatus.DONE,
            SeatPush.proration_behavior == "create_prorations",
            col(SeatPush.finished_at) >= since,
        )
    ).all()
    return {at: finished for at, finished in rows if at is not None and finished is not None}


def _ends_at(session: Session, org_id: str, boundary: datetime) -> bool:
    """Whether the ledger ends a subscription of the org at `boundary` (a later plan row)."""
    found = session.exec(
        select(OrgPlanChange.at).where(
            OrgPlanChange.org_id == org_id,
            col(OrgPlanChange.at) >= boundary - BOUNDARY_SLACK,
            col(OrgPlanChange.at) <= boundary + BOUNDARY_SLACK,
        )
    ).all()
    first = session.exec(
        select(sa.func.min(OrgPlanChange.at)).where(OrgPlanChange.org_id == org_id)
    ).one()
    return any(at != first for at in found)


def _upfront_seats(
    session: Session, org_id: str, boundary: datetime, books: BookCache
) -> tuple[ExpectedLine, ...]:
    window = Period(boundary - BOUNDARY_SLACK, add_months(boundary, 1))
    try:
        found = expected_invoice(session, org_id, window, books)
    except UnknownOrgError:
        return ()
    return tuple(
        line
        for line in found.lines
        if line.code == SEATS
        and line.period_start is not None
        and abs(line.period_start - boundary) <= BOUNDARY_SLACK
    )


def _steps_at(
    session: Session, org_id: str, instants: Collection[datetime], books: BookCache
) -> tuple[ExpectedLine, ...]:
    """The ledger's seat steps prorated at these instants."""
    lines: list[ExpectedLine] = []
    for month in sorted({month_period_of(at) for at in instants}):
        found = expected_invoice(session, org_id, month, books)
        lines.extend(
            line
            for line in found.lines
            if line.code == SEAT_PRORATION and line.proration_at in instants
        )
    return tuple(lines)


__all__: Sequence[str] = (
    "BOUNDARY_SLACK",
    "RULE_SEAT_STEP_AFTER_DRAFT",
    "Selection",
    "TimingNote",
    "invoice_period",
    "select_expected",
)
