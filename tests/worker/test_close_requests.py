"""The month close asks Stripe about invoices once per 100, not once per org (SPEC §8: ≤ 0.5
core-API requests per org at close; issue 15, part 3).

200 orgs of both books on the Stripe emulator's frozen account clock (no test clocks), a month
of usage, the period's end (the emulator drafts every cycle invoice), then `month_close.close_month`
inside the grace period on PostgreSQL. The emulator's own per-route counts are the
measurement: core routes are every route except the meter event endpoints. A count, not a time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlmodel import Session, col, select

from billing.core.periods import month_period
from billing.ledger.ingest import Ingestor
from billing.pricing.book import load_book
from billing.stripe_gateway.invoice_reads import InvoicePage
from billing.usage.invoice_mirror import MIRROR_COUNTS
from billing.usage.invoice_sweep import SweepStep, sweep_step
from models.alerts import CloseRun
from models.db import migrate, unit_of_work
from models.invoice_mirror import StripeInvoiceSweep
from models.push_records import UsagePeriod
from stripe_emulator import EmulatorConfig, EmulatorServer
from worker import composition, jobs, month_close
from worker.cli import main
from worker.settings import Settings, get_settings

ORG_COUNT = 200
PERIOD = month_period("2026-10")
CLOSE_AT = PERIOD.period_end + timedelta(minutes=10)  # inside Stripe's one-hour grace period
TARGET_CORE_REQUESTS_PER_ORG = 0.5


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def world(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Any]]:
    config = EmulatorConfig(
        frozen_time=int(PERIOD.period_start.timestamp()), test_clock_max_customers=None
    )
    with EmulatorServer(config) as emulator:
        migrate(pg_url)
        for name, value in {
            "BILLING_DATABASE_URL": pg_url,
            "BILLING_STRIPE_API_BASE": emulator.url,
            "BILLING_STRIPE_BUDGET": "none",
            "BILLING_ORG_LOCKS": "local",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        get_settings.cache_clear()
        settings = get_settings()
        try:
            yield settings, emulator
        finally:
            get_settings.cache_clear()


def _events(org_ids: list[str]) -> list[str]:
    start = PERIOD.period_start
    events: list[dict[str, Any]] = []
    for index, org in enumerate(org_ids):
        zen = index % 5 == 4
        seats = {} if zen else {"interval": "year", "seats": 5}
        plan = "payg" if zen else ("team" if index % 2 else "free")
        if not zen and index % 2 == 0:
            seats = {"interval": "month", "seats": 1}
        events.append(
            {
                "type": "org",
                "org": org,
                "book": "zenaton" if zen else "devtools",
                "plan": plan,
                **seats,
                "at": start.isoformat(),
            }
        )
        meters = ("execution_time",) if zen else ("copilot_messages", "runner_minutes")
        events.extend(
            {
                "type": "usage",
                "id": f"{org}-{meter}-{day}",
                "org": org,
                "meter": meter,
                "quantity": 100 + index % 700,
                "at": datetime(2026, 10, day, tzinfo=UTC).isoformat(),
            }
            for day in (3, 17, 29)
            for meter in meters
        )
    return [json.dumps(event) for event in events]


def _core_requests(stats: dict[str, Any]) -> dict[str, int]:
    routes: dict[str, int] = stats["requests_by_route"]
    return {route: n for route, n in routes.items() if "/meter_event" not in route}


def _open_month(settings: Settings, emulator: Any, org_count: int) -> list[str]:
    """Catalog, orgs with a month of usage, provisioned; the period ends and the emulator
    drafts every org's cycle invoice (no webhook endpoint: the mirror has only its sweeps)."""
    for book in ("devtools", "zenaton"):
        composition.catalog_sync(settings).sync(load_book(book), PERIOD.period_start)
    org_ids = [f"org-{i:04d}" for i in range(org_count)]
    with unit_of_work(composition.database(settings)) as session:
        assert Ingestor(session).ingest(_events(org_ids), datetime(2026, 10, 30, tzinfo=UTC)).ok
    for org in org_ids:
        jobs.provision_org(org, PERIOD.period_start, settings=settings)
    emulator.state.configure(frozen_time=int(CLOSE_AT.timestamp()))
    return org_ids


