"""Fixtures of the integration tests: a dedicated Redis database, a migrated PostgreSQL schema
shared with the workers, the Stripe emulator in this process, and real Celery workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy.engine import Engine

from models.db import make_engine, migrate
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.conftest import REDIS_TEST_URL
from tests.integration.brokers import Broker, Outage, broker_for, outage_for
from tests.integration.cluster import Cluster, worker_env
from tests.integration.month import Month
from worker.settings import Settings

# A Redis database of their own: flushed before each test, so no other test's tasks (or an
# earlier test's retries) reach these workers.
INTEGRATION_REDIS_URL = os.environ.get(
    "BILLING_TEST_INTEGRATION_REDIS_URL", REDIS_TEST_URL.rsplit("/", 1)[0] + "/13"
)


@pytest.fixture
def integration_redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(INTEGRATION_REDIS_URL)
    client.flushdb()
    try:
        yield INTEGRATION_REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def integration_database_url(postgres_url: str) -> Iterator[str]:
    """A new, migrated schema in the session's PostgreSQL database (the workers connect to the
    same URL; the schema is chosen by the connection's search_path)."""
    schema = f"it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(integration_database_url: str) -> Iterator[Engine]:
    eng = make_engine(integration_database_url)
    try:
        yield eng
    finally:
        eng.dispose()


# Stripe's sandbox as it is (issue 15): its documented rate limits (25 requests/s globally and
# per endpoint, the meter endpoints' own, the per-subscription caps) and meter events that count
# only a while after Stripe received them.
AGGREGATION_DELAY_SECONDS = 1.0


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    # The month puts all its orgs on one test clock (Stripe holds three per clock; the limit is
    # tested in tests/stripe_emulator/test_clocks.py).
    config = EmulatorConfig(
        test_clock_max_customers=None,
        limits="sandbox",
        meter_aggregation_delay_seconds=AGGREGATION_DELAY_SECONDS,
    )
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each test using this runs twice: on the Redis broker, and on RabbitMQ (127.0.0.1:5672,
    a queue of the test's own); pass `**broker.settings` to `make_cluster`."""
    with broker_for(request.param) as chosen:
        yield chosen


@pytest.fixture(params=["redis", "rabbitmq"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    """Each test using this runs twice, its workers on a private Redis that `outage.begin()`
    SIGKILLs (as the broker, or beside RabbitMQ, whose connections are cut with it) and
    `outage.end()` restarts; pass `**outage.settings` to `make_cluster`."""
    with outage_for(request.param, tmp_path / "redis-data") as chosen:
        yield chosen


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(
    integration_redis_url: str,
    integration_database_url: str,
    emulator: EmulatorServer,
    tmp_path: Path,
) -> Iterator[MakeCluster]:
    """`make_cluster(**settings)`: the workers' settings (defaults below, overridden by the
    keyword arguments); `cluster.start_worker()` starts one. Every worker is stopped at the
    end, whatever happened."""
    clusters: list[Cluster] = []

    def make(**overrides: Any) -> Cluster:
        values: dict[str, Any] = {
            "database_url": integration_database_url,
            "redis_url": integration_redis_url,
            "stripe_api_base": emulator.url,
            "stripe_budget": "redis",
            # The sandbox's global limit: the workers' shared budget keeps them under it.
            "stripe_requests_per_second": 25,
            # Short: a task of a killed worker comes back within seconds. The hard limit stays
            # below it; both exceed the org lock's wait (10 s) plus a chunk's Stripe calls.
            "broker_visibility_timeout": 40,
            "task_soft_time_limit": 25,
            "task_time_limit": 30,
        }
        values.update(overrides)
        settings = Settings(**values)
        cluster = Cluster(settings, worker_env(settings), tmp_path)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop_all()
            if cluster._client is not None:
                cluster._client.close()


MakeMonth = Callable[..., Month]


@pytest.fixture
def make_month(emulator: EmulatorServer, engine: Engine) -> MakeMonth:
    def make(cluster: Cluster, **options: Any) -> Month:
        return Month(cluster, emulator, engine, **options)

    return make
