"""The simulation loop: time moves to each instant at which something is due, and the worker runs.

At each step, in this order: every test clock advances to the step's instant (Stripe renews,
drafts and finalizes what is due, and its webhooks reach the web process, which handles them);
the timeline's lines arriving at that instant reach the worker (ingestion, or a raw Stripe call);
then every beat entry that fired since the previous step runs once. The steps are the arrivals,
the beat ticks that follow them (provisioning, the seat sweep past the coalescing window, the
usage pushes), and around each Stripe renewal: the seat sync's renewal lead, the renewal itself,
the pushes inside the grace period, and the finalization. Stripe lets a test clock advance at
most two intervals at a time; no step is longer than `MAX_STEP`, so that always holds.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlmodel import Session, select

from billing.core.periods import from_unix
from billing.ledger.ingest import Ingestor
from billing.pricing.proration import SEAT_SYNC_WINDOW_SECONDS, window_start_of
from models.ledger import OrgPlanChange
from worker import composition
from worker.simulate.beat_jobs import BeatRunner
from worker.simulate.cadence import BeatEntry, beat_entries
from worker.simulate.stripe_calls import StripeCallError, make_call
from worker.simulate.timeline import Entry, EntryKind, Refusal, Timeline
from worker.simulate.world import World

log = structlog.get_logger(__name__)

MAX_STEP = timedelta(days=27)  # under two months: the shortest interval is a month
RENEWAL_LEAD = timedelta(minutes=55)  # inside the seat sync's one-hour renewal lead
# The beat entries that push usage: the first of them after an arrival pushes it (unless one
# fires at the arrival's own step, after it was ingested). `close_due` pushes every org, so at
# one instant it covers the sweep of the orgs with new usage.
SUBSET_PUSH, SUPERSET_PUSH = "billing.usage.sweep", "billing.usage.close_due"
PUSHES = (SUBSET_PUSH, SUPERSET_PUSH)
PUSHED_TYPES = frozenset({"usage", "resources", "org", "cancel"})
# Every tick of these inside the grace period after a renewal (a new draft) or a
# finalization: the pushes of the final totals, and the sweeps that re-check the drafts.
AFTER_DUE = (
    "billing.usage.close_due",
    "billing.usage.close_period",
    "billing.reconciliation.sweep",
)
GRACE = timedelta(hours=1)

Progress = Callable[[datetime], None]


@dataclass
class StepStats:
    steps: int = 0
    arrivals: int = 0


@dataclass
class Simulator:
    world: World
    timeline: Timeline
    beat: BeatRunner
    start_at: datetime
    end_at: datetime
    on_step: Progress = lambda _at: None
    set_now: Progress = lambda _at: None  # the worker's clock, set before anything runs
    refused: list[Refusal] = field(default_factory=list)
    stats: StepStats = field(default_factory=StepStats)

    def __post_init__(self) -> None:
        self.entries = beat_entries()
        self._by_task = {e.task: e for e in self.entries}
        self._arrivals: dict[datetime, list[Entry]] = {}
        for entry in self.timeline.entries:
            self._arrivals.setdefault(_whole(entry.arrives_at), []).append(entry)
        self._due: list[datetime] = []  # a heap of the instants at which something is due
        self._known: set[datetime] = set()
        for at in self._arrival_instants():
            self._schedule(at)
        self._schedule(self.end_at)
        self.now = self.start_at

    # ------------------------------------------------------------------------ the loop

    def run(self) -> None:
        previous = self.start_at - timedelta(seconds=1)
        at = self.start_at
        while at <= self.end_at:
            self._step(previous, at)
            self._schedule_stripe()
            previous, at = at, self._next_after(at)

    def _step(self, previous: datetime, at: datetime) -> None:
        self.now = at
        self.set_now(at)
        self.stats.steps += 1
        self.world.clocks.advance(at)
        self._settle()
        arrivals = self._arrivals.get(at, [])
        for entry in arrivals:
            self._arrive(entry, at)
        fired = [beat.task for beat in self.entries if beat.fired_between(previous, at)]
        if SUPERSET_PUSH in fired:
            # At one instant, pushing every org covers pushing the orgs with new usage.
            fired = [task for task in fired if task != SUBSET_PUSH]
        for task in fired:
            self.beat.run(task, at)
            self._settle()
        if any(e.body.get("type") in PUSHED_TYPES for e in arrivals) and not set(fired) & set(
            PUSHES
        ):
            # What arrived is pushed at the first push tick after it.
            self._schedule(min(self._tick_at_or_after(task, at) for task in PUSHES))
        self.on_step(at)

    def _settle(self) -> None:
        """Until Stripe's webhooks are answered and what they started has finished."""
        self.world.wait_for_webhooks()
        self.beat.settle()

    def _arrive(self, entry: Entry, at: datetime) -> None:
        self.stats.arrivals += 1
        engine = composition.database(self.world.settings)
        if entry.kind is EntryKind.STRIPE_CALL:
            try:
                gateway = composition.stripe_gateway(self.world.settings)
                make_call(engine, gateway, entry.body, line=entry.line)
            except StripeCallError as exc:
                self._refuse(entry, str(exc))
            return
        with Session(engine) as session:
            outcome = Ingestor(session, default_book=self.world.settings.book).ingest(
                [entry.body], at
            )
            if not outcome.ok:
                session.rollback()
                self._refuse(entry, "; ".join(f"{e.field}: {e.problem}" for e in outcome.errors))
                return
            session.commit()
            if entry.body.get("type") in {"org", "cancel"}:
                # A change or cancellation scheduled for a term end: the lifecycle runs then.
                later = session.exec(
                    select(OrgPlanChange.at).where(
                        OrgPlanChange.org_id == str(entry.body.get("org")), OrgPlanChange.at > at
                    )
                ).all()
                for effective in later:
                    self._schedule(self._tick_at_or_after("billing.orgs.sweep", effective))

    def _refuse(self, entry: Entry, error: str) -> None:
        log.info("simulation.line_refused", line=entry.line, error=error)
        self.refused.append(Refusal(entry.line, error))

    # ------------------------------------------------------------------------ the clock

    def _schedule(self, at: datetime) -> None:
        at = _whole(at)
        if at not in self._known and self.start_at <= at <= self.end_at:
            self._known.add(at)
            heapq.heappush(self._due, at)

    def _next_after(self, at: datetime) -> datetime:
        """The first instant after `at` at which something is due (at most `MAX_STEP` on)."""
        while self._due and self._due[0] <= at:
            heapq.heappop(self._due)
        if not self._due:
            return self.end_at + timedelta(seconds=1)
        return min(self._due[0], at + MAX_STEP)

    def _arrival_instants(self) -> Iterable[datetime]:
        """Each arrival, and the first beat tick that acts on what arrived: provisioning for
        a new org, the seat sweep once the seat change's coalescing window has closed. (The
        first usage push after usage arrives is scheduled by the step itself.)"""
        window = timedelta(seconds=SEAT_SYNC_WINDOW_SECONDS)
        for at, entries in self._arrivals.items():
            yield at
            kinds = {str(e.body.get("type")) for e in entries}
            if kinds & {"org", "cancel"}:
                yield self._tick_at_or_after("billing.orgs.sweep", at)
            for entry in entries:
                if entry.body.get("type") in {"seats", "org"}:
                    closes = window_start_of(_whole(entry.at)) + window
                    yield self._tick_at_or_after("billing.seats.sweep", max(at, closes))

    def _schedule_stripe(self) -> None:
        """Around what Stripe does next on the simulation's clocks: the seat sync's renewal
        lead before it, the renewal or finalization itself, and the beat ticks after it that
        still fall inside the grace period."""
        state = self.world.emulator.state
        for clock in self.world.clocks.clocks:
            for unix in state.due_at(clock.stripe_test_clock_id):
                due = from_unix(unix)
                self._schedule(due)
                self._schedule(self._tick_at_or_after("billing.seats.sweep", due - RENEWAL_LEAD))
                for task in AFTER_DUE:
                    tick = self._tick_at_or_after(task, due)
                    while tick - due <= GRACE:
                        self._schedule(tick)
                        tick = self._by_task[task].next_tick_after(tick)

    def _tick_at_or_after(self, task: str, at: datetime) -> datetime:
        entry: BeatEntry = self._by_task[task]
        return entry.next_tick_after(at - timedelta(seconds=1))


def _whole(at: datetime) -> datetime:
    """Stripe's clocks count whole seconds."""
    return at.replace(microsecond=0)
