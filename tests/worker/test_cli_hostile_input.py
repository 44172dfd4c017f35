"""Odd input to the CLI is one line on stderr and exit 2, never a traceback: a price book that
is not UTF-8, an instant past the ends of `datetime`, a reconciliation id past 64 bits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db import migrate
from worker.cli import main
from worker.settings import get_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.delenv("BILLING_BOOK", raising=False)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    get_settings.cache_clear()
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("billing: error: "), err
    assert err.count("\n") == 1, err
    return err.removeprefix("billing: error: ").rstrip("\n")


@pytest.fixture
def latin1_book(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "café"\ncurrency = "usd"\n'.encode("latin-1"))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["book", "show", "--book", "{book}"],
        ["book", "formulas", "--book", "{book}"],
        ["quote", "--plan", "team", "--book", "{book}"],
    ],
)
def test_a_price_book_that_is_not_utf8_is_named_in_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], latin1_book: Path, args: list[str]
) -> None:
    message = one_line_error(capsys, *(arg.format(book=latin1_book) for arg in args))
    assert message == (
        f"invalid price book {latin1_book}: (file): not UTF-8 text (byte 0xe9 at offset 11)"
    )


@pytest.mark.parametrize("args", [["book", "show"], ["quote", "--plan", "team"]])
def test_billing_book_naming_a_file_that_is_not_utf8_is_named_in_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], latin1_book: Path, args: list[str]
) -> None:
    env.setenv("BILLING_BOOK", str(latin1_book))
    assert str(latin1_book) in one_line_error(capsys, *args)


def test_a_directory_given_as_a_book_is_named_in_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    message = one_line_error(capsys, "book", "show", "--book", str(folder))
    assert message == f"invalid price book {folder}: (file): cannot be read: Is a directory"


@pytest.mark.parametrize("reconciliation_id", [str(2**63), str(2**64), "0"])
def test_a_reconciliation_id_past_64_bits_is_not_found(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], reconciliation_id: str
) -> None:
    message = one_line_error(capsys, "reconciliations", "show", reconciliation_id)
    assert message == f"no reconciliation {reconciliation_id}"


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_an_instant_past_the_ends_of_datetime_is_named_in_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, start: str
) -> None:
    timeline = tmp_path / "empty.jsonl"
    timeline.write_text("")
    message = one_line_error(
        capsys, "simulate", str(timeline), "--start", start, "--end", "2026-01-01T00:00:00Z"
    )
    assert message == f"--start: {start!r} is outside the years 1 to 9999 in UTC"


def test_ingest_names_each_line_with_such_an_instant(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"type": "org", "org": "acme", "plan": "free", "at": "9999-12-31T23:30:00-01:00"}\n'
    )
    get_settings.cache_clear()
    assert main(["ingest", str(events)]) == 1
    err = capsys.readouterr().err
    assert f"{events}: line 1: at: '9999-12-31T23:30:00-01:00' is outside the years 1" in err


def test_serve_refuses_a_billing_book_that_is_not_utf8_before_serving(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], latin1_book: Path
) -> None:
    env.setenv("BILLING_BOOK", str(latin1_book))
    env.setattr("uvicorn.run", lambda *_args, **_kwargs: pytest.fail("served with a bad book"))
    assert str(latin1_book) in one_line_error(capsys, "serve", "--port", "1")
