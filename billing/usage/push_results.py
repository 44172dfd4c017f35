"""What a usage push did for one meter and usage period (the result records and their builder)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from billing.core.periods import Period
from models.push_records import UsagePeriod


class MeterPushAction(StrEnum):
    """What a push did for one meter and usage period."""

    SENT = "sent"  # a meter event with the new total reached Stripe
    UNCHANGED = "unchanged"  # Stripe already has the ledger's total
    ADJUSTED = "adjusted"  # the invoice is final: the difference became an invoice item
    FINAL = "final"  # the invoice is final and already bills the ledger's total
    FAILED = "failed"  # Stripe refused for good, or the period is too old to report: see `error`


@dataclass(frozen=True)
class MeterPushResult:
    meter: str
    period_start_at: datetime
    period_end_at: datetime
    ledger_quantity: Decimal
    sent_quantity: Decimal | None
    action: MeterPushAction
    revision: int = 0
    confirmed_quantity: Decimal | None = None
    adjustment_amount: int | None = None
    error: str | None = None


def meter_result(
    meter: str,  # a Meter, or MINIMUM_TOPUP
    period: Period,
    state: UsagePeriod,
    quantity: Decimal,
    action: MeterPushAction,
    *,
    revision: int = 0,
    adjustment: int | None = None,
    error: str | None = None,
) -> MeterPushResult:
    return MeterPushResult(
        meter=str(meter),
        period_start_at=period.period_start,
        period_end_at=period.period_end,
        ledger_quantity=quantity,
        sent_quantity=state.sent_quantity,
        action=action,
        revision=revision or state.sent_revision,
        adjustment_amount=adjustment,
        error=error,
    )
