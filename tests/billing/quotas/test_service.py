"""Quotas on the real Redis and on SQLite and PostgreSQL: limits from the book and contracts,
monthly counts that reset at the month and survive a Redis flush, environments, soft quotas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.meters import Quota, QuotaMode
from billing.core.periods import month_period
from billing.quotas.service import QuotaRequestError, QuotaService
from models.quota_records import QuotaEvent, QuotaUsage
from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import add_org, books_with_soft, drop_prefix, make_service, new_prefix

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_TEST_URL)


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    prefix = new_prefix()
    yield prefix
    drop_prefix(client, prefix)


@pytest.fixture
def service(engine: Engine, prefix: str) -> QuotaService:
    return make_service(engine, prefix)


def _events(engine: Engine, org_id: str) -> list[QuotaEvent]:
    with Session(engine) as session:
        return list(session.exec(select(QuotaEvent).where(QuotaEvent.org_id == org_id)).all())


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("plan", "quota", "limit"),
    [
        ("free", Quota.TASKS_PER_MONTH, 100_000),
        ("free", Quota.TASKS_PER_SECOND, 100),
        ("free", Quota.ENVIRONMENTS, 3),
        ("payg", Quota.TASKS_PER_MONTH, 10_000_000),
        ("payg", Quota.TASKS_PER_SECOND, 1_000),
        ("payg", Quota.ENVIRONMENTS, 30),
        ("enterprise", Quota.TASKS_PER_MONTH, None),
        ("enterprise", Quota.TASKS_PER_SECOND, 1_000),
        ("enterprise", Quota.ENVIRONMENTS, None),
    ],
)
def test_limits_come_from_the_plan(
    engine: Engine, service: QuotaService, plan: str, quota: Quota, limit: int | None
) -> None:
    add_org(engine, "org_a", plan)
    decision = service.check("org_a", quota, NOW, consume=False)
    assert (decision.allowed, decision.limit, decision.mode) == (True, limit, QuotaMode.HARD)
    assert decision.remaining == (None if limit is None else limit)


def test_contract_overrides_apply(engine: Engine, service: QuotaService) -> None:
    add_org(engine, "org_zen_enterprise_example", "enterprise")
    add_org(engine, "org_plain_enterprise", "enterprise")
    contract = "org_zen_enterprise_example"
    assert service.check(contract, Quota.TASKS_PER_SECOND, NOW, consume=False).limit == 5_000
    assert service.check("org_plain_enterprise", "tasks_per_second", NOW, consume=False).limit == (
        1_000
    )
    # 5,000 per second really is the limit: 4,999 + 1 pass, the next unit is denied.
    assert service.check(contract, Quota.TASKS_PER_SECOND, NOW, amount=4_999).allowed
    last = service.check(contract, Quota.TASKS_PER_SECOND, NOW)
    assert (last.allowed, last.used, last.remaining) == (True, 5_000, 0)
    assert not service.check(contract, Quota.TASKS_PER_SECOND, NOW).allowed
    # Plan values the contract keeps: unlimited tasks per month, counted all the same.
    month = service.check(contract, Quota.TASKS_PER_MONTH, NOW, amount=250_000_000)
    assert (month.allowed, month.limit, month.remaining, month.used) == (
        True,
        None,
        None,
        250_000_000,
    )


def test_unknown_org_or_quota_is_a_clear_error(engine: Engine, service: QuotaService) -> None:
    add_org(engine, "org_a", "free")
    add_org(engine, "org_devtools", "team", book="devtools", interval="year")
    with pytest.raises(QuotaRequestError, match="unknown org 'org_missing'") as missing:
        service.check("org_missing", Quota.TASKS_PER_SECOND, NOW)
    assert missing.value.field == "org"
    with pytest.raises(QuotaRequestError, match="unknown quota 'tasks_per_hour'") as unknown:
        service.check("org_a", "tasks_per_hour", NOW)
    assert unknown.value.field == "quota"
    with pytest.raises(QuotaRequestError, match=r"org 'org_devtools' \(book 'devtools'"):
        service.check("org_devtools", Quota.TASKS_PER_MONTH, NOW)
    with pytest.raises(QuotaRequestError, match="amount must be a positive integer, got 0"):
        service.check("org_a", Quota.TASKS_PER_MONTH, NOW, amount=0)


# --------------------------------------------------------------------------- per second


def test_per_second_window_denies_then_slides(engine: Engine, service: QuotaService) -> None:
    add_org(engine, "org_a", "free")
    assert service.check("org_a", Quota.TASKS_PER_SECOND, NOW, amount=100).allowed
    denied = service.check("org_a", Quota.TASKS_PER_SECOND, NOW)
    assert (denied.allowed, denied.used, denied.remaining) == (False, 100, 0)
    # A peek neither counts nor records.
    assert not service.check("org_a", Quota.TASKS_PER_SECOND, NOW, consume=False).allowed
    time.sleep(1.05)
    after = service.check("org_a", Quota.TASKS_PER_SECOND, NOW)
    assert (after.allowed, after.used) == (True, 1)
    [event] = _events(engine, "org_a")
    assert (event.quota, event.decision, event.limit, event.used, event.occurrence_count) == (
        "tasks_per_second",
        "denied",
        100,
        100,
        1,
    )


# --------------------------------------------------------------------------- per month


def test_monthly_count_denies_at_the_limit_and_resets_at_the_month(
    engine: Engine, service: QuotaService
) -> None:
    add_org(engine, "org_a", "free")
    end_of_march = datetime(2026, 3, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert service.check("org_a", Quota.TASKS_PER_MONTH, NOW, amount=99_999).allowed
    full = service.check("org_a", Quota.TASKS_PER_MONTH, end_of_march)
    assert (full.allowed, full.used, full.remaining) == (True, 100_000, 0)
    denied = service.check("org_a", Quota.TASKS_PER_MONTH, end_of_march)
    assert (denied.allowed, denied.used, denied.recorded_event) == (False, 100_000, True)
    april = service.check("org_a", Quota.TASKS_PER_MONTH, datetime(2026, 4, 1, tzinfo=UTC))
    assert (april.allowed, april.used, april.remaining) == (True, 1, 99_999)
    # March stays full: `now` picks the month, not the clock.
    assert not service.check("org_a", Quota.TASKS_PER_MONTH, end_of_march).allowed
    [event] = _events(engine, "org_a")
    assert (event.decision, event.period_start, event.first_at) == (
        "denied",
        month_period("2026-03").period_start,
        end_of_march,
    )


@pytest.mark.parametrize(("checkpoint_units", "resumed_from"), [(1, 25), (10, 20)])
def test_redis_flush_does_not_reset_the_monthly_count(
    engine: Engine,
    client: redis.Redis,
    prefix: str,
    checkpoint_units: int,
    resumed_from: int,
) -> None:
    add_org(engine, "org_a", "free")
    service = make_service(engine, prefix, checkpoint_units=checkpoint_units)
    for _ in range(25):
        service.check("org_a", Quota.TASKS_PER_MONTH, NOW)
    assert drop_prefix(client, prefix) >= 1
    # Re-seeded from quota_usage: write-through loses nothing; a checkpoint every 10 units
    # forgets fewer than 10 (the guarantee documented in billing/quotas/service.py).
    after = service.check("org_a", Quota.TASKS_PER_MONTH, NOW)
    assert after.used == resumed_from + 1
    # A second service (another process) counts on from the same seed, not from zero.
    other = make_service(engine, prefix, checkpoint_units=checkpoint_units)
    assert other.check("org_a", Quota.TASKS_PER_MONTH, NOW).used == resumed_from + 2


def test_checkpoint_all_stores_every_counter_of_the_month(
    engine: Engine, client: redis.Redis, prefix: str
) -> None:
    add_org(engine, "org_a", "free")
    add_org(engine, "org:b", "payg")
    service = make_service(engine, prefix, checkpoint_units=1_000)
    service.check("org_a", Quota.TASKS_PER_MONTH, NOW, amount=7)
    service.check("org:b", Quota.TASKS_PER_MONTH, NOW, amount=3)
    service.check("org_a", Quota.TASKS_PER_MONTH, datetime(2026, 4, 2, tzinfo=UTC))
    assert service.checkpoint_all(NOW) == 2
    drop_prefix(client, prefix)
    assert service.check("org_a", Quota.TASKS_PER_MONTH, NOW, consume=False).used == 7
    assert service.check("org:b", Quota.TASKS_PER_MONTH, NOW, consume=False).used == 3
    # April was not checkpointed (not its month), so it resumes from zero.
    april = datetime(2026, 4, 2, tzinfo=UTC)
    assert service.check("org_a", Quota.TASKS_PER_MONTH, april, consume=False).used == 0


def test_limit_still_holds_after_a_flush(
    engine: Engine, client: redis.Redis, service: QuotaService, prefix: str
) -> None:
    add_org(engine, "org_a", "free")
    assert service.check("org_a", Quota.TASKS_PER_MONTH, NOW, amount=100_000).allowed
    drop_prefix(client, prefix)
    denied = service.check("org_a", Quota.TASKS_PER_MONTH, NOW)
    assert (denied.allowed, denied.used) == (False, 100_000)
    with Session(engine) as session:
        stored = session.exec(select(QuotaUsage)).one()
    assert (stored.org_id, stored.quota, stored.used) == ("org_a", "tasks_per_month", 100_000)


# --------------------------------------------------------------------------- environments


def test_environments_limit_holds(engine: Engine, service: QuotaService) -> None:
    add_org(engine, "org_a", "free")
    created = [service.environment_created("org_a", f"env_{i}", NOW) for i in range(3)]
    assert [(d.allowed, d.used) for d in created] == [(True, 1), (True, 2), (True, 3)]
    # Creating an environment that is already live again counts it once.
    assert service.environment_created("org_a", "env_0", NOW).used == 3
    peek = service.check("org_a", Quota.ENVIRONMENTS, NOW)
    assert (peek.allowed, peek.used, peek.remaining) == (False, 3, 0)
    denied = service.environment_created("org_a", "env_3", NOW)
    assert (denied.allowed, denied.used, denied.recorded_event) == (False, 3, True)
    assert service.environment_deleted("org_a", "env_1", NOW + timedelta(minutes=1))
    assert not service.environment_deleted("org_a", "env_1", NOW + timedelta(minutes=1))
    again = service.environment_created("org_a", "env_3", NOW + timedelta(minutes=2))
    assert (again.allowed, again.used) == (True, 3)
    # A deleted id may be created again once there is room.
    assert not service.environment_created("org_a", "env_1", NOW + timedelta(minutes=3)).allowed
    assert service.live_environments("org_a") == 3
    [event] = _events(engine, "org_a")
    assert (event.quota, event.decision, event.limit) == ("environments", "denied", 3)


# --------------------------------------------------------------------------- soft quotas


def test_soft_quotas_allow_and_record(engine: Engine, prefix: str, tmp_path: Path) -> None:
    add_org(engine, "org_soft", "free", book="soft")
    service = make_service(engine, prefix, books_with_soft(tmp_path))
    month = [service.check("org_soft", Quota.TASKS_PER_MONTH, NOW) for _ in range(4)]
    assert [(d.allowed, d.used, d.remaining) for d in month] == [
        (True, 1, 1),
        (True, 2, 0),
        (True, 3, 0),
        (True, 4, 0),
    ]
    # The first crossing is recorded; the next one within the same second folds into it.
    assert [d.recorded_event for d in month] == [False, False, True, False]
    second = [service.check("org_soft", Quota.TASKS_PER_SECOND, NOW) for _ in range(3)]
    assert all(d.allowed and d.mode is QuotaMode.SOFT for d in second)
    assert [service.environment_created("org_soft", f"e{i}", NOW).allowed for i in range(2)] == [
        True,
        True,
    ]
    events = {(e.quota, e.decision): e for e in _events(engine, "org_soft")}
    assert set(events) == {
        ("tasks_per_month", "exceeded"),
        ("tasks_per_second", "exceeded"),
        ("environments", "exceeded"),
    }
    monthly = events["tasks_per_month", "exceeded"]
    assert (monthly.mode, monthly.limit, monthly.used, monthly.occurrence_count) == (
        "soft",
        2,
        3,
        1,
    )
    # A later second updates the same row instead of adding one.
    time.sleep(1.05)
    later = NOW + timedelta(hours=1)
    assert service.check("org_soft", Quota.TASKS_PER_MONTH, later).recorded_event
    [monthly] = [e for e in _events(engine, "org_soft") if e.quota == "tasks_per_month"]
    assert (monthly.used, monthly.occurrence_count, monthly.first_at, monthly.last_at) == (
        5,
        2,
        NOW,
        later,
    )
    assert service.events("org_soft")[0].quota == "tasks_per_month"
