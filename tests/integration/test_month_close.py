"""Issue 5: a month of billing for 50 orgs on real Celery workers, on Redis, against the Stripe
emulator — and the same while a worker is killed, while Stripe answers 429/500, and while every
task is delivered twice. Each ends with Stripe holding exactly what the ledger says."""

from __future__ import annotations

import pytest

from tests.integration.conftest import MakeCluster, MakeMonth
from tests.integration.month import assert_exact, assert_nothing_doubled

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


def test_a_month_for_50_orgs_ends_with_stripe_equal_to_the_ledger(
    make_cluster: MakeCluster, make_month: MakeMonth
) -> None:
    cluster = make_cluster()
    cluster.start_worker()
    month = make_month(cluster)
    month.open()
    month.simulate(push_every_days=3)
    month.close_ledger()
    counts = month.wait_close(month.start_close())
    assert sum(c["orgs"] for c in counts) == 50
    assert sum(c["failed"] for c in counts) == 0
    assert_exact(month)
    assert_nothing_doubled(month)
