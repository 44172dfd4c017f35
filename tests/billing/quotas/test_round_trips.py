"""Every quota check is one Redis round trip (SPEC §8): the counters, the limit and the gate of
a denial or a crossing all go in one script call. Counted on the wire: a connection class that
records each command the client sends to the tests' own redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.meters import Quota
from billing.pricing.book_cache import BookCache
from billing.quotas.service import QuotaDecision, QuotaService
from models.quota_records import QuotaEvent
from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import add_org, books_with_soft, drop_prefix, new_prefix

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


class _Wire:
    """The commands sent through one client, by name."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def client(self) -> redis.Redis:
        wire = self

        class CountingConnection(redis.Connection):
            def send_command(self, *args: Any, **kwargs: Any) -> None:
                wire.sent.append(str(args[0]).upper())
                super().send_command(*args, **kwargs)

        pool = redis.ConnectionPool.from_url(REDIS_TEST_URL, connection_class=CountingConnection)
        return redis.Redis(connection_pool=pool)

    def during(self, action: Any) -> list[str]:
        before = len(self.sent)
        action()
        return self.sent[before:]


@pytest.fixture
def wire() -> _Wire:
    return _Wire()


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = new_prefix()
    yield prefix
    drop_prefix(redis.Redis.from_url(REDIS_TEST_URL), prefix)


def _service(wire: _Wire, engine: Engine, prefix: str, books: BookCache) -> QuotaService:
    return QuotaService(wire.client(), engine, books, key_prefix=prefix)


@pytest.mark.parametrize("quota", [Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH])
def test_an_allowed_check_is_one_round_trip(
    engine: Engine, prefix: str, wire: _Wire, quota: Quota
) -> None:
    add_org(engine, "org_a", "payg")
    service = _service(wire, engine, prefix, BookCache())
    first = wire.during(lambda: service.check("org_a", quota, NOW))  # connects, loads terms
    sent = [wire.during(lambda: service.check("org_a", quota, NOW)) for _ in range(5)]
    assert sent == [["EVALSHA"]] * 5
    assert first[-1] == "EVALSHA"
    assert service.check("org_a", quota, NOW).used == 7


def test_the_first_check_of_a_month_seeds_its_counter_in_one_more_round_trip(
    engine: Engine, prefix: str, wire: _Wire
) -> None:
    add_org(engine, "org_a", "payg")
    service = _service(wire, engine, prefix, BookCache())
    service.check("org_a", Quota.TASKS_PER_SECOND, NOW)  # connects and loads the terms
    seeded = wire.during(lambda: service.check("org_a", Quota.TASKS_PER_MONTH, NOW))
    counted = wire.during(lambda: service.check("org_a", Quota.TASKS_PER_MONTH, NOW))
    assert (seeded, counted) == (["EVALSHA", "EVALSHA"], ["EVALSHA"])


@pytest.mark.parametrize("quota", [Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH])
def test_a_recorded_crossing_of_a_soft_limit_is_one_round_trip(
    engine: Engine, prefix: str, wire: _Wire, tmp_path: Path, quota: Quota
) -> None:
    add_org(engine, "org_s", "free", book="soft")  # soft limits of 2
    service = _service(wire, engine, prefix, books_with_soft(tmp_path))
    decisions: list[QuotaDecision] = []
    sent = [
        wire.during(lambda: decisions.append(service.check("org_s", quota, NOW))) for _ in range(3)
    ]
    assert [(d.allowed, d.recorded_event) for d in decisions] == [
        (True, False),
        (True, False),
        (True, True),
    ]
    assert sent[2] == ["EVALSHA"]
    with Session(engine) as session:
        event = session.exec(select(QuotaEvent).where(QuotaEvent.org_id == "org_s")).one()
    assert (event.quota, event.decision, event.used) == (quota.value, "exceeded", 3)


def test_a_recorded_denial_is_one_round_trip(engine: Engine, prefix: str, wire: _Wire) -> None:
    add_org(engine, "org_f", "free")  # 100,000 tasks a month, hard
    service = _service(wire, engine, prefix, BookCache())
    service.check("org_f", Quota.TASKS_PER_MONTH, NOW, amount=100_000)  # the month's limit
    decisions: list[QuotaDecision] = []
    sent = [
        wire.during(lambda: decisions.append(service.check("org_f", Quota.TASKS_PER_MONTH, NOW)))
        for _ in range(2)
    ]
    # The second denial's record depends on the one-second gate: only its round trips count.
    assert [d.allowed for d in decisions] == [False, False]
    assert decisions[0].recorded_event
    assert sent == [["EVALSHA"], ["EVALSHA"]]
    with Session(engine) as session:
        event = session.exec(select(QuotaEvent).where(QuotaEvent.org_id == "org_f")).one()
    assert (event.quota, event.decision, event.used) == ("tasks_per_month", "denied", 100_000)
