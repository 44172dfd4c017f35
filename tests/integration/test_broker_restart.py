"""Issue 17: the month close on real Celery workers while its broker dies. A private
`redis-server` is SIGKILLed mid-close and started again seconds later (on the Redis broker it is
the broker; on RabbitMQ it holds results, locks and the request budget, and every connection to
RabbitMQ is cut with it). The month must end exactly as the fault-free run does: Stripe's meter
totals and seat quantities equal to the ledger, no meter event twice, every invoice reconciled.
Today's build aborted here with `Reject(OperationalError(...), requeue=False)`: a retry that
could not reach the broker dropped its delivery, and half the meter events were never sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.outbox import OutboxMessage
from tests.integration.brokers import Outage
from tests.integration.cluster import Cluster
from tests.integration.conftest import MakeCluster, MakeMonth
from tests.integration.month import (
    assert_exact,
    assert_nothing_doubled,
    assert_reconciled,
    compare_with_ledger,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

OUTAGE_SECONDS = 4.0
RELAY_EVERY_SECONDS = 2.0  # beat's `outbox-relay` entry (10 s in production)


@contextmanager
def beat_relaying(cluster: Cluster) -> Iterator[None]:
    """Send `billing.outbox.relay` every few seconds, as beat does (a real beat would also fire
    the wall-clock sweeps, which have no place in a month on a test clock)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(RELAY_EVERY_SECONDS):
            with suppress(Exception):  # a tick lost to a broker still reconnecting
                cluster.send("billing.outbox.relay")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def outbox_rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage)))


@pytest.mark.timeout(480)
def test_the_broker_killed_mid_close_and_restarted_loses_and_doubles_nothing(
    outage: Outage, make_cluster: MakeCluster, make_month: MakeMonth, engine: Engine
) -> None:
    # Short timeouts, as for the killed worker: Redis restores an unacknowledged delivery after
    # 20 s, a lock whose holder lost Redis expires after 10 s.
    cluster = make_cluster(
        **outage.settings,
        broker_visibility_timeout=20,
        task_soft_time_limit=14,
        task_time_limit=17,
        org_lock_timeout_seconds=10,
    )
    cluster.start_worker()
    # Stripe slowed down during the close so that the outage lands while chunks are in flight.
    month = make_month(cluster, worker_faults={"latency_ms": 100})
    month.open()
    month.simulate(push_every_days=10)
    month.close_ledger()
    (close,) = month.start_close(chunk_size=2)  # 25 chunks, two at a time
    wait_until(lambda: close.completed_count() >= 3)
    outage.begin()
    assert compare_with_ledger(month).mismatches, "the outage came after the close had finished"
    time.sleep(OUTAGE_SECONDS)
    outage.end()

    with beat_relaying(cluster):
        counts = month.wait_close([close])
    assert len(counts) == len(close.results)
    assert sum(c["orgs"] for c in counts) == 50
    assert sum(c["failed"] for c in counts) == 0
    assert_exact(month)
    assert_nothing_doubled(month)
    kept = outbox_rows(engine)
    assert kept, "no retry met the dead broker: the outage missed the close's work"
    assert all(row.published_at is not None for row in kept), "the relay left rows behind"
    month.reconcile()
    assert_reconciled(month)
