"""Alerts: raised once per subject inside the event's own transaction, delivered to a real
receiver on loopback with retries recorded, and the late month close."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.alerts.close import check_close, close_chunk_done, close_progress, close_started
from billing.alerts.delivery import AlertDeliverer, retry_after
from billing.alerts.triggers import note_price_drift, note_reconciliation
from billing.core.errors import PermanentBillingError
from billing.ledger.stripe_writes import write_to_stripe
from models.alerts import Alert
from models.db import unit_of_work
from models.push_records import UsagePush
from models.reconciliation import Reconciliation
from tests.fixtures.alert_receiver import AlertReceiver, alert_receiver
from worker.alert_webhook import WebhookAlertSender

__all__ = ["alert_receiver"]

NOW = datetime(2027, 5, 1, 0, 40, tzinfo=UTC)


def _reconciliation(**fields: object) -> Reconciliation:
    values: dict[str, object] = {
        "stripe_invoice_id": "in_1",
        "stripe_customer_id": "cus_1",
        "org_id": "acme",
        "invoice_status": "draft",
        "currency": "usd",
        "status": "unexpected_in_stripe",
        "expected_total_amount": 200,
        "stripe_total_amount": 700,
        "trigger": "sweep",
        "held": True,
        "created_at": NOW,
    }
    values.update(fields)
    return Reconciliation(**values)  # type: ignore[arg-type]


def _store(engine: Engine, rec: Reconciliation) -> bool:
    with unit_of_work(engine) as session:
        session.add(rec)
        session.flush()
        return note_reconciliation(session, rec)


def _alerts(engine: Engine) -> list[Alert]:
    with Session(engine) as session:
        return list(session.exec(select(Alert).order_by(Alert.id)))


def test_a_held_draft_alerts_once_however_often_it_is_seen(engine: Engine) -> None:
    assert _store(engine, _reconciliation()) is True
    assert _store(engine, _reconciliation(created_at=NOW + timedelta(minutes=15))) is False
    (alert,) = _alerts(engine)
    assert (alert.kind, alert.subject_key, alert.org_id) == (
        "held_draft",
        "held_draft:in_1",
        "acme",
    )
    assert alert.difference_amount == 500
    assert alert.summary == (
        "Draft invoice in_1 was held (unexpected_in_stripe) for org acme: Stripe $7.00, "
        "ledger $2.00, difference $5.00"
    )
    assert alert.delivery == "pending"


@pytest.mark.parametrize(
    ("invoice_status", "status", "held", "kind"),
    [
        ("paid", "mismatched", False, "wrong_final_invoice"),
        ("open", "missing_in_stripe", False, "wrong_final_invoice"),
        ("uncollectible", "unexpected_in_stripe", False, "wrong_final_invoice"),
        ("paid", "matched", False, None),
        ("paid", "rounding", False, None),
        ("void", "mismatched", False, None),
        ("draft", "mismatched", False, None),  # not held (the policy said no): no alert
    ],
)
def test_final_invoices_alert_on_the_wrong_statuses_only(
    engine: Engine, invoice_status: str, status: str, held: bool, kind: str | None
) -> None:
    _store(engine, _reconciliation(invoice_status=invoice_status, status=status, held=held))
    assert [a.kind for a in _alerts(engine)] == ([kind] if kind else [])


def test_an_alert_is_rolled_back_with_its_event(engine: Engine) -> None:
    def crash() -> None:
        with unit_of_work(engine) as session:
            rec = _reconciliation()
            session.add(rec)
            session.flush()
            assert note_reconciliation(session, rec)
            raise RuntimeError("crash after the alert, before the commit")

    with pytest.raises(RuntimeError, match="crash"):
        crash()
    assert _alerts(engine) == []


def test_a_write_stripe_refuses_for_good_alerts_once(engine: Engine) -> None:
    def refuse() -> None:
        raise PermanentBillingError("No such meter", code="resource_missing", http_status=400)

    with Session(engine) as session:
        row = UsagePush(
            org_id="acme",
            meter="copilot_messages",
            period_start_at=NOW,
            revision=1,
            quantity=Decimal(5),
            identifier="usage:acme:copilot_messages:x:r1",
            event_timestamp_at=NOW,
            status="started",
            created_at=NOW,
        )
        outcome = write_to_stripe(session, row, NOW, refuse)
        assert outcome.error is not None
        write_to_stripe(session, row, NOW, refuse)  # the same write refused again
    (alert,) = _alerts(engine)
    assert alert.kind == "push_failed"
    assert alert.subject_key == "push_failed:usage:acme:copilot_messages:x:r1"
    assert alert.summary.startswith("Stripe refused a meter event for org acme for good: No such")
    assert json.loads(alert.details_json)["meter"] == "copilot_messages"


def test_price_drift_alerts_once_per_drifted_price(engine: Engine) -> None:
    findings = [
        {
            "catalog_key": "price:devtools:team:seats:year",
            "stripe_price_id": "price_1",
            "note": "x",
        },
        {
            "catalog_key": "price:devtools:free:copilot_messages",
            "stripe_price_id": None,
            "note": "y",
        },
    ]
    for _ in range(2):  # the check runs every six hours and finds the same drift
        with unit_of_work(engine) as session:
            note_price_drift(session, "devtools", findings, NOW)
    assert [a.subject_key for a in _alerts(engine)] == [
        "price_drift:devtools:price:devtools:team:seats:year:price_1",
        "price_drift:devtools:price:devtools:free:copilot_messages:none",
    ]


def test_delivery_retries_with_backoff_and_records_each_attempt(
    engine: Engine, alert_receiver: AlertReceiver
) -> None:
    _store(engine, _reconciliation(id=41))
    alert_receiver.fail_next = 2
    sender = WebhookAlertSender(alert_receiver.url, public_url="https://billing.test/")
    deliverer = AlertDeliverer(engine, sender)

    first = deliverer.deliver_due(NOW)
    assert (first.delivered, first.retrying) == (0, 1)
    (alert,) = _alerts(engine)
    assert (alert.attempts, alert.delivery) == (1, "pending")
    assert alert.last_error == "the alert webhook answered 500"
    assert alert.next_attempt_at == NOW + retry_after(1)
    # Not due again yet: nothing is sent.
    assert deliverer.deliver_due(NOW + timedelta(seconds=10)).retrying == 0
    assert alert_receiver.attempts == 1

    deliverer.deliver_due(NOW + retry_after(1))
    done = deliverer.deliver_due(NOW + retry_after(1) + retry_after(2))
    assert done.delivered == 1
    (alert,) = _alerts(engine)
    assert (alert.attempts, alert.delivery, alert.last_error) == (3, "delivered", None)
    assert alert_receiver.attempts == 3
    (body,) = alert_receiver.received
    assert body["text"].startswith("[billing] Draft invoice in_1 was held")
    assert (
        body["blocks"][2]["text"]["text"]
        == "<https://billing.test/reconciliations/41|Open in support>"
    )
    # Delivered alerts are never sent again.
    assert deliverer.deliver_due(NOW + timedelta(days=1)).delivered == 0
    assert alert_receiver.attempts == 3


def test_an_alert_no_receiver_takes_ends_failed(
    engine: Engine, alert_receiver: AlertReceiver
) -> None:
    _store(engine, _reconciliation())
    alert_receiver.fail_next = 100
    sender = WebhookAlertSender(alert_receiver.url, format="generic")
    deliverer = AlertDeliverer(engine, sender, max_attempts=3)
    at = NOW
    for _ in range(5):
        deliverer.deliver_due(at)
        at += timedelta(hours=2)
    (alert,) = _alerts(engine)
    assert (alert.attempts, alert.delivery) == (3, "failed")
    assert alert_receiver.attempts == 3


def test_an_unreachable_receiver_is_an_attempt_with_its_reason(engine: Engine) -> None:
    _store(engine, _reconciliation())
    sender = WebhookAlertSender("http://127.0.0.1:9/nothing-listens", timeout_seconds=2)
    assert AlertDeliverer(engine, sender).deliver_due(NOW).retrying == 1
    (alert,) = _alerts(engine)
    assert alert.last_error is not None
    assert alert.last_error.startswith("the alert webhook is unreachable")


MAY_1 = datetime(2027, 5, 1, tzinfo=UTC)


def test_a_close_unfinished_30_minutes_into_the_grace_period_alerts_once(engine: Engine) -> None:
    close_started(engine, "2027-04", 3, MAY_1 + timedelta(minutes=2))
    close_chunk_done(engine, "2027-04", ["a", "b"], 0, MAY_1 + timedelta(minutes=5))
    close_chunk_done(engine, "2027-04", ["a", "b"], 0, MAY_1 + timedelta(minutes=6))  # rerun
    assert check_close(engine, MAY_1 + timedelta(minutes=29)) is False
    assert check_close(engine, MAY_1 + timedelta(minutes=31)) is True
    assert check_close(engine, MAY_1 + timedelta(minutes=36)) is False
    (alert,) = _alerts(engine)
    assert alert.subject_key == "close_late:2027-04"
    assert "has pushed 2 of 3 orgs, 31 minutes into" in alert.summary
    close_chunk_done(engine, "2027-04", ["c"], 0, MAY_1 + timedelta(minutes=40))
    with Session(engine) as session:
        progress = close_progress(session)
    assert progress is not None
    assert (progress.orgs_done, progress.duration_seconds) == (3, 38 * 60.0)


def test_a_finished_close_and_an_old_month_do_not_alert(engine: Engine) -> None:
    close_started(engine, "2027-04", 1, MAY_1 + timedelta(minutes=2))
    close_chunk_done(engine, "2027-04", ["a"], 0, MAY_1 + timedelta(minutes=3))
    assert check_close(engine, MAY_1 + timedelta(minutes=45)) is False
    # June 1: May's close never started. Alerted 30 minutes in, but not two days later.
    june = datetime(2027, 6, 1, tzinfo=UTC)
    assert check_close(engine, june + timedelta(days=2)) is False
    assert check_close(engine, june + timedelta(minutes=30)) is True
    assert [a.summary.split(",")[0] for a in _alerts(engine)] == [
        "The month close of 2027-05 has not started"
    ]
