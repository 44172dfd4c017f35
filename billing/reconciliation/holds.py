"""Holding a draft reconciliation found wrong; releasing one it held once it is right again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.core.keys import invoice_hold_key, invoice_release_key
from billing.reconciliation.match import InvoiceComparison, Status
from billing.reconciliation.records import hold_state
from billing.stripe_gateway.records import StripeInvoice

log = structlog.get_logger(__name__)


DEFAULT_HOLD_ON: frozenset[Status] = frozenset(
    {Status.MISMATCHED, Status.MISSING_IN_STRIPE, Status.UNEXPECTED_IN_STRIPE}
)
# Never hold a draft: right ones, and one not judged yet (Stripe still aggregating its usage).
NEVER_HELD = frozenset({Status.MATCHED, Status.ROUNDING, Status.AWAITING_USAGE})


@dataclass(frozen=True)
class HoldPolicy:
    """Which invoice statuses hold a draft (auto_advance=false); `rounding` never does."""

    hold_on: frozenset[Status] = DEFAULT_HOLD_ON

    @classmethod
    def parse(cls, text: str) -> HoldPolicy:
        """`mismatched,missing_in_stripe` → a policy; unknown names raise ValueError."""
        names = [part.strip() for part in text.split(",") if part.strip()]
        statuses = frozenset(Status(name) for name in names)
        if statuses & NEVER_HELD:
            raise ValueError("matched, rounding and awaiting_usage invoices are never held")
        return cls(statuses)

    def holds(self, status: Status) -> bool:
        return status in self.hold_on


class HoldGateway(Protocol):
    def set_invoice_auto_advance(
        self, stripe_invoice_id: str, *, auto_advance: bool, idempotency_key: str
    ) -> StripeInvoice: ...


def hold_or_release(  # noqa: PLR0917 - one reconciliation's verdict and its draft
    engine: Engine,
    gateway: HoldGateway,
    policy: HoldPolicy,
    invoice: StripeInvoice,
    comparison: InvoiceComparison | None,
    status: Status,
    *,
    hold: bool,
    note: str | None,
) -> tuple[bool, str | None]:
    """A wrong draft is held (auto_advance=false) and stays held while it is wrong; a
    draft we held is released once it is right again (usage still arriving in the grace
    period, or the worker's own top-up, can make it right). A hold set by a person, or an
    invoice that could not be compared, is left as it is."""
    invoice_id = invoice.stripe_invoice_id
    assert invoice_id is not None
    if not hold or invoice.status != "draft" or comparison is None:
        return False, note
    with Session(engine) as session:
        sequence, held_by_us = hold_state(session, invoice_id)
    if policy.holds(status):
        if invoice.auto_advance is not False:
            gateway.set_invoice_auto_advance(
                invoice_id,
                auto_advance=False,
                idempotency_key=invoice_hold_key(invoice_id, sequence),
            )
        return True, f"draft held (auto_advance=false): {status.value}"
    if held_by_us and invoice.auto_advance is False:
        gateway.set_invoice_auto_advance(
            invoice_id,
            auto_advance=True,
            idempotency_key=invoice_release_key(invoice_id, sequence),
        )
        log.info("reconciliation.hold_released", stripe_invoice_id=invoice_id)
        return False, f"hold released (auto_advance=true): now {status.value}"
    return False, note


def still_held(engine: Engine, invoice: StripeInvoice) -> bool:
    """Whether a hold we set on this draft is still in place: a draft not judged yet
    (`awaiting_usage`) neither holds nor releases, so the next verdict finds the hold as it
    was."""
    assert invoice.stripe_invoice_id is not None
    with Session(engine) as session:
        _, held_by_us = hold_state(session, invoice.stripe_invoice_id)
    return held_by_us and invoice.auto_advance is False
