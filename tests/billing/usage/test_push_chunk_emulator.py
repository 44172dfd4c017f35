"""A chunk's push (the month close's): set-based reads, all its orgs' meter events in shared stream
requests, and the same rows, identifiers and totals as pushing each org alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from billing.core.errors import TransientBillingError
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.usage.meter_send import MeterSend, OrgMeters, _batches
from billing.usage.push_reads import ChunkReads, SessionReads
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import StripeCustomerRecord, WriteStatus
from stripe_emulator import EmulatorConfig
from tests.billing.test_stripe_calls_outside_transactions import usage
from tests.billing.usage.test_push_emulator import OCT, at, iso
from tests.fixtures.e2e import World, world

STREAM = "POST /v2/billing/meter_event_stream"
ORGS = ("acme", "bolt", "cove", "dune")
MESSAGES = {"acme": 400, "bolt": 10, "cove": 0, "dune": 77}


def _org(org: str) -> dict[str, object]:
    return {
        "type": "org",
        "org": org,
        "book": "devtools",
        "plan": "team",
        "interval": "year",
        "seats": 3,
        "at": iso(OCT),
    }


@pytest.fixture
def chunk_world(database_url: str) -> Iterator[World]:
    with world(database_url, OCT, EmulatorConfig()) as w:
        w.sync_catalog("devtools")
        w.ingest([_org(org) for org in (*ORGS, "late")])
        for org in ORGS:
            w.provision(org, "devtools", "team", "year", 3)
        w.advance(at(10))
        w.ingest(
            [
                usage(org, f"{org}-m", "copilot_messages", quantity, at(2))
                for org, quantity in MESSAGES.items()
                if quantity
            ]
            + [usage("acme", "acme-r", "runner_minutes", 1234, at(5))]
        )
        yield w


def _rows(w: World) -> list[UsagePush]:
    with Session(w.engine) as session:
        return list(session.exec(select(UsagePush).order_by(UsagePush.org_id, UsagePush.meter)))


def _stream_requests(w: World) -> int:
    return int(w.emulator.state.stats()["requests_by_route"].get(STREAM, 0))


def _total(w: World, org: str, meter: str) -> int:
    with Session(w.engine) as session:
        record = session.get(StripeCustomerRecord, org)
        assert record is not None
        assert record.stripe_customer_id is not None
    return int(w.emulator.state.meter_total(record.stripe_customer_id, meter, 0, 2**31))


def test_a_chunk_sends_every_orgs_events_in_one_request_and_a_rerun_sends_nothing(
    chunk_world: World,
) -> None:
    w = chunk_world
    outcomes = w.usage.push_chunk([*ORGS, "late"], w.now)
    by_org = {o.org_id: o for o in outcomes}
    assert by_org["late"].action == "not_provisioned"  # in the ledger, not in Stripe yet
    assert {by_org[org].action for org in ORGS} == {"pushed"}
    assert {by_org[org].meter_events_sent for org in ORGS} == {3}
    assert _stream_requests(w) == 1  # 12 events, 4 orgs: one request
    for org, quantity in MESSAGES.items():
        assert _total(w, org, "devtools.copilot_messages") == quantity
    assert _total(w, "acme", "devtools.runner_minutes") == 1234
    rows = _rows(w)
    assert len(rows) == 12
    assert {r.status for r in rows} == {WriteStatus.DONE}
    assert {r.revision for r in rows} == {1}
    again = w.usage.push_chunk(list(ORGS), w.now)
    assert {o.action for o in again} == {"unchanged"}
    assert _stream_requests(w) == 1


def test_a_chunk_after_late_usage_sends_one_new_revision_as_a_single_push_would(
    chunk_world: World,
) -> None:
    w = chunk_world
    w.usage.push_chunk(list(ORGS), w.now)
    w.ingest([usage("bolt", "bolt-m2", "copilot_messages", 5, at(9))])
    outcomes = {o.org_id: o for o in w.usage.push_chunk(list(ORGS), w.now)}
    assert outcomes["bolt"].meter_events_sent == 1
    assert {outcomes[org].action for org in ("acme", "cove", "dune")} == {"unchanged"}
    (revision,) = [r for r in _rows(w) if r.org_id == "bolt" and r.revision == 2]
    assert revision.quantity == 15
    assert revision.identifier.endswith(":r2")
    assert _total(w, "bolt", "devtools.copilot_messages") == 15
    # the single-org push sees what the chunk left: nothing to send
    assert w.push_usage("bolt").action == "unchanged"


def test_a_chunk_whose_request_keeps_failing_resends_the_same_rows_next_time(
    chunk_world: World,
) -> None:
    w = chunk_world
    w.emulator.state.configure(fail_next=3, fault_path_prefix="/v2/billing/meter_event_stream")
    with pytest.raises(TransientBillingError):
        w.usage.push_chunk(list(ORGS), w.now)
    assert {r.status for r in _rows(w)} == {WriteStatus.STARTED}
    first = {r.identifier for r in _rows(w)}
    w.emulator.state.configure(fault_path_prefix=None)
    again = w.usage.push_chunk(list(ORGS), w.now)
    assert sum(o.meter_events_sent for o in again) == 12
    assert {r.identifier for r in _rows(w)} == first
    assert {r.status for r in _rows(w)} == {WriteStatus.DONE}
    assert _total(w, "acme", "devtools.copilot_messages") == 400


def test_chunk_reads_answer_as_the_per_org_queries_do(chunk_world: World) -> None:
    w = chunk_world
    w.usage.push_chunk(list(ORGS), w.now)
    w.advance(at(20))
    w.ingest([usage("dune", "dune-m2", "copilot_messages", 3, at(19))])
    period = Period(OCT, OCT + timedelta(days=31))
    one, since = SessionReads(), w.now - timedelta(days=105)
    with Session(w.engine) as session:
        chunk = ChunkReads(session, [*ORGS, "late"], since)
        subs = {org: one.subscription(session, org) for org in (*ORGS, "late")}
        planned = [(sub, org, [period]) for org, sub in subs.items() if sub is not None]
        chunk.prepare(session, planned, w.now)
        for org in (*ORGS, "late"):
            assert chunk.subscription(session, org) == subs[org]
            assert list(chunk.plan_rows(session, org)) == list(one.plan_rows(session, org))
            assert chunk.known_states(session, org, since) == one.known_states(session, org, since)
            assert chunk.unfinished(session, org) == one.unfinished(session, org)
            assert chunk.ledger_totals(session, org, period, w.now) == one.ledger_totals(
                session, org, period, w.now
            )
            for meter in (Meter.COPILOT_MESSAGES, Meter.RUNNER_MINUTES):
                assert chunk.latest_revision(session, org, meter, OCT) == one.latest_revision(
                    session, org, meter, OCT
                )
        assert chunk.ledger_totals(session, "dune", period, w.now)[Meter.COPILOT_MESSAGES] == 80
        assert chunk.latest_revision(session, "acme", Meter.COPILOT_MESSAGES, OCT) == 1


def _sends(count: int) -> list[MeterSend]:
    state = UsagePeriod(
        org_id="x",
        meter="copilot_messages",
        period_start_at=OCT,
        period_end_at=OCT,
        ledger_quantity=Decimal(0),
        updated_at=OCT,
    )
    period = Period(OCT, OCT + timedelta(days=1))
    return [MeterSend(Meter.COPILOT_MESSAGES, period, state, UsagePush()) for _ in range(count)]


def test_requests_carry_whole_orgs_up_to_100_events_and_split_only_an_org_over_100() -> None:
    org = OrgMeters("x", "cus_x", None, OCT)  # type: ignore[arg-type]
    planned = [(org, _sends(n)) for n in (60, 30, 20, 250, 0, 5)]
    batches = [[(index, len(sends)) for index, sends in batch] for batch in _batches(planned, 100)]
    assert batches == [[(0, 60), (1, 30)], [(2, 20)], [(3, 100)], [(3, 100)], [(3, 50), (5, 5)]]
    assert all(sum(n for _, n in batch) <= 100 for batch in batches)
