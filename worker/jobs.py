"""The worker's jobs as plain functions: the one way every path runs a job.

Celery tasks, the CLI's `--now`, the web process's inline mode, the demo and the simulator all
call these, so every path holds the same per-org Redis lock where two runs must not interleave
(provisioning, seat sync, every usage push — including the one inside webhook handling). Each
job takes ids and its instant `now` explicitly, gets its service from the composition root,
calls it once and returns its outcome. The selections at the end are what the beat tasks fan
out over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.alerts.close import check_close, close_chunk_done
from billing.alerts.delivery import DeliveryOutcome
from billing.core.locks import LocalLocks, org_lock
from billing.core.meters import Interval
from billing.core.periods import Period, term_containing
from billing.pricing.book import load_book
from billing.pricing.lifecycle import NO_PLAN
from billing.pricing.proration import (
    SEAT_SYNC_WINDOW_SECONDS,
    SeatChange,
    seat_count_at,
    window_start_of,
)
from billing.reconciliation.inbox import HandleOutcome, unhandled_events
from billing.reconciliation.price_drift import PriceCheckOutcome
from billing.reconciliation.reconciler import ReconciliationOutcome, SweepOutcome
from billing.seats.sync import SeatSyncOutcome
from billing.setup.provisioning import OrgToProvision
from billing.usage.push import UsagePushOutcome
from models.ledger import Org, OrgPlanChange, SeatChangeRecord, UsageEvent
from models.lifecycle_records import SubscriptionEnding
from models.stripe_records import StripeSubscriptionRecord, WriteStatus
from worker import composition
from worker.settings import Settings, get_settings

LockFactory = Callable[[str, str], AbstractContextManager[None]]


def redis_locks(settings: Settings | None = None) -> LockFactory:
    """Per-org Redis locks, renewed while held, outliving a dead holder by the settings' timeout."""
    settings = settings or get_settings()
    client = composition.redis_client(settings)
    timeout_seconds = settings.org_lock_timeout_seconds

    def lock(scope: str, org_id: str) -> AbstractContextManager[None]:
        return org_lock(client, scope, org_id, timeout_seconds=timeout_seconds)

    return lock


_LOCAL_LOCKS = LocalLocks()


def default_locks(settings: Settings | None = None) -> LockFactory:
    """The per-org locks the settings name: Redis (shared by every process) or this process's."""
    if (settings or get_settings()).org_locks == "local":
        return _LOCAL_LOCKS
    return redis_locks(settings)


def no_locks(_scope: str, _org_id: str) -> AbstractContextManager[None]:
    """For tests that run one job at a time and check nothing about locking."""
    return nullcontext()


