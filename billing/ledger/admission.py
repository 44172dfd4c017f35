"""Whether a seats, usage or resources line can ever be billed: its plan must bill it, and its
instant must lie between the org's first subscription and now (give or take clock skew)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from billing.core.meters import Meter
from billing.core.periods import isoformat_z
from billing.ledger.formats import LineError, ResourcesLine, SeatsLine, UsageLine
from billing.pricing.book import Terms

# Clock skew allowed between the product and the worker: an event dated later than this after
# its receive time is a wrong date. Org lines (plan changes may be scheduled) are exempt.
FUTURE_TOLERANCE = timedelta(minutes=5)
_FUTURE_TOLERANCE_TEXT = f"{FUTURE_TOLERANCE // timedelta(minutes=1)} minutes"


class Subscription(Protocol):
    """What the ledger knows of an org's subscription when a line arrives."""

    book: str
    plan: str
    terms: Terms
    subscribed_at: datetime  # the earliest plan change: the org's first subscription


def admission_error(
    record: SeatsLine | UsageLine | ResourcesLine, org: Subscription, now: datetime
) -> LineError | None:
    """Why `org` cannot be billed for `record`, received at `now`; None when it can."""
    if isinstance(record, SeatsLine):
        if org.terms.seat_unit_amount is None:
            return LineError(record.line, "count", f"plan {org.plan!r} has no seats")
    elif isinstance(record, UsageLine):
        if record.meter not in org.terms.meters:
            return _meter_error(record.line, "meter", record.meter, org)
    elif Meter.IAC_RESOURCE_HOURS not in org.terms.meters:
        return _meter_error(record.line, "type", Meter.IAC_RESOURCE_HOURS, org)
    if record.at > now + FUTURE_TOLERANCE:
        return LineError(
            record.line,
            "at",
            f"{isoformat_z(record.at)} is more than {_FUTURE_TOLERANCE_TEXT} in the future "
            f"(now {isoformat_z(now)})",
        )
    if record.at < org.subscribed_at:
        return LineError(
            record.line,
            "at",
            f"{isoformat_z(record.at)} is before the org's first subscription "
            f"({isoformat_z(org.subscribed_at)})",
        )
    return None


def _meter_error(line: int, where: str, meter: Meter, org: Subscription) -> LineError:
    known = ", ".join(m.value for m in org.terms.meters) or "none"
    return LineError(
        line,
        where,
        f"meter {meter.value!r} is not billed on plan {org.plan!r} of book {org.book!r} "
        f"(meters: {known})",
    )
