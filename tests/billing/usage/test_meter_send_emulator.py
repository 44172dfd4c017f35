"""How a push reaches the meters: one stream request per org, the v1 fallback, and a v1 refusal
settled through the meter's summary instead of Stripe's error code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from billing.core.errors import TransientBillingError
from billing.usage.meter_send import STREAM_NOTE
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import WriteStatus
from stripe_emulator import EmulatorConfig
from tests.billing.usage.test_push_emulator import OCT, _customer, at, iso, usage
from tests.fixtures.e2e import World, world

STREAM = "POST /v2/billing/meter_event_stream"
V1 = "POST /v1/billing/meter_events"


def _world(database_url: str, transport: str, **config: object) -> Iterator[World]:
    with world(
        database_url,
        OCT,
        EmulatorConfig(**config),
        transport=transport,  # type: ignore[arg-type]
    ) as the_world:
        the_world.sync_catalog("devtools")
        org = {
            "type": "org",
            "org": "acme",
            "book": "devtools",
            "plan": "team",
            "interval": "year",
            "seats": 10,
            "at": iso(OCT),
        }
        the_world.ingest([org])
        the_world.provision("acme", "devtools", "team", "year", 10)
        the_world.advance(at(10))
        the_world.ingest(
            [
                usage("m1", "copilot_messages", 400, at(2)),
                usage("r1", "runner_minutes", 1234, at(5)),
            ]
        )
        yield the_world


@pytest.fixture
def streamed(database_url: str) -> Iterator[World]:
    yield from _world(database_url, "stream")


@pytest.fixture
def no_stream(database_url: str) -> Iterator[World]:
    yield from _world(database_url, "stream", meter_event_stream=False)


@pytest.fixture
def v1(database_url: str) -> Iterator[World]:
    yield from _world(database_url, "v1")


def _routes(w: World) -> dict[str, int]:
    routes: dict[str, int] = w.emulator.state.stats()["requests_by_route"]
    return routes


def _rows(w: World) -> list[UsagePush]:
    with Session(w.engine) as session:
        return list(session.exec(select(UsagePush).order_by(UsagePush.meter)))


def test_one_orgs_push_is_one_stream_request_and_summaries_confirm_it(streamed: World) -> None:
    w = streamed
    outcome = w.usage.push_org("acme", w.now, verify=True)
    assert outcome.meter_events_sent == 3  # messages, runner minutes, resource hours (0)
    assert _routes(w).get(STREAM) == 1
    assert _routes(w).get(V1, 0) == 0
    rows = _rows(w)
    assert {r.status for r in rows} == {WriteStatus.DONE}
    assert {r.error for r in rows} == {STREAM_NOTE}
    confirmed = {r.meter: r.confirmed_quantity for r in outcome.results}
    assert confirmed["copilot_messages"] == 400
    assert confirmed["runner_minutes"] == 1234
    assert w.usage.push_org("acme", w.now).action == "unchanged"
    assert _routes(w).get(STREAM) == 1


def test_a_crashed_stream_push_resends_the_same_identifiers_and_counts_once(
    streamed: World,
) -> None:
    w = streamed
    w.push_usage("acme")
    with Session(w.engine) as session:
        for row in session.exec(select(UsagePush)):
            row.status = WriteStatus.STARTED  # the answer was lost after Stripe accepted it
            session.add(row)
        for state in session.exec(select(UsagePeriod)):
            state.sent_quantity = None
            session.add(state)
        session.commit()
    again = w.push_usage("acme")
    assert {r.revision for r in again.results} == {1}
    assert _routes(w).get(STREAM) == 2
    stats = w.emulator.state.stats()
    # the identical request under the same idempotency key is a replay; Stripe stores each
    # event once either way
    assert stats["idempotent_replays_total"] == 1
    assert stats["meter_events_total"] == 3
    assert stats["meter_event_stream_errors"] == []
    assert {r.status for r in _rows(w)} == {WriteStatus.DONE}


def test_an_account_without_the_stream_falls_back_to_v1(no_stream: World) -> None:
    w = no_stream
    outcome = w.usage.push_org("acme", w.now, verify=True)
    assert outcome.action == "pushed"
    assert _routes(w).get(V1) == 3
    assert _routes(w).get(STREAM, 0) == 0
    assert {r.status for r in _rows(w)} == {WriteStatus.DONE}
    assert {r.meter: r.confirmed_quantity for r in outcome.results}["copilot_messages"] == 400


def test_a_v1_refusal_is_delivered_only_if_the_summary_holds_the_value(v1: World) -> None:
    w = v1
    w.push_usage("acme")
    (messages,) = [r for r in _rows(w) if r.meter == "copilot_messages"]
    # Stripe cancels the event but keeps its identifier: a resend is refused, and the summary
    # no longer holds the value, so the refusal is a failure, not a delivery.
    w.gateway.client.v1.billing.meter_event_adjustments.create(
        {
            "event_name": "devtools.copilot_messages",
            "type": "cancel",
            "cancel": {"identifier": messages.identifier},
        }
    )
    # Stripe prunes idempotency keys after 24 h or more while it may still hold identifiers:
    # the resend below is then answered by the identifier check, not replayed.
    w.emulator.state._saved.clear()
    with Session(w.engine) as session:
        for row in session.exec(select(UsagePush)):
            row.status = WriteStatus.STARTED
            session.add(row)
        for state in session.exec(select(UsagePeriod)):
            state.sent_quantity = None
            session.add(state)
        session.commit()
    again = {r.meter: r for r in w.push_usage("acme").results}
    assert again["copilot_messages"].action == "failed"
    assert again["runner_minutes"].action == "sent"  # refused too, but the summary holds it
    statuses = {r.meter: r.status for r in _rows(w)}
    assert statuses["copilot_messages"] == WriteStatus.FAILED
    assert statuses["runner_minutes"] == WriteStatus.DONE


def test_a_stream_request_that_keeps_failing_leaves_the_rows_started_for_the_next_run(
    streamed: World,
) -> None:
    w = streamed
    # more 500s than stripe-python's two retries: the push raises, nothing is lost
    w.emulator.state.configure(fail_next=3, fault_path_prefix="/v2/billing/meter_event_stream")
    with pytest.raises(TransientBillingError):
        w.push_usage("acme")
    assert {r.status for r in _rows(w)} == {WriteStatus.STARTED}
    first = {r.identifier for r in _rows(w)}
    w.emulator.state.configure(fault_path_prefix=None)
    again = w.push_usage("acme")
    assert again.meter_events_sent == 3
    assert {r.identifier for r in _rows(w)} == first  # the same revisions, sent once more
    assert {r.status for r in _rows(w)} == {WriteStatus.DONE}
    assert w.emulator.state.meter_total(_customer(w), "devtools.copilot_messages", 0, 2**31) == 400
