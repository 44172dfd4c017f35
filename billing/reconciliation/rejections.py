"""A draft held or waiting for lagging usage, explained by Stripe's meter error reports.

When Stripe's meters lag what we pushed (billing.reconciliation.usage_lag) and Stripe reported
dropping some of those meter events (billing.usage.meter_errors), the reconciliation's note says
so: support staff see that the usage will never arrive as sent, and why, instead of a lag.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.core.periods import Period
from billing.reconciliation.usage_lag import UsageLag
from billing.usage.meter_errors import rejection_note


def with_rejections(
    engine: Engine,
    note: str | None,
    org_id: str | None,
    period: Period | None,
    lag: UsageLag | None,
) -> str | None:
    """Stripe's reported rejections of the lagging meters' usage, then `note`."""
    if lag is None or not lag.meters or org_id is None or period is None:
        return note
    with Session(engine) as session:
        rejected = rejection_note(
            session, org_id, period.period_start, [m.meter for m in lag.meters]
        )
    if rejected is None:
        return note
    return rejected if not note else f"{rejected} {note}"