def provision_org(
    org_id: str,
    now: datetime,
    *,
    stripe_test_clock_id: str | None = None,
    locks: LockFactory | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Create (or find) the org's Stripe customer and subscription from its ledger row.

    Held under the org's lock: two deliveries at once would both read "nothing yet" and race
    to record the same customer (the second then finds the first's rows instead)."""
    with (locks or default_locks(settings))("provision", org_id):
        return _provision_org(org_id, now, stripe_test_clock_id, settings)


def _provision_org(
    org_id: str, now: datetime, stripe_test_clock_id: str | None, settings: Settings | None
) -> dict[str, Any]:
    engine = composition.database(settings)
    with Session(engine) as session:
        org = session.get(Org, org_id)
        if org is None:
            raise LookupError(f"unknown org {org_id!r}")
        changes = [
            SeatChange(row.at, row.seat_count)
            for row in session.exec(
                select(SeatChangeRecord)
                .where(SeatChangeRecord.org_id == org_id)
                .order_by(col(SeatChangeRecord.at), col(SeatChangeRecord.id))
            )
        ]
    outcome = composition.provisioner(settings).provision(
        OrgToProvision(
            org_id=org.id,
            book=org.book,
            plan=org.plan,
            interval=Interval(org.interval),
            term_start_at=org.term_start_at,
            seat_count=seat_count_at(changes, max(org.term_start_at, now)),
            stripe_test_clock_id=stripe_test_clock_id,
        ),
        now,
    )
    return {
        "org_id": org_id,
        "stripe_customer_id": outcome.stripe_customer_id,
        "stripe_subscription_id": outcome.stripe_subscription_id,
        "customer": outcome.customer_action.value,
        "subscription": outcome.subscription_action.value,
    }


def apply_lifecycle(
    org_id: str,
    now: datetime,
    *,
    locks: LockFactory | None = None,
    settings: Settings | None = None,
) -> list[dict[str, str]]:
    """Bring the org's Stripe subscription to its plan ledger (SPEC §10): end it and start the
    next one, or schedule or withdraw its end. Under the org's provisioning and seat locks (it
    provisions, and no seat update may reach the subscription it ends); the usage push it runs
    first takes the usage lock, as every push does."""
    lock = locks or default_locks(settings)

    def push(org: str, at: datetime) -> object:
        return push_usage(org, at, locks=lock, settings=settings)

    def provision(org: str, at: datetime) -> object:
        return _provision_org(org, at, None, settings)

    with lock("provision", org_id), lock("seats", org_id):
        outcomes = composition.lifecycle(push, provision, settings).apply(org_id, now)
    return [asdict(outcome) for outcome in outcomes]


def sync_seats(
    org_id: str,
    now: datetime,
    *,
    locks: LockFactory | None = None,
    settings: Settings | None = None,
) -> SeatSyncOutcome:
    with (locks or default_locks(settings))("seats", org_id):
        return composition.seat_sync(settings).sync(org_id, now)


def push_usage(
    org_id: str,
    now: datetime,
    *,
    verify: bool = False,
    within: Period | None = None,
    locks: LockFactory | None = None,
    settings: Settings | None = None,
) -> UsagePushOutcome:
    with (locks or default_locks(settings))("usage", org_id):
        return composition.usage_pusher(settings).push_org(
            org_id, now, verify=verify, within=within
        )


def push_usage_chunk(
    org_ids: Sequence[str],
    now: datetime,
    *,
    within: Period | None = None,
    locks: LockFactory | None = None,
    settings: Settings | None = None,
) -> dict[str, int]:
    """`push_usage` of every org of a chunk (a month close's, a sweep's) at once: the chunk
    holds each org's usage lock (taken in order, so two chunks never wait on each other in a
    cycle), reads set-based and sends all its meter events together; counts of what was sent."""
    lock = locks or default_locks(settings)
    counts = {"orgs": 0, "meter_events": 0, "adjustments": 0, "failed": 0}
    with ExitStack() as held:
        for org_id in sorted(set(org_ids)):
            held.enter_context(lock("usage", org_id))
        outcomes = composition.usage_pusher(settings).push_chunk(org_ids, now, within=within)
    for outcome in outcomes:
        counts["orgs"] += 1
        counts["meter_events"] += outcome.meter_events_sent
        counts["adjustments"] += sum(1 for r in outcome.results if r.action == "adjusted")
        counts["failed"] += sum(1 for r in outcome.results if r.action == "failed")
    if within is not None:  # a month close's chunk: its progress is recorded
        close_chunk_done(
            composition.database(settings), within.label(), org_ids, counts["failed"], now
        )
    return counts


def handle_event(
    stripe_event_id: str,
    now: datetime,
    *,
    locks: LockFactory | None = None,
    settings: Settings | None = None,
) -> HandleOutcome:
    """Handle one stored webhook event. A new draft's usage push runs as `push_usage` does,
    under the org's usage lock, so it never interleaves with another push of the same org."""
    lock = locks or default_locks(settings)

    def push(org_id: str, at: datetime) -> UsagePushOutcome:
        return push_usage(org_id, at, locks=lock, settings=settings)

    return composition.event_handler(push, settings).handle(stripe_event_id, now)


def reconcile_invoice(
    stripe_invoice_id: str,
    now: datetime,
    *,
    trigger: str = "task",
    hold: bool = False,
    settings: Settings | None = None,
) -> ReconciliationOutcome:
    """Reconcile one invoice (append-only: no lock needed); `hold` may hold a bad draft."""
    return composition.reconciler(settings).reconcile_invoice(
        stripe_invoice_id, now, trigger=trigger, hold=hold
    )


def reconcile_period(
    period: Period, now: datetime, *, settings: Settings | None = None
) -> list[ReconciliationOutcome]:
    """Reconcile every invoice of a month (`billing reconcile --period`); never holds."""
    return composition.reconciler(settings).reconcile_period(period, now)


def sweep_reconciliations(
    now: datetime, lookback: timedelta | None = None, *, settings: Settings | None = None
) -> SweepOutcome:
    """Reconcile the invoices created in `lookback` before `now` (default: the settings'
    `reconciliation_sweep_hours`), so a missed webhook is caught."""
    settings = settings or get_settings()
    window = lookback or timedelta(hours=settings.reconciliation_sweep_hours)
    return composition.reconciler(settings).sweep(now, window)


def check_prices(
    now: datetime, *, book: str | None = None, settings: Settings | None = None
) -> PriceCheckOutcome:
    """Compare Stripe's prices with the book (default: the settings' book); read-only."""
    settings = settings or get_settings()
    return composition.price_drift_check(settings).check(load_book(book or settings.book), now)


def checkpoint_quotas(now: datetime, *, settings: Settings | None = None) -> int:
    """Store every monthly quota counter of `now`'s month; the number of counters written."""
    return composition.quota_service(settings).checkpoint_all(now)


def outcome_json(outcome: SeatSyncOutcome | UsagePushOutcome) -> dict[str, Any]:
    """A JSON-ready dict (datetimes and decimals as strings)."""
    result: dict[str, Any] = _jsonable(asdict(outcome))
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)  # Decimal, enums


# --------------------------------------------------------------------------- selections


def provisioned_orgs(settings: Settings | None = None) -> list[str]:
    with Session(composition.database(settings)) as session:
        return list(
            session.exec(
                select(StripeSubscriptionRecord.org_id)
                .where(StripeSubscriptionRecord.status == WriteStatus.DONE)
                .order_by(col(StripeSubscriptionRecord.org_id))
            ).all()
        )


def provisioned_org_count(settings: Settings | None = None) -> int:
    """How many orgs `provisioned_orgs` lists, counted by the database."""
    with Session(composition.database(settings)) as session:
        return session.exec(
            select(sa.func.count())
            .select_from(StripeSubscriptionRecord)
            .where(StripeSubscriptionRecord.status == WriteStatus.DONE)
        ).one()


def lifecycle_due_orgs(settings: Settings | None = None) -> list[str]:
    """Orgs whose plan ledger holds a row after their Stripe subscription's start (a change or
    cancellation, due or scheduled), or whose subscription has an end scheduled in Stripe
    (which a withdrawal may have to clear)."""
    records = StripeSubscriptionRecord
    with Session(composition.database(settings)) as session:
        later = (
            select(records.org_id)
            .join(OrgPlanChange, col(OrgPlanChange.org_id) == col(records.org_id))
            .where(records.status == WriteStatus.DONE, OrgPlanChange.at > records.term_start_at)
        )
        scheduled = (
            select(records.org_id)
            .join(
                SubscriptionEnding,
                col(SubscriptionEnding.stripe_subscription_id)
                == col(records.stripe_subscription_id),
            )
            .where(records.status == WriteStatus.DONE, records.plan != NO_PLAN)
        )
        found = set(session.exec(later).all()) | set(session.exec(scheduled).all())
    return sorted(found)


def unprovisioned_orgs(settings: Settings | None = None) -> list[str]:
    with Session(composition.database(settings)) as session:
        done = select(StripeSubscriptionRecord.org_id).where(
            StripeSubscriptionRecord.status == WriteStatus.DONE
        )
        ended = select(StripeSubscriptionRecord.org_id).where(
            StripeSubscriptionRecord.plan == NO_PLAN
        )
        return list(
            session.exec(
                select(Org.id)
                .where(col(Org.id).not_in(done), col(Org.id).not_in(ended), Org.plan != NO_PLAN)
                .order_by(col(Org.id))
            ).all()
        )


def orgs_with_usage_since(since: datetime, settings: Settings | None = None) -> list[str]:
    with Session(composition.database(settings)) as session:
        return list(
            session.exec(
                select(UsageEvent.org_id).where(UsageEvent.received_at >= since).distinct()
            ).all()
        )


def orgs_with_seat_changes_since(since: datetime, settings: Settings | None = None) -> list[str]:
    with Session(composition.database(settings)) as session:
        return list(
            session.exec(
                select(SeatChangeRecord.org_id)
                .where(SeatChangeRecord.recorded_at >= since)
                .distinct()
            ).all()
        )


def seat_syncs_due(
    org_ids: Sequence[str], now: datetime, settings: Settings | None = None
) -> dict[str, datetime]:
    """When each org's seat sync is due: the end of the coalescing window of its latest seat
    change, or `now` if that has passed (orgs without seat changes are left out)."""
    window = timedelta(seconds=SEAT_SYNC_WINDOW_SECONDS)
    return {
        org_id: max(window_start_of(latest_at) + window, now)
        for org_id, latest_at in latest_seat_changes(org_ids, settings).items()
    }


SEAT_SWEEP_LOOKBACK = timedelta(minutes=15)
# The seat sync sets a term's renewal quantity within its last hour (SeatSync.renewal_lead).
RENEWAL_LEAD = timedelta(hours=1)
USAGE_SWEEP_LOOKBACK = timedelta(hours=2)


def orgs_for_seat_sweep(now: datetime, settings: Settings | None = None) -> list[str]:
    """What the seat sweep syncs: orgs whose seats changed recently (a missed schedule loses
    nothing) and orgs whose seat term renews within the hour (the renewal quantity)."""
    return sorted(
        set(orgs_with_seat_changes_since(now - SEAT_SWEEP_LOOKBACK, settings))
        | set(orgs_renewing_within(now, RENEWAL_LEAD, settings))
    )


def orgs_renewing_within(
    now: datetime, lead: timedelta, settings: Settings | None = None
) -> list[str]:
    """Orgs whose seat term ends in `(now, now + lead]`: the seat sync sets the renewal
    quantity then (a decrease takes effect at the renewal, SPEC §4)."""
    with Session(composition.database(settings)) as session:
        orgs = session.exec(
            select(Org.id, Org.interval, Org.term_start_at).where(Org.plan != NO_PLAN)
        ).all()
    due = []
    for org_id, interval, term_start_at in orgs:
        if term_start_at > now:
            continue
        term_end = term_containing(term_start_at, Interval(interval), now).period_end
        if now < term_end <= now + lead:
            due.append(org_id)
    return sorted(due)


def latest_seat_changes(
    org_ids: Sequence[str], settings: Settings | None = None
) -> dict[str, datetime]:
    """The `at` of each org's latest seat change (orgs without any are left out)."""
    with Session(composition.database(settings)) as session:
        rows = session.exec(
            select(SeatChangeRecord.org_id, sa.func.max(SeatChangeRecord.at))
            .where(col(SeatChangeRecord.org_id).in_(list(org_ids)))
            .group_by(col(SeatChangeRecord.org_id))
        ).all()
    return dict(rows)  # UtcDateTime: aware UTC values


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for offset in range(0, len(items), size):
        yield list(items[offset : offset + size])


# Webhook events still unhandled this long after they arrived are handled again: their first
# handling failed (inline), or its task and every retry were lost.
REDRIVE_AFTER = timedelta(minutes=10)


def unhandled_webhook_events(now: datetime, settings: Settings | None = None) -> list[str]:
    """The webhook events to handle again: unhandled, received more than `REDRIVE_AFTER` ago
    and within the reconciliation sweep's window (older invoices are final and swept)."""
    settings = settings or get_settings()
    window = timedelta(hours=settings.reconciliation_sweep_hours)
    return unhandled_events(composition.database(settings), now - window, now - REDRIVE_AFTER)


# --------------------------------------------------------------------------- operations


def check_close_late(now: datetime, *, settings: Settings | None = None) -> bool:
    """Alert (once per month) when last month's close is unfinished 30 min into the grace."""
    return check_close(composition.database(settings), now)


def deliver_alerts(now: datetime, *, settings: Settings | None = None) -> DeliveryOutcome | None:
    """Send the pending alerts that are due (None: no BILLING_ALERT_WEBHOOK_URL; they wait)."""
    deliverer = composition.alert_deliverer(settings)
    return None if deliverer is None else deliverer.deliver_due(now)