def test_a_close_of_200_orgs_makes_at_most_half_a_core_request_per_org(
    world: tuple[Settings, Any],
) -> None:
    settings, emulator = world
    _open_month(settings, emulator, ORG_COUNT)
    emulator.state.reset(stats_only=True)
    before = MIRROR_COUNTS.copy()

    totals = month_close.close_month(PERIOD, CLOSE_AT, settings=settings)

    core = _core_requests(emulator.state.stats())
    core_total = sum(core.values())
    per_org = core_total / ORG_COUNT
    print(f"\nclose of {ORG_COUNT} orgs: {core_total} core requests ({per_org:.3f}/org): {core}")
    assert totals["orgs"] == ORG_COUNT
    assert totals["failed"] == 0
    assert totals["meter_events"] >= 2 * ORG_COUNT  # the close did push: not a vacuous count
    assert per_org <= TARGET_CORE_REQUESTS_PER_ORG, core
    # The 40 zenaton orgs are under their $10 minimum: their top-ups rode the meter event stream
    # with their usage (billing.usage.topup), not one invoice item each.
    assert "POST /v1/invoiceitems" not in core, core
    # Every org's invoice state came from the mirror; the only listings are the sweep's pages.
    assert MIRROR_COUNTS["hit"] - before["hit"] == ORG_COUNT
    assert MIRROR_COUNTS["miss"] == before["miss"]
    with Session(composition.database(settings)) as session:
        sweep = session.exec(select(StripeInvoiceSweep)).one()
        assert sweep.finished_at == CLOSE_AT
        assert sweep.invoice_count >= ORG_COUNT
        assert core.get("GET /v1/invoices", 0) == sweep.page_requests
        # Inside the grace period every period stays open (its invoice is a draft).
        assert not session.exec(
            select(UsagePeriod).where(col(UsagePeriod.invoice_final_at).is_not(None))
        ).all()


def test_past_the_grace_period_a_stale_mirrored_draft_is_not_trusted(
    world: tuple[Settings, Any],
) -> None:
    """The sweep saw the drafts; Stripe finalized them an hour later and no webhook told us.
    Late usage then must become an adjustment on the next invoice, not a meter event for a
    period Stripe no longer bills: the push asks Stripe instead of the stale mirror."""
    settings, emulator = world
    (org, *_) = _open_month(settings, emulator, 3)
    month_close.close_month(PERIOD, CLOSE_AT, settings=settings)
    final_at = PERIOD.period_end + timedelta(hours=2)
    emulator.state.configure(frozen_time=int(final_at.timestamp()))  # drafts finalized
    late = {
        "type": "usage",
        "id": "late-1",
        "org": org,
        "meter": "copilot_messages",
        "quantity": 900,
        "at": datetime(2026, 10, 31, 12, tzinfo=UTC).isoformat(),
    }
    with unit_of_work(composition.database(settings)) as session:
        assert Ingestor(session).ingest([json.dumps(late)], final_at).ok
    before = MIRROR_COUNTS.copy()

    outcome = jobs.push_usage(org, final_at, settings=settings)

    assert MIRROR_COUNTS["miss:draft_too_old"] == before["miss:draft_too_old"] + 1
    october = [r for r in outcome.results if r.period_start_at == PERIOD.period_start]
    assert {r.meter: r.action for r in october}["copilot_messages"] == "adjusted"
    assert not [r for r in october if r.action == "sent"]  # nothing to a finalized period


