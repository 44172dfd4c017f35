"""`billing quota check` and `billing quota events` as a user runs them: output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.engine import Engine

from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import add_org, drop_prefix, new_prefix
from worker.cli import main
from worker.settings import get_settings

pytestmark = pytest.mark.redis


@pytest.fixture
def cli_env(engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    prefix = new_prefix()
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLING_REDIS_URL", REDIS_TEST_URL)
    monkeypatch.setenv("BILLING_QUOTA_KEY_PREFIX", prefix)
    get_settings.cache_clear()
    yield engine
    get_settings.cache_clear()
    drop_prefix(redis.Redis.from_url(REDIS_TEST_URL), prefix)


def test_check_exits_0_when_allowed_and_1_when_denied(
    cli_env: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    add_org(cli_env, "org_a", "free")
    args = ["quota", "check", "--org", "org_a", "--quota", "tasks_per_second"]
    assert main([*args, "--amount", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "org": "org_a",
        "quota": "tasks_per_second",
        "amount": 100,
        "allowed": True,
        "limit": 100,
        "used": 100,
        "remaining": 0,
        "mode": "hard",
        "recorded_event": False,
    }
    assert main(args) == 1
    assert capsys.readouterr().out == "denied: org_a tasks_per_second used 100 of 100 (hard)\n"
    assert main(["quota", "events", "--org", "org_a", "--json"]) == 0
    [event] = json.loads(capsys.readouterr().out)
    assert {k: event[k] for k in ("org", "quota", "decision", "limit", "used", "mode")} == {
        "org": "org_a",
        "quota": "tasks_per_second",
        "decision": "denied",
        "limit": 100,
        "used": 100,
        "mode": "hard",
    }
    assert main(["quota", "events"]) == 0
    assert "tasks_per_second" in capsys.readouterr().out


def test_no_consume_does_not_count(cli_env: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    add_org(cli_env, "org_a", "free")
    args = ["quota", "check", "--org", "org_a", "--quota", "tasks_per_month", "--json"]
    for _ in range(2):
        assert main([*args, "--no-consume"]) == 0
        assert json.loads(capsys.readouterr().out)["used"] == 0
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["remaining"] == 99_999


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "org_x", "--quota", "environments"], "--org: unknown org 'org_x'"),
        (["--org", "org_a", "--quota", "seats"], "--quota: unknown quota 'seats' (quotas: "),
        (["--org", "org_a", "--quota", "environments", "--amount", "0"], "--amount"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli_env: Engine, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    add_org(cli_env, "org_a", "free")
    assert main(["quota", "check", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("billing: error: ")
    assert message in err
    assert err.count("\n") == 1
