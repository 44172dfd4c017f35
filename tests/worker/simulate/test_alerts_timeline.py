"""A simulated month with a hand edit in Stripe raises exactly one alert, at a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, create_engine, select

from models.alerts import Alert, CloseRun
from tests.fixtures.alert_receiver import AlertReceiver, alert_receiver
from tests.worker.simulate.test_timelines import invoices, run
from worker.settings import get_settings

__all__ = ["alert_receiver"]


@pytest.fixture
def alerting(
    alert_receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AlertReceiver]:
    monkeypatch.setenv("BILLING_ALERT_WEBHOOK_URL", alert_receiver.url)
    monkeypatch.setenv("BILLING_PUBLIC_URL", "https://billing.example.test")
    get_settings.cache_clear()
    yield alert_receiver
    get_settings.cache_clear()


def test_a_hand_edit_raises_one_alert_for_the_held_draft(
    alerting: AlertReceiver, tmp_path: Path
) -> None:
    result = run("hand_edit", tmp_path)
    _, may = invoices(result, "acme")
    assert (may["status"], may["held"]) == ("draft", True)

    assert len(alerting.received) == 1
    alert = alerting.received[0]
    assert alert["text"].startswith(f"[billing] Draft invoice {may['id']} was held")
    assert "org acme" in alert["text"]
    # Stripe bills $7.00 (the 200¢ of messages and the 500¢ added by hand), the ledger $2.00.
    assert "difference $5.00" in alert["text"]
    fields = " ".join(f["text"] for f in alert["blocks"][1]["fields"])
    assert "*Org:* acme" in fields
    assert f"*Invoice:* {may['id']}" in fields
    assert "*Difference:* $5.00" in fields
    link = alert["blocks"][2]["text"]["text"]
    assert link.startswith("<https://billing.example.test/reconciliations/")

    engine = create_engine(f"sqlite:///{tmp_path / 'billing-simulation.db'}")
    with Session(engine) as session:
        rows = session.exec(select(Alert)).all()
        closes = session.exec(select(CloseRun).order_by(CloseRun.period)).all()
    assert [(a.kind, a.stripe_invoice_id, a.delivery, a.attempts) for a in rows] == [
        ("held_draft", may["id"], "delivered", 1)
    ]
    assert rows[0].difference_amount == 500
    # The month closes ran (and finished), so no late-close alert was due.
    assert [c.period for c in closes if c.finished_at is not None] == [c.period for c in closes]
    assert "2027-04" in [c.period for c in closes]
