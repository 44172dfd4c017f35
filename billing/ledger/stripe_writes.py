"""The local record around every Stripe write: committed `started` before the call, then `done`
(with what Stripe answered) or `failed` (with Stripe's error) after it.

A row that a crash or a transient error left `started` may or may not have reached Stripe. Where
Stripe can be read (the customers holding an org's metadata, an item's quantity), the caller
passes `resolve`: it settles the row from what Stripe holds, and only when Stripe has nothing is
the call made again, with the same idempotency key. Where Stripe deduplicates the request itself
(a meter event's identifier), the row is sent again unchanged.

The session is committed before every Stripe call, so no database transaction waits on Stripe.
A transient error propagates and leaves the row `started` for the next run to resolve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlmodel import Session

from billing.alerts.triggers import note_failed_write
from billing.core.errors import PermanentBillingError
from models.credits import CreditApplication
from models.lifecycle_records import SubscriptionEnding
from models.push_records import MinimumTopUp, SeatPush, UsageAdjustment, UsagePush
from models.stripe_records import StripeCustomerRecord, StripeSubscriptionRecord, WriteStatus

T = TypeVar("T")
# The tables whose rows record a Stripe write (each has `status` and `error`).
StripeWriteRow = (
    StripeCustomerRecord
    | StripeSubscriptionRecord
    | SeatPush
    | UsagePush
    | UsageAdjustment
    | MinimumTopUp
    | SubscriptionEnding
    | CreditApplication
)
_ERROR_LENGTH = 2000  # the push tables' `error` column; the customer and subscription's is text


@dataclass(frozen=True)
class Settled(Generic[T]):
    """What reading Stripe found for a write that may already have happened: `done` (it is
    there, or no longer needed) or `failed` (Stripe holds something else; `note` says what)."""

    status: WriteStatus
    response: T | None = None
    note: str | None = None


@dataclass(frozen=True)
class WriteOutcome(Generic[T]):
    """How the write ended: `done` or `failed`, and whether this run called Stripe for it."""

    status: WriteStatus
    called: bool
    response: T | None = None
    error: str | None = None
    exception: PermanentBillingError | None = None


def write_to_stripe(
    session: Session,
    row: StripeWriteRow,
    now: datetime,
    call: Callable[[], T],
    *,
    resolve: Callable[[], Settled[T] | None] | None = None,
    on_done: Callable[[T | None], None] | None = None,
) -> WriteOutcome[T]:
    """Make one Stripe write exactly once in effect, recorded before and after.

    `resolve` (for a row a previous run may have sent) reads Stripe first; `on_done` copies
    Stripe's answer (its ids) onto the row or its neighbours before they are committed with
    `done` (a call that settles a refusal by reading Stripe returns None for the answer).
    A permanent error is recorded `failed` and returned, never raised.
    """
    if resolve is not None:
        session.commit()  # nothing open while Stripe is read
        settled = resolve()
        if settled is not None:
            mark(row, settled.status, now, note=settled.note)
            if settled.status is WriteStatus.DONE and on_done is not None:
                on_done(settled.response)
            if settled.status is WriteStatus.FAILED:
                note_failed_write(session, row, now)  # alerts once, committed with the row
            session.add(row)
            session.commit()
            failed = settled.status is WriteStatus.FAILED
            return WriteOutcome(
                settled.status, False, settled.response, settled.note if failed else None
            )
    mark(row, WriteStatus.STARTED, now)
    session.add(row)
    session.commit()  # recorded before the call
    try:
        response: T | None = call()
    except PermanentBillingError as exc:
        mark(row, WriteStatus.FAILED, now, note=str(exc), request_id=exc.request_id)
        note_failed_write(session, row, now)  # alerts once, committed with the row
        session.add(row)
        session.commit()
        return WriteOutcome(WriteStatus.FAILED, True, error=str(exc), exception=exc)
    mark(row, WriteStatus.DONE, now)
    if on_done is not None:
        on_done(response)
    session.add(row)
    session.commit()
    return WriteOutcome(WriteStatus.DONE, True, response)


def mark(
    row: StripeWriteRow,
    status: WriteStatus,
    now: datetime,
    *,
    note: str | None = None,
    request_id: str | None = None,
) -> None:
    """Set a row's status (the caller commits): `note` is the error of a failure, or why a
    write was settled without a call; a customer or subscription keeps when it was started."""
    row.status = status.value
    if isinstance(row, StripeCustomerRecord | StripeSubscriptionRecord | SubscriptionEnding):
        row.error = note
        row.updated_at = now
        if status is WriteStatus.STARTED:
            row.started_at = now
        return
    row.error = note[:_ERROR_LENGTH] if note else None
    if status is not WriteStatus.STARTED:
        row.finished_at = now
    if isinstance(row, SeatPush):
        row.stripe_request_id = request_id
