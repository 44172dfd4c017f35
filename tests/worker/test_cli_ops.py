"""`billing sync …` and `billing close`: bad input is one line on stderr and exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.cli import main
from worker.commands.common import CliError, user_errors
from worker.composition import stripe_config
from worker.settings import get_settings


@pytest.fixture
def empty_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BILLING_DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
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
