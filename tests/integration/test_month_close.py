"""Issue 5: a month of billing for 50 orgs on real Celery workers, on Redis, against the Stripe
emulator — and the same while a worker is killed, while Stripe answers 429/500, and while every
task is delivered twice. Each ends with Stripe holding exactly what the ledger says."""

from __future__ import annotations

import pytest

from tests.integration.brokers import Broker
from tests.integration.conftest import MakeCluster, MakeMonth
from tests.integration.month import (
    assert_exact,
    assert_nothing_doubled,
    assert_reconciled,
    compare_with_ledger,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


def test_a_month_for_50_orgs_ends_with_stripe_equal_to_the_ledger(
    broker: Broker, make_cluster: MakeCluster, make_month: MakeMonth
) -> None:
    """On the Redis broker and on RabbitMQ (quorum queues, publisher confirms)."""
    cluster = make_cluster(**broker.settings)
    cluster.start_worker()
    month = make_month(cluster)
    month.open()
    month.simulate(push_every_days=4)
    month.close_ledger()
    counts = month.wait_close(month.start_close())
    assert sum(c["orgs"] for c in counts) == 50
    assert sum(c["failed"] for c in counts) == 0
    assert_exact(month)
    assert_nothing_doubled(month)
    month.reconcile()
    assert_reconciled(month)


@pytest.mark.timeout(480)  # recovery waits out the killed worker's org locks (120 s)
def test_a_worker_killed_mid_close_and_restarted_loses_and_doubles_nothing(
    make_cluster: MakeCluster, make_month: MakeMonth
) -> None:
    # Redis hands a dead worker's unacknowledged tasks to another after 20 s; the hard time
    # limit stays below that (and above the org lock's 10 s wait plus a chunk's calls).
    cluster = make_cluster(
        broker_visibility_timeout=20, task_soft_time_limit=14, task_time_limit=17
    )
    first = cluster.start_worker()
    # Slow Stripe down during the close so the kill lands while chunks are in flight.
    month = make_month(cluster, worker_faults={"latency_ms": 100})
    month.open()
    month.simulate(push_every_days=10)
    month.close_ledger()
    (close,) = month.start_close(chunk_size=2)  # 25 chunks, two at a time
    total = len(close.results)
    wait_until(lambda: close.completed_count() >= 3)
    first.kill()
    done_at_kill = close.completed_count()
    assert 3 <= done_at_kill < total, (done_at_kill, total)
    assert compare_with_ledger(month).mismatches, "the kill came after the close had finished"

    # The killed worker's chunks come back after the visibility timeout; the orgs it was
    # pushing stay locked until their lock expires (120 s), then the retries get through.
    cluster.start_worker()
    counts = month.wait_close([close])
    assert len(counts) == total
    assert sum(c["orgs"] for c in counts) == 50
    assert sum(c["failed"] for c in counts) == 0
    assert_exact(month)
    assert_nothing_doubled(month)


def test_stripe_answering_429_and_500_loses_and_doubles_nothing(
    make_cluster: MakeCluster, make_month: MakeMonth
) -> None:
    # The workers' shared budget (40/s) is above the emulator's limit (15/s): sustained
    # traffic gets 429s. One request in ten fails with a 500 after Stripe executed it (the
    # response is lost in transit; a retry with the same idempotency key gets the saved one).
    cluster = make_cluster(stripe_requests_per_second=40)
    cluster.start_worker()
    faults = {"rate_limit_rps": 15.0, "error_rate": 0.1, "fault_phase": "after", "seed": 5}
    month = make_month(cluster, worker_faults=faults)
    month.open()
    month.simulate(push_every_days=15)
    month.close_ledger()
    counts = month.wait_close(month.start_close())
    assert sum(c["failed"] for c in counts) == 0
    stats = month.emulator.state.stats()
    assert stats["rate_limited_total"] > 0, stats
    # About one request in ten, of a few hundred: the chunks send their orgs' meter events
    # together (a few stream requests per chunk), so there are fewer requests to fail than one
    # per org.
    assert stats["injected_errors_total"] > 20, stats
    assert stats["idempotent_replays_total"] > 0, stats
    assert_exact(month)
    assert_nothing_doubled(month)


def test_every_task_delivered_twice_loses_and_doubles_nothing(
    make_cluster: MakeCluster, make_month: MakeMonth
) -> None:
    cluster = make_cluster()
    cluster.start_worker()
    month = make_month(cluster, copies=2)  # each task sent twice, the copies side by side
    month.open()
    # Stripe made one customer and one subscription per org (the copies shared their keys).
    objects = month.emulator.state.stats()["objects"]
    assert objects["customer"] == objects["subscription"] == 50
    month.simulate(push_every_days=10)
    month.close_ledger()
    groups = month.start_close(chunk_size=5)
    # The close delivered twice fanned out once: one group, every org in one chunk.
    assert len(groups) == 1
    counts = month.wait_close(groups)
    assert sum(c["orgs"] for c in counts) == 50
    assert sum(c["failed"] for c in counts) == 0
    assert_exact(month)
    assert_nothing_doubled(month)
