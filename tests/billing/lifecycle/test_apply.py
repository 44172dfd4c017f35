"""The lifecycle job against the emulator: a crash in the middle of a plan change is resumed
with the same idempotency keys, and running it again changes nothing (SPEC §10, issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import Session, col, select

from billing.core.errors import TransientBillingError
from billing.core.meters import Interval
from billing.lifecycle.apply import Lifecycle
from billing.setup.provisioning import OrgToProvision, Provisioner
from models.ledger import Org
from models.lifecycle_records import SubscriptionEnding
from models.stripe_records import StripeSubscriptionRecord, WriteStatus
from tests.fixtures.e2e import World, world

START = datetime(2027, 1, 1, tzinfo=UTC)
CHANGE = datetime(2027, 3, 10, 12, tzinfo=UTC)
FREE = {"type": "org", "org": "acme", "plan": "free", "seats": 3}
TEAM = {"type": "org", "org": "acme", "plan": "team", "seats": 10}


class CrashOnce:
    """The real gateway, but the first cancel dies after Stripe did it (the answer is lost)."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.cancels: list[str] = []

    def cancel_subscription(self, sub_id: str, **kwargs: Any) -> Any:
        self.cancels.append(kwargs["idempotency_key"])
        answer = self.gateway.cancel_subscription(sub_id, **kwargs)
        if len(self.cancels) == 1:
            raise TransientBillingError("connection reset after the request was sent")
        return answer

    def set_cancel_at(self, sub_id: str, cancel_at: Any, **kwargs: Any) -> Any:
        return self.gateway.set_cancel_at(sub_id, cancel_at, **kwargs)


def _provision(w: World, org_id: str) -> None:
    with Session(w.engine) as session:
        org = session.get(Org, org_id)
        assert org is not None
        Provisioner(w.gateway, w.engine).provision(
            OrgToProvision(
                org.id,
                org.book,
                org.plan,
                Interval(org.interval),
                org.term_start_at,
                10,
                stripe_test_clock_id=w.clock.stripe_test_clock_id,
            ),
            w.now,
        )


def test_a_crash_during_an_upgrade_is_resumed_with_the_same_keys(database_url: str) -> None:
    with world(database_url, START) as w:
        w.sync_catalog("devtools")
        w.ingest(
            [
                {
                    "type": "org",
                    "org": "acme",
                    "plan": "free",
                    "seats": 3,
                    "at": "2027-01-01T00:00:00Z",
                }
            ]
        )
        _provision(w, "acme")
        for month in (2, 3):  # a test clock moves at most two intervals at a time
            w.advance(datetime(2027, month, 1, tzinfo=UTC))
        w.advance(CHANGE)
        w.ingest(
            [
                {
                    "type": "org",
                    "org": "acme",
                    "plan": "team",
                    "seats": 10,
                    "at": "2027-03-10T12:00:00Z",
                }
            ]
        )
        with Session(w.engine) as session:
            old = session.get(StripeSubscriptionRecord, "acme")
            assert old is not None
            old_id = old.stripe_subscription_id
        gateway = CrashOnce(w.gateway)
        lifecycle = Lifecycle(
            w.engine,
            gateway,
            push_usage=w.usage.push_org,
            provision=lambda org, now: _provision(w, org),
        )
        with pytest.raises(TransientBillingError):
            lifecycle.apply("acme", w.now)
        with Session(w.engine) as session:
            [ending] = session.exec(select(SubscriptionEnding)).all()
            assert ending.status == WriteStatus.STARTED  # recorded before the call
        outcomes = lifecycle.apply("acme", w.now)
        assert [o.action for o in outcomes] == ["changed", "nothing"]
        assert gateway.cancels == [ending.idempotency_key] * 2  # resumed with the same key
        assert w.gateway.retrieve_subscription(str(old_id)).status == "canceled"
        with Session(w.engine) as session:
            new = session.get(StripeSubscriptionRecord, "acme")
            assert new is not None
            assert new.stripe_subscription_id != old_id
            assert (new.plan, new.term_start_at, new.status) == ("team", CHANGE, WriteStatus.DONE)
            endings = session.exec(
                select(SubscriptionEnding).order_by(col(SubscriptionEnding.id))
            ).all()
            assert [(e.how, e.status) for e in endings] == [("now", WriteStatus.DONE)]
        # Running it again is a no-op: nothing due, nothing written.
        assert [o.action for o in lifecycle.apply("acme", w.now)] == ["nothing"]
        assert len(gateway.cancels) == 2
