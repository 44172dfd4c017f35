"""The record around a Stripe write: `started` is committed before the call, `done` or `failed`
after it, and a write that may have happened is settled by reading Stripe, not repeated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.errors import PermanentBillingError, TransientBillingError
from billing.ledger.stripe_writes import Settled, write_to_stripe
from models.push_records import SeatPush, UsagePush
from models.stripe_records import StripeCustomerRecord, WriteStatus

NOW = datetime(2026, 10, 1, 12, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def meter_event(identifier: str = "usage:acme:copilot_messages:1790812800:r1") -> UsagePush:
    return UsagePush(
        org_id="acme",
        meter="copilot_messages",
        period_start_at=datetime(2026, 10, 1, tzinfo=UTC),
        revision=1,
        quantity=Decimal(700),
        identifier=identifier,
        event_timestamp_at=NOW,
        status=WriteStatus.STARTED,
        created_at=NOW,
    )


def customer(status: WriteStatus = WriteStatus.PENDING) -> StripeCustomerRecord:
    return StripeCustomerRecord(
        org_id="acme", status=status, idempotency_key="provision:customer:acme", updated_at=NOW
    )


def stored_status(engine: Engine, model: type[UsagePush] | type[SeatPush]) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(model.status)).all())


def test_the_row_is_committed_started_before_the_call_and_done_after(engine: Engine) -> None:
    seen_during_call: list[list[str]] = []

    def call() -> str:
        seen_during_call.append(stored_status(engine, UsagePush))
        return "mev_1"

    answers: list[str | None] = []
    with Session(engine) as session:
        outcome = write_to_stripe(session, meter_event(), LATER, call, on_done=answers.append)

    assert seen_during_call == [["started"]]  # another connection already sees the row
    assert (outcome.status, outcome.called, outcome.response) == (WriteStatus.DONE, True, "mev_1")
    assert answers == ["mev_1"]
    with Session(engine) as session:
        row = session.exec(select(UsagePush)).one()
    assert (row.status, row.error, row.finished_at) == ("done", None, LATER)


def test_a_permanent_error_is_recorded_failed_and_returned(engine: Engine) -> None:
    refused = PermanentBillingError("stripe InvalidRequestError: no such customer", code="x")

    def call() -> str:
        raise refused

    with Session(engine) as session:
        outcome = write_to_stripe(session, meter_event(), LATER, call, on_done=pytest.fail)

    assert (outcome.status, outcome.exception, outcome.error) == (
        WriteStatus.FAILED,
        refused,
        "stripe InvalidRequestError: no such customer (code=x)",
    )
    with Session(engine) as session:
        row = session.exec(select(UsagePush)).one()
    assert (row.status, row.error, row.finished_at) == ("failed", outcome.error, LATER)


def test_a_transient_error_leaves_the_row_started_for_the_next_run(engine: Engine) -> None:
    def call() -> str:
        raise TransientBillingError("connection reset")

    with Session(engine) as session, pytest.raises(TransientBillingError):
        write_to_stripe(session, meter_event(), LATER, call)
    assert stored_status(engine, UsagePush) == ["started"]


def test_a_write_found_in_stripe_is_settled_without_a_call(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(customer(WriteStatus.STARTED))
        session.commit()
    ids: list[str | None] = []
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(StripeCustomerRecord, "acme")
        assert row is not None
        outcome = write_to_stripe(
            session,
            row,
            LATER,
            lambda: pytest.fail("Stripe already has the customer: no second create"),
            resolve=lambda: Settled(WriteStatus.DONE, "cus_1"),
            on_done=ids.append,
        )
    assert (outcome.status, outcome.called, outcome.response) == (WriteStatus.DONE, False, "cus_1")
    assert ids == ["cus_1"]
    with Session(engine) as session:
        stored = session.get(StripeCustomerRecord, "acme")
        assert stored is not None
        assert (stored.status, stored.updated_at, stored.started_at) == ("done", LATER, None)


def test_a_write_stripe_contradicts_is_failed_with_what_stripe_holds(engine: Engine) -> None:
    with Session(engine) as session:
        outcome = write_to_stripe(
            session,
            meter_event(),
            LATER,
            lambda: pytest.fail("not sent"),
            resolve=lambda: Settled(WriteStatus.FAILED, note="Stripe holds 7"),
        )
    assert (outcome.status, outcome.called, outcome.error) == (
        WriteStatus.FAILED,
        False,
        "Stripe holds 7",
    )
    assert stored_status(engine, UsagePush) == ["failed"]


def test_a_write_stripe_does_not_have_is_sent_with_the_same_row(engine: Engine) -> None:
    calls: list[str] = []

    def create() -> str:
        calls.append("create")
        return "cus_2"

    with Session(engine) as session:
        outcome = write_to_stripe(session, customer(), LATER, create, resolve=lambda: None)
    assert (outcome.status, outcome.called, calls) == (WriteStatus.DONE, True, ["create"])
    with Session(engine) as session:
        stored = session.get(StripeCustomerRecord, "acme")
        assert stored is not None
        assert (stored.status, stored.started_at) == ("done", LATER)


def test_errors_fit_their_column(engine: Engine) -> None:
    long_message = "x" * 3000

    def call() -> str:
        raise PermanentBillingError(long_message)

    with Session(engine) as session:
        write_to_stripe(session, meter_event(), LATER, call)
        write_to_stripe(session, customer(), LATER, call)
    with Session(engine) as session:
        push = session.exec(select(UsagePush)).one()
        record = session.get(StripeCustomerRecord, "acme")
        assert record is not None
    assert push.error == long_message[:2000]  # usage_pushes.error is 2,000 characters
    assert record.error == long_message  # a text column: kept whole