def test_a_close_whose_sweep_stripe_refuses_asks_stripe_per_org(
    world: tuple[Settings, Any],
) -> None:
    """The sweep is an optimisation: when Stripe fails it, every org's push lists its own
    invoices (the safety net) and the close still pushes everything."""
    settings, emulator = world
    org_ids = _open_month(settings, emulator, 3)
    attempts = 1 + settings.stripe_max_network_retries
    emulator.state.configure(fail_next=attempts, fault_path_prefix="/v1/invoices")
    before = MIRROR_COUNTS.copy()

    totals = month_close.close_month(PERIOD, CLOSE_AT, settings=settings)

    assert (totals["orgs"], totals["failed"]) == (len(org_ids), 0)
    assert MIRROR_COUNTS["miss:no_covering_sweep"] - before["miss:no_covering_sweep"] == 3
    with Session(composition.database(settings)) as session:
        (sweep,) = session.exec(select(StripeInvoiceSweep)).all()
        assert sweep.finished_at is None  # never trusted


# --------------------------------------------------------------------------- the close in steps
# Beat's close runs its sweep as tasks of a bounded length and fans out once
# (worker.month_close); these drive the same steps in this process.

EXTRA_INVOICES = 210  # with the orgs' own: three pages of 100


def _many_invoices(settings: Settings) -> None:
    gateway = composition.stripe_gateway(settings)
    customer = gateway.create_customer(metadata={"org_id": "filler"}, idempotency_key="c:filler")
    for n in range(EXTRA_INVOICES):
        gateway.create_invoice(
            stripe_customer_id=customer.stripe_customer_id,
            description=f"filler {n}",
            idempotency_key=f"inv:filler:{n}",
        )


def _sweep_to_the_end(start: month_close.CloseStart, settings: Settings) -> int:
    """The close's sweep a page per step, as the chained tasks run it; how many steps."""
    assert start.sweep_id is not None
    step, steps = start.step, 0
    while True:
        outcome = month_close.run_sweep_step(start.sweep_id, step, max_pages=1, settings=settings)
        assert outcome is not None
        assert not outcome.superseded
        steps += 1
        if outcome.finished:
            return steps
        step = outcome.step


def _invoice_listings(emulator: Any) -> int:
    return int(emulator.state.stats()["requests_by_route"].get("GET /v1/invoices", 0))


def test_the_close_sweeps_in_steps_and_a_second_delivery_neither_sweeps_nor_fans_out(
    world: tuple[Settings, Any],
) -> None:
    settings, emulator = world
    org_ids = _open_month(settings, emulator, 3)
    _many_invoices(settings)
    # The close lists what was created since the month ended: the drafts and the fillers.
    swept_from = int((PERIOD.period_end - timedelta(minutes=1)).timestamp())
    invoice_count = len([i for i in emulator.state.invoices() if i["created"] >= swept_from])
    assert invoice_count == EXTRA_INVOICES + len(org_ids)

    first = month_close.begin_close(PERIOD, CLOSE_AT, settings=settings)
    again = month_close.begin_close(PERIOD, CLOSE_AT, settings=settings)  # before any step
    assert (again.sweep_id, again.step, again.fanned_out) == (first.sweep_id, 0, False)
    assert _sweep_to_the_end(first, settings) == 3
    chunks = month_close.claim_chunks(PERIOD, 2, settings=settings)
    assert chunks == [org_ids[:2], org_ids[2:]]
    month_close.chunks_sent(PERIOD, settings=settings)
    listings = _invoice_listings(emulator)

    late = month_close.begin_close(PERIOD, CLOSE_AT, settings=settings)  # a redelivery

    assert late.fanned_out
    assert month_close.claim_chunks(PERIOD, 2, settings=settings) is None
    assert _invoice_listings(emulator) == listings
    with Session(composition.database(settings)) as session:
        (sweep,) = session.exec(select(StripeInvoiceSweep)).all()
        assert sweep.finished_at == CLOSE_AT
        assert (sweep.invoice_count, sweep.page_requests, sweep.step) == (invoice_count, 3, 3)
        run = session.get(CloseRun, PERIOD.label())
        assert run is not None
        assert (run.sweep_id, run.org_count) == (sweep.id, 3)


