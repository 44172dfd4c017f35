"""Shared fixtures: databases (SQLite and a throwaway PostgreSQL database) and a Redis URL."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import Engine

from models.db import make_engine, migrate

POSTGRES_ADMIN_URL = os.environ.get(
    "BILLING_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _private_redis() -> str:
    """A redis-server of this test session's own, on a free port: tests flush its databases and
    integration tests run workers on it, so no shared Redis (and no one's data) is touched.
    `BILLING_TEST_REDIS_URL` points the tests at another server instead."""
    explicit = os.environ.get("BILLING_TEST_REDIS_URL")
    if explicit:
        return explicit
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the tests need redis-server on PATH (Debian: apt-get install redis)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    atexit.register(server.terminate)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/15"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the tests' redis-server did not start on port {port}")


REDIS_TEST_URL = _private_redis()
# Code under test that reads its settings (locks, budgets, the broker) uses the same server.
os.environ["BILLING_REDIS_URL"] = REDIS_TEST_URL.rsplit("/", 1)[0] + "/0"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs twice: on a new SQLite file and on a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'billing.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{server_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on the parametrized database."""
    migrate(database_url)
    eng = make_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()
