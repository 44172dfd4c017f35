"""`billing sync …` and `billing close`: bad input is one line on stderr and exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from models.db import head_revision, migrate
from worker import celery_app
from worker.cli import main
from worker.commands.common import CliError, user_errors
from worker.composition import stripe_config
from worker.settings import get_settings


@pytest.fixture
def empty_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    migrate(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("empty_ledger")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "seats", "--org", "ghost", "--now"], "unknown org 'ghost'"),
        (["sync", "usage", "--org", "ghost", "--now"], "unknown org 'ghost'"),
        (["sync", "org", "--org", "ghost", "--now"], "unknown org 'ghost'"),
        (["sync", "usage", "--org", "ghost", "--period", "2026-13"], "must be a month"),
        (["close", "--period", "October", "--now"], "must be a month"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("billing: error: ")
    assert err.count("\n") == 1
    assert message in err


@pytest.mark.usefixtures("empty_ledger")
def test_missing_stripe_configuration_is_a_user_error() -> None:
    with pytest.raises(CliError, match="STRIPE_API_KEY is not set"), user_errors():
        stripe_config(get_settings())


@pytest.fixture
def behind_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """BILLING_DATABASE_URL at a database two migrations behind the code."""
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    migrate(url, "0003_push_records")
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "args",
    [
        ["reconciliations", "list"],
        ["sync", "seats", "--org", "acme", "--now"],
        ["preview", "--org", "acme", "--period", "2026-01"],
        ["worker"],
        ["serve"],
    ],
)
def test_a_schema_behind_is_one_line_and_exit_2(
    behind_ledger: str,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []  # the worker and the web server must not start at all
    monkeypatch.setattr(celery_app.app, "worker_main", lambda *_: started.append("worker"))
    monkeypatch.setattr(uvicorn, "run", lambda *_, **__: started.append("serve"))
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"billing: error: the database at {behind_ledger} is at revision 0003_push_records, "
        f"the code needs {head_revision()}: run billing db upgrade\n"
    )
    assert started == []


def test_db_upgrade_brings_a_schema_behind_to_the_head(
    behind_ledger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    assert "latest revision" in capsys.readouterr().out
    assert main(["reconciliations", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "[]"