def test_a_sweep_step_delivered_twice_saves_its_progress_once(
    world: tuple[Settings, Any],
) -> None:
    """Two deliveries of one step list side by side (the second starts while the first waits
    on Stripe): the first to save goes on, the other stops; a third, later, lists nothing."""
    settings, emulator = world
    _open_month(settings, emulator, 2)
    _many_invoices(settings)
    start = month_close.begin_close(PERIOD, CLOSE_AT, settings=settings)
    assert start.sweep_id is not None
    engine, gateway = composition.database(settings), composition.stripe_gateway(settings)
    rival: list[SweepStep] = []

    class RacedGateway:
        """Stripe as the first delivery sees it: the rival delivery runs the same step to
        its end while the first one's page is on its way."""

        def list_account_invoices(
            self, *, created_from_at: datetime, starting_after: str | None = None
        ) -> InvoicePage:
            if not rival:
                rival.append(sweep_step(engine, gateway, start.sweep_id or 0, 0, max_pages=1))
            return gateway.list_account_invoices(
                created_from_at=created_from_at, starting_after=starting_after
            )

    first = sweep_step(engine, RacedGateway(), start.sweep_id, 0, max_pages=1)

    assert (rival[0].step, rival[0].superseded, rival[0].finished) == (1, False, False)
    assert (first.superseded, first.finished) == (True, False)
    listings = _invoice_listings(emulator)
    third = sweep_step(engine, gateway, start.sweep_id, 0, max_pages=1)
    assert (third.step, third.superseded) == (1, True)
    assert _invoice_listings(emulator) == listings  # it read the progress, not Stripe
    with Session(engine) as session:
        sweep = session.get(StripeInvoiceSweep, start.sweep_id)
        assert sweep is not None
        assert (sweep.step, sweep.page_requests, sweep.finished_at) == (1, 1, None)


def test_a_fan_out_whose_delivery_died_is_claimed_again_once_its_lease_runs_out(
    world: tuple[Settings, Any],
) -> None:
    settings, emulator = world
    org_ids = _open_month(settings, emulator, 2)
    month_close.begin_close(PERIOD, CLOSE_AT, settings=settings)
    assert month_close.claim_chunks(PERIOD, 50, settings=settings) == [org_ids]
    # That delivery died before its chunks reached the broker: within its lease, no other
    # delivery fans out...
    assert month_close.claim_chunks(PERIOD, 50, settings=settings) is None
    with unit_of_work(composition.database(settings)) as session:
        run = session.get(CloseRun, PERIOD.label())
        assert run is not None
        assert run.fan_out_claimed_at is not None
        run.fan_out_claimed_at -= month_close.FAN_OUT_LEASE + timedelta(seconds=1)
        session.add(run)
    # ...and after it, the next one does (chunks that did get out are safe to run twice).
    assert month_close.claim_chunks(PERIOD, 50, settings=settings) == [org_ids]
    month_close.chunks_sent(PERIOD, settings=settings)
    assert month_close.begin_close(PERIOD, CLOSE_AT, settings=settings).fanned_out


def test_the_close_command_sweeps_once_and_pushes_every_org_from_the_mirror(
    world: tuple[Settings, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """`billing close --period … --now`, an admin's rerun of a close, lists the month's drafts
    once (the sweep), so no org's push lists its own invoices."""
    settings, emulator = world
    org_ids = _open_month(settings, emulator, 5)
    emulator.state.reset(stats_only=True)
    before = MIRROR_COUNTS.copy()

    code = main(
        ["close", "--period", PERIOD.label(), "--now", "--at", CLOSE_AT.isoformat(), "--json"]
    )

    assert code == 0
    payload = json.loads(capsys.readouterr().out.splitlines()[-1])  # after the logs
    assert payload["orgs"] == len(org_ids)
    assert payload["failed"] == 0
    assert payload["invoices_swept"] >= len(org_ids)
    assert MIRROR_COUNTS["hit"] - before["hit"] == len(org_ids)
    assert MIRROR_COUNTS["miss"] == before["miss"]
    with Session(composition.database(settings)) as session:
        sweep = session.exec(select(StripeInvoiceSweep)).one()
    assert _core_requests(emulator.state.stats()).get("GET /v1/invoices", 0) == sweep.page_requests
