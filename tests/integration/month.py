"""A month of billing for the demo's orgs, run by real Celery workers, and the exactness checks.

Time is a Stripe test clock: customers are created on it, the test advances it, and every task
gets the clock's instant as its `now` (as `worker/demo.py` does). The ledger is fed with the
demo's seeded generator (`worker/demo_data.py`); usage is pushed every few simulated days; the
month close runs as `billing.usage.close_period` (a group of `push_chunk`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from celery.result import GroupResult
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.components import MINIMUM, MINIMUM_TOPUP
from billing.core.keys import event_name
from billing.core.meters import Meter
from billing.core.periods import isoformat_z, month_period, to_unix
from billing.ledger.ingest import Ingestor
from billing.ledger.queries import expected_invoice
from billing.pricing.book import load_book
from billing.pricing.book_cache import BookCache
from billing.pricing.charge import meter_value
from billing.pricing.proration import SeatChange, billed_quantity, seat_terms
from billing.reconciliation.match import Status
from billing.setup.catalog import CatalogSync
from billing.stripe_gateway import StripeConfig, StripeGateway
from billing.stripe_gateway.clocks import StripeTestClock, TestClocks
from billing.stripe_gateway.http import BudgetedRequestsClient
from models.ledger import Org, SeatChangeRecord, UsageEvent
from models.push_records import SeatPush, UsagePush
from models.reconciliation import Reconciliation
from models.stripe_records import StripeCustomerRecord, StripeSubscriptionItemRecord, WriteStatus
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.integration.cluster import TASK_SECONDS, Cluster
from worker.composition import request_budget
from worker.demo_data import DemoOrg, daily_events, demo_orgs, opening_events
from worker.jobs import chunks

BOOKS = ("devtools", "zenaton")
PERIOD = month_period("2026-10")
CLOSE_AT = PERIOD.period_end + timedelta(minutes=10)  # inside Stripe's 1 h grace period
FINAL_AT = PERIOD.period_end + timedelta(hours=2)  # past it: Stripe has finalized the drafts
SEATS = "seats"
FAN_OUT_WAIT_SECONDS = 120  # the close's sweep steps end before its chunks exist


@dataclass
class Month:
    """One emulator, one database, one test clock, the demo's orgs; tasks go to `cluster`."""

    cluster: Cluster
    emulator: EmulatorServer
    engine: Engine
    org_count: int = 50
    seed: int = 7
    copies: int = 1  # every task is sent this many times, side by side
    # Emulator settings (faults, rate limit, latency) in force while the workers run tasks;
    # the test's own calls (catalog, clock) run without them.
    worker_faults: dict[str, Any] = field(default_factory=dict)
    orgs: list[DemoOrg] = field(default_factory=list)
    clock: StripeTestClock | None = None
    now: datetime = PERIOD.period_start
    books: BookCache = field(default_factory=BookCache)
    _advances: int = 0

    def __post_init__(self) -> None:
        # The test's own Stripe calls (catalog, clock) share the workers' Redis request budget:
        # one account, one rate limit.
        settings = self.cluster.settings
        budget = request_budget("redis", settings.stripe_requests_per_second, settings.redis_url)
        self.gateway = StripeGateway(
            StripeConfig(api_key="sk_test_integration", api_base=self.emulator.url),
            http_client=BudgetedRequestsClient(budget, timeout=30),
        )
        self.clocks = TestClocks(self.gateway, poll_seconds=0.05)

    # ------------------------------------------------------------------ the month

    @property
    def org_ids(self) -> list[str]:
        return [org.org_id for org in self.orgs]

    @property
    def seat_org_ids(self) -> list[str]:
        return [org.org_id for org in self.orgs if org.seats is not None]

    def open(self) -> None:
        """Catalog of both books, the test clock at the period start, the orgs in the ledger,
        and their customers and subscriptions provisioned by the workers."""
        self.prepare()
        assert self.clock is not None
        calls = [
            ("billing.orgs.provision", [o, self.iso, self.clock.stripe_test_clock_id])
            for o in self.org_ids
        ]
        self.run(calls)

    def prepare(self) -> None:
        """Catalog, test clock and the ledger's orgs (not yet provisioned)."""
        for name in BOOKS:
            report = CatalogSync(self.gateway, self.engine).sync(load_book(name), self.now)
            assert not report.has_drift, report
        self.clock = self.clocks.create(
            self.now, name="integration", idempotency_key=f"it:clock:{self.seed}"
        )
        self.orgs = demo_orgs(self.org_count, self.seed)
        self.ingest(opening_events(self.orgs, self.now))

    def simulate(self, push_every_days: int = 5) -> None:
        """Every simulated day's events go into the ledger; every `push_every_days` days the
        clock advances, changed seats are synced and all usage pushed. The last day's events
        are ingested at the close (`close_ledger`)."""
        pending: list[dict[str, Any]] = []
        self._last_day: list[dict[str, Any]] = []
        for index, (day_end, events) in enumerate(daily_events(self.orgs, PERIOD, self.seed)):
            if day_end == PERIOD.period_end:
                self._last_day = events
                break
            pending.extend(events)
            if (index + 1) % push_every_days:
                continue
            self.advance(day_end)
            self.ingest(pending)
            changed = sorted({e["org"] for e in pending if e["type"] == "seats"})
            pending = []
            self.sync_seats(changed)
            self.push_usage()
        self._pending = pending

    def close_ledger(self) -> None:
        """The period ends (Stripe drafts the invoices); the rest of the month's events arrive
        and every seat org is synced at the close instant."""
        self.advance(CLOSE_AT)
        self.ingest([*self._pending, *self._last_day])
        self.sync_seats(self.seat_org_ids)

    def start_close(self, chunk_size: int = 10) -> list[GroupResult]:
        """Send the month close (`copies` times); returns the groups of `push_chunk` it fans
        out to, once its sweep steps have ended (every copy names the same one group: a close
        fans out once)."""
        self.emulator.state.configure(**self.worker_faults)  # wait_close turns them off
        closes = [
            self.cluster.send("billing.usage.close_period", PERIOD.label(), self.iso, chunk_size)
            for _ in range(self.copies)
        ]
        groups = []
        for group_id in dict.fromkeys(self.cluster.wait(closes)):
            deadline = time.monotonic() + FAN_OUT_WAIT_SECONDS
            while (group := GroupResult.restore(group_id, app=self.cluster.client)) is None:
                assert time.monotonic() < deadline, f"group {group_id} was never saved"
                time.sleep(0.2)
            groups.append(group)
        return groups

    def wait_close(self, groups: list[GroupResult]) -> list[dict[str, int]]:
        counts: list[dict[str, int]] = []
        with self.faults():
            for group in groups:
                counts.extend(self.cluster.wait(group.results))
        # Stripe aggregates meter events asynchronously: the close's last events count in the
        # meters (and so at finalization) once the emulator's aggregation delay has passed.
        time.sleep(self.emulator.config.meter_aggregation_delay_seconds)
        return counts

    def reconcile(self) -> list[str]:
        """Past the grace period (Stripe finalizes the drafts), every Stripe invoice is
        reconciled by the workers; their verdicts."""
        self.advance(FINAL_AT)
        invoices = [invoice["id"] for invoice in self.emulator.state.invoices()]
        calls = [
            ("billing.reconciliation.reconcile_invoice", [i, False, self.iso]) for i in invoices
        ]
        return self.cluster.run(calls)  # without the close's faults: they are not under test

    # ------------------------------------------------------------------ steps

    @property
    def iso(self) -> str:
        return isoformat_z(self.now)

    def advance(self, to_at: datetime) -> None:
        assert self.clock is not None
        self._advances += 1
        self.clock = self.clocks.advance(
            self.clock.stripe_test_clock_id,
            to_at,
            idempotency_key=f"it:advance:{self.seed}:{self._advances}",
        )
        self.now = to_at

    def ingest(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        with Session(self.engine) as session:
            outcome = Ingestor(session, books=self.books).ingest(events, self.now)
            assert outcome.ok, outcome.errors[:5]
            session.commit()

    def run(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        with self.faults():
            return self.cluster.run(calls, copies=self.copies)

    @contextmanager
    def faults(self) -> Iterator[None]:
        state = self.emulator.state
        if not self.worker_faults:
            yield
            return
        calm = {name: getattr(EmulatorConfig(), name) for name in self.worker_faults}
        state.configure(**self.worker_faults)
        try:
            yield
        finally:
            state.configure(**calm)

    def sync_seats(self, org_ids: list[str]) -> list[Any]:
        return self.run([("billing.seats.sync_org", [o, self.iso]) for o in org_ids])

    def push_usage(self, chunk_size: int = 10) -> list[Any]:
        return self.run(
            [
                ("billing.usage.push_chunk", [chunk, self.iso])
                for chunk in chunks(self.org_ids, chunk_size)
            ]
        )


# ---------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class Exactness:
    """What was compared (so a test can show its check was not vacuous)."""

    meters_compared: int
    meters_with_usage: int
    seat_items_compared: int
    seat_items_changed: int
    mismatches: list[str]


def compare_with_ledger(month: Month) -> Exactness:
    """Every org's Stripe meter totals for the period and seat quantities at the close against
    the ledger: usage events summed (resource-hours from the expected invoice), and the billed
    seat quantity from the seat policy."""
    state = month.emulator.state
    start, end = to_unix(PERIOD.period_start), to_unix(PERIOD.period_end)
    mismatches: list[str] = []
    meters = with_usage = seat_items = changed = 0
    with Session(month.engine) as session:
        customers = {
            row.org_id: row.stripe_customer_id for row in session.exec(select(StripeCustomerRecord))
        }
        items = session.exec(select(StripeSubscriptionItemRecord)).all()
        sums = {
            (org_id, meter): Decimal(str(total))
            for org_id, meter, total in session.exec(  # type: ignore[call-overload]
                sa.select(UsageEvent.org_id, UsageEvent.meter, sa.func.sum(UsageEvent.quantity))
                .where(
                    col(UsageEvent.at) >= PERIOD.period_start,
                    col(UsageEvent.at) < PERIOD.period_end,
                )
                .group_by(UsageEvent.org_id, UsageEvent.meter)
            )
        }
        orgs = {org.id: org for org in session.exec(select(Org))}
        changes: dict[str, list[SeatChange]] = {}
        for row in session.exec(
            select(SeatChangeRecord).order_by(col(SeatChangeRecord.at), col(SeatChangeRecord.id))
        ):
            changes.setdefault(row.org_id, []).append(SeatChange(row.at, row.seat_count))
        expected = {
            org_id: expected_invoice(session, org_id, PERIOD, month.books) for org_id in orgs
        }
    assert set(customers) == set(month.org_ids), "every org has a Stripe customer"
    for item in items:
        org = orgs[item.org_id]
        if item.component == SEATS:
            terms = month.books.terms(org.book, org.plan, org.interval, org.id)
            assert terms.seat_unit_amount is not None
            schedule = seat_terms(
                org.term_start_at,
                terms.interval,
                terms.seat_unit_amount,
                changes[org.id],
                until_at=CLOSE_AT + timedelta(microseconds=1),
                policy=terms.seat_policy,
            )
            want = billed_quantity(schedule, CLOSE_AT)
            have = state.subscription_quantity(
                item.stripe_subscription_id, item.stripe_subscription_item_id
            )
            seat_items += 1
            changed += want != changes[org.id][0].seat_count
            if have != want:
                mismatches.append(f"{org.id} seats: Stripe {have}, ledger bills {want}")
            continue
        if item.component == MINIMUM_TOPUP:
            # The top-up meter holds the expected invoice's `minimum` line, in cents.
            topup = expected[org.id].line(MINIMUM)
            want_topup = Decimal(topup.amount if topup is not None else 0)
            have_topup = state.meter_total(
                customers[org.id], event_name(org.book, MINIMUM_TOPUP), start, end
            )
            if have_topup != want_topup:
                mismatches.append(f"{org.id} minimum: Stripe {have_topup}, ledger {want_topup}")
            continue
        meter = Meter(item.component)
        line = expected[org.id].line(meter.value)
        want_total = line.quantity if line is not None else Decimal(0)
        if meter is not Meter.IAC_RESOURCE_HOURS:
            summed = sums.get((org.id, meter.value), Decimal(0))
            assert want_total == summed, (org.id, meter, want_total, summed)
        # Stripe's meter counts in the price's unit (`per` base units, e.g. hours of seconds).
        terms = month.books.terms(org.book, org.plan, org.interval, org.id)
        want_total = meter_value(want_total, terms.meters[meter].per)
        have_total = state.meter_total(customers[org.id], event_name(org.book, meter), start, end)
        meters += 1
        with_usage += want_total > 0
        if have_total != want_total:
            mismatches.append(f"{org.id} {meter.value}: Stripe {have_total}, ledger {want_total}")
    return Exactness(meters, with_usage, seat_items, changed, mismatches)


def assert_exact(month: Month) -> Exactness:
    result = compare_with_ledger(month)
    assert not result.mismatches, "\n".join(result.mismatches)
    # Not vacuous: most meters carry usage, and some seat counts moved during the month.
    assert result.meters_compared >= 2 * month.org_count
    assert result.meters_with_usage >= result.meters_compared // 2
    assert result.seat_items_changed >= 3
    return result


def assert_nothing_doubled(month: Month) -> None:
    """Stripe accepted each meter event identifier once, with the value the local push ledger
    recorded for it; no revision or seat window was pushed twice; nothing failed."""
    state = month.emulator.state
    with state.lock:
        records = [
            (r.identifier, r.event_name, r.value)
            for events in state.store.meter_events.values()
            for r in events
        ]
    twice = [ident for ident, n in Counter(i for i, _, _ in records).items() if n > 1]
    assert not twice, f"identifiers accepted twice by Stripe: {twice[:10]}"
    with Session(month.engine) as session:
        pushes = session.exec(select(UsagePush)).all()
        seat_pushes = session.exec(select(SeatPush)).all()
        orgs = {org.id: org for org in session.exec(select(Org))}
    local = {p.identifier: p for p in pushes}
    for identifier, _name, value in records:
        push = local.get(identifier)
        assert push is not None, f"Stripe holds {identifier}, the push ledger does not"
        org = orgs[push.org_id]
        per = (
            1  # the minimum top-up's meter counts cents
            if push.meter == MINIMUM_TOPUP
            else month.books.terms(org.book, org.plan, org.interval, org.id)
            .meters[Meter(push.meter)]
            .per
        )
        assert Decimal(value) == meter_value(push.quantity, per), (identifier, value, push)
    assert {p.status for p in pushes} == {WriteStatus.DONE}, Counter(p.status for p in pushes)
    assert {p.identifier for p in pushes} == {i for i, _, _ in records}
    revisions: dict[tuple[str, str, datetime], list[UsagePush]] = {}
    for push in pushes:
        revisions.setdefault((push.org_id, push.meter, push.period_start_at), []).append(push)
    for key, rows in revisions.items():
        rows.sort(key=lambda p: p.revision)
        assert [p.revision for p in rows] == list(range(1, len(rows) + 1)), key
        # A new revision is made only when the total changed.
        for before, after in pairwise(rows):
            assert before.quantity != after.quantity, (key, before.revision, after.revision)
    assert all(p.status == WriteStatus.DONE for p in seat_pushes), [
        (p.idempotency_key, p.status, p.error) for p in seat_pushes if p.status != "done"
    ]
    windows = Counter(
        (p.org_id, p.term_start_at, p.window_start_at) for p in seat_pushes if p.kind == "step"
    )
    assert not [w for w, n in windows.items() if n > 1], "a seat window was pushed twice"


def assert_reconciled(month: Month) -> Counter[str]:
    """Every Stripe invoice says what the ledger says (matched, or a cent of Stripe's rounding),
    and every org has its final invoice of the period; the count of each verdict. The ledger
    is the seeded month's, the same in every run: a run whose invoices all reconcile billed
    what the fault-free run billed."""
    with Session(month.engine) as session:
        rows = session.exec(select(Reconciliation).order_by(col(Reconciliation.id))).all()
    latest = {row.stripe_invoice_id: row for row in rows}  # the last verdict of each invoice
    wrong = [
        f"{r.org_id} {r.stripe_invoice_id}: {r.status} ({r.note})"
        for r in latest.values()
        if r.status not in (Status.MATCHED, Status.ROUNDING)
    ]
    assert not wrong, "\n".join(wrong)
    assert len(latest) == len(month.emulator.state.invoices()), "an invoice was not reconciled"
    final = {
        r.org_id: r.invoice_status
        for r in latest.values()
        if r.billing_reason == "subscription_cycle" and r.period == PERIOD.label()
    }
    assert set(final) == set(month.org_ids), set(month.org_ids) - set(final)
    assert set(final.values()) <= {"open", "paid"}, Counter(final.values())
    return Counter(r.status for r in latest.values())


def wait_until(condition: Callable[[], bool], timeout: float = TASK_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.05)
