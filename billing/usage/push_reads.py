"""What a usage push reads of the database, for one org or for a whole chunk of orgs at once.

`SessionReads` asks each question with a query of its own: one org's push (an admin's re-sync, a
new draft's webhook). `ChunkReads` answers the same questions for every org of a month-close
chunk from a few set-based queries made up front (one per table for the chunk's orgs, then, once
the chunk's periods are known, one per distinct usage window): a push of 50 orgs costs about as
many queries as the push of one did. The chunk holds every org's usage lock before it reads
(worker.jobs.push_usage_chunk), so what it read stays true for the run: other pushes of these orgs
wait, and usage that arrives meanwhile is pushed next time, as it would be after a single push.
Any question asked of something the chunk did not read goes to the query of `SessionReads`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from sqlmodel import Session, col, select

from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.expected_invoice import OrgLedger
from billing.ledger.queries import org_ledger, org_ledgers
from billing.usage.invoice_mirror import CREATED_MARGIN, mirror_rows
from billing.usage.periods import (
    OrgSubscription,
    ceil_to,
    late_final_periods,
    latest_revisions,
    org_subscription,
    subscription_from,
)
from models.credits import CreditApplication, CreditGrant
from models.invoice_mirror import StripeInvoiceMirror
from models.ledger import OrgPlanChange
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)


def totals_window(period: Period, now: datetime) -> Period | None:
    """The part of a usage period the ledger has counted by `now` (a full hour counts once it
    has begun); None before the period starts."""
    end = min(period.period_end, ceil_to(now, timedelta(hours=1)))
    return Period(period.period_start, end) if end > period.period_start else None


def ledger_usage(ledger: OrgLedger | None) -> dict[Meter, Decimal]:
    """Usage per meter of a ledger window, resource-hours included ({} without a ledger)."""
    if ledger is None:
        return {}
    totals = dict(ledger.usage)
    totals[Meter.IAC_RESOURCE_HOURS] = Decimal(ledger.resource_hours)
    return totals


class SessionReads:
    """Every read a query of its own (one org's push)."""

    def subscription(self, session: Session, org_id: str) -> OrgSubscription | None:
        return org_subscription(session, org_id)

    def plan_rows(self, session: Session, org_id: str) -> Sequence[OrgPlanChange]:
        """The org's plan rows, oldest first."""
        return session.exec(
            select(OrgPlanChange)
            .where(OrgPlanChange.org_id == org_id)
            .order_by(col(OrgPlanChange.at), col(OrgPlanChange.id))
        ).all()

    def known_states(self, session: Session, org_id: str, since: datetime) -> list[UsagePeriod]:
        """The org's usage period records ending after `since`."""
        return list(
            session.exec(
                select(UsagePeriod).where(
                    UsagePeriod.org_id == org_id, col(UsagePeriod.period_end_at) > since
                )
            )
        )

    def late_final(self, session: Session, org_id: str) -> list[UsagePeriod]:
        return late_final_periods(session, [org_id]).get(org_id, [])

    def unfinished(self, session: Session, org_id: str) -> list[UsagePush]:
        """The org's meter events a run left `started` (sent or not)."""
        return list(
            session.exec(
                select(UsagePush).where(
                    UsagePush.org_id == org_id, UsagePush.status == WriteStatus.STARTED
                )
            )
        )

    def latest_revision(
        self, session: Session, org_id: str, meter: str, period_start: datetime
    ) -> int | None:
        revisions = latest_revisions(session, [org_id], period_start)
        return revisions.get((org_id, str(meter), period_start))

    def ledger_totals(
        self, session: Session, org_id: str, period: Period, now: datetime
    ) -> dict[Meter, Decimal]:
        """Usage in the period so far: events and resource-hours up to `now`."""
        window = totals_window(period, now)
        return {} if window is None else ledger_usage(org_ledger(session, org_id, window))

    def mirrored(self, stripe_subscription_id: str) -> Sequence[StripeInvoiceMirror] | None:  # noqa: ARG002
        """The subscription's mirrored invoices if already read (None: read them)."""
        return None

    def may_have_credits(self, org_id: str) -> bool:  # noqa: ARG002
        """False only when the org is known to have no credit grant and no credit applied."""
        return True


class ChunkReads(SessionReads):
    """The reads of a chunk's orgs, made set-based up front (see the module)."""

    def __init__(self, session: Session, org_ids: Collection[str], since: datetime) -> None:
        ids = sorted(set(org_ids))
        self.org_ids = frozenset(ids)
        self.since = since
        self._customers = _by_org(session, StripeCustomerRecord, ids)
        self._subs = _by_org(session, StripeSubscriptionRecord, ids)
        items, plans = StripeSubscriptionItemRecord, OrgPlanChange
        self._items = _grouped(session.exec(select(items).where(col(items.org_id).in_(ids))))
        self._plans = _grouped(
            session.exec(
                select(plans)
                .where(col(plans.org_id).in_(ids))
                .order_by(col(plans.at), col(plans.id))
            )
        )
        self._states = _grouped(
            session.exec(
                select(UsagePeriod).where(
                    col(UsagePeriod.org_id).in_(ids), col(UsagePeriod.period_end_at) > since
                )
            )
        )
        self._unfinished = _grouped(
            session.exec(
                select(UsagePush).where(
                    col(UsagePush.org_id).in_(ids), UsagePush.status == WriteStatus.STARTED
                )
            )
        )
        self._late = late_final_periods(session, ids)
        self._credit_orgs = {
            *session.exec(select(CreditGrant.org_id).where(col(CreditGrant.org_id).in_(ids))),
            *session.exec(
                select(CreditApplication.org_id).where(col(CreditApplication.org_id).in_(ids))
            ),
        }
        self._revisions: dict[tuple[str, str, datetime], int] = {}
        self._revisions_since: datetime | None = None
        self._ledgers: dict[Period, dict[str, OrgLedger]] = {}
        self._windows: set[tuple[str, Period]] = set()  # (org, usage window) read
        self._mirror: dict[str, list[StripeInvoiceMirror]] | None = None

    def prepare(
        self,
        session: Session,
        planned: Iterable[tuple[OrgSubscription, str, Sequence[Period]]],
        now: datetime,
    ) -> None:
        """Once every org's periods are known: read their revisions, their ledgers (one query
        set per distinct usage window) and their subscriptions' mirrored invoices."""
        windows: dict[Period, set[str]] = {}
        starts: list[datetime] = []
        ended: dict[str, datetime] = {}
        for sub, org_id, periods in planned:
            for period in periods:
                starts.append(period.period_start)
                window = totals_window(period, now)
                if window is not None:
                    windows.setdefault(window, set()).add(org_id)
                    self._windows.add((org_id, window))
            ends = [p.period_end for p in periods if p.period_end <= now]
            if ends:
                ended[sub.stripe_subscription_id] = min(ends) - CREATED_MARGIN
        if starts:
            self._revisions_since = min(starts)
            self._revisions = latest_revisions(session, self.org_ids, self._revisions_since)
        for window, orgs in windows.items():
            self._ledgers[window] = org_ledgers(session, orgs, window)
        if ended:
            self._mirror = mirror_rows(session, list(ended), min(ended.values()))

    # ------------------------------------------------------------------ answers

    def subscription(self, session: Session, org_id: str) -> OrgSubscription | None:
        if org_id not in self.org_ids:
            return super().subscription(session, org_id)
        customer, sub = self._customers.get(org_id), self._subs.get(org_id)
        if customer is None or sub is None:
            return None
        plan_ats = [row.at for row in self._plans.get(org_id, [])]
        return subscription_from(customer, sub, self._items.get(org_id, []), plan_ats)

    def plan_rows(self, session: Session, org_id: str) -> Sequence[OrgPlanChange]:
        if org_id not in self.org_ids:
            return super().plan_rows(session, org_id)
        return self._plans.get(org_id, [])

    def known_states(self, session: Session, org_id: str, since: datetime) -> list[UsagePeriod]:
        if org_id not in self.org_ids or since != self.since:
            return super().known_states(session, org_id, since)
        return list(self._states.get(org_id, []))

    def late_final(self, session: Session, org_id: str) -> list[UsagePeriod]:
        if org_id not in self.org_ids:
            return super().late_final(session, org_id)
        return list(self._late.get(org_id, []))

    def unfinished(self, session: Session, org_id: str) -> list[UsagePush]:
        if org_id not in self.org_ids:
            return super().unfinished(session, org_id)
        return list(self._unfinished.get(org_id, []))

    def latest_revision(
        self, session: Session, org_id: str, meter: str, period_start: datetime
    ) -> int | None:
        if (
            org_id not in self.org_ids
            or self._revisions_since is None
            or period_start < self._revisions_since
        ):
            return super().latest_revision(session, org_id, meter, period_start)
        return self._revisions.get((org_id, str(meter), period_start))

    def ledger_totals(
        self, session: Session, org_id: str, period: Period, now: datetime
    ) -> dict[Meter, Decimal]:
        window = totals_window(period, now)
        if window is None:
            return {}
        if (org_id, window) not in self._windows:
            return super().ledger_totals(session, org_id, period, now)
        return ledger_usage(self._ledgers[window].get(org_id))

    def mirrored(self, stripe_subscription_id: str) -> Sequence[StripeInvoiceMirror] | None:
        if self._mirror is None:
            return None
        return self._mirror.get(stripe_subscription_id, [])

    def may_have_credits(self, org_id: str) -> bool:
        return org_id not in self.org_ids or org_id in self._credit_orgs


_Record = TypeVar("_Record", StripeCustomerRecord, StripeSubscriptionRecord)
_Row = TypeVar("_Row", StripeSubscriptionItemRecord, OrgPlanChange, UsagePeriod, UsagePush)


def _by_org(session: Session, model: type[_Record], org_ids: list[str]) -> dict[str, _Record]:
    rows = session.exec(select(model).where(col(model.org_id).in_(org_ids)))
    return {row.org_id: row for row in rows}


def _grouped(rows: Iterable[_Row]) -> dict[str, list[_Row]]:
    """Rows by org, in the order given."""
    found: dict[str, list[_Row]] = {}
    for row in rows:
        found.setdefault(row.org_id, []).append(row)
    return found
