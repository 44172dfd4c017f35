"""`billing ingest` and `billing preview` as a user runs them: output, exit codes, errors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db import migrate
from worker.cli import main
from worker.settings import get_settings

_USAGE = {
    "type": "usage",
    "id": "e1",
    "org": "acme",
    "meter": "copilot_messages",
    "quantity": 700,
    "at": "2026-02-04T12:00:00Z",
}
EVENTS = "\n".join(
    [
        '{"type": "org", "org": "acme", "plan": "team", "seats": 10, "at": "2026-01-15T09:00:00Z"}',
        json.dumps(_USAGE),
        json.dumps(_USAGE),
    ]
)


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    migrate(database_url)
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_ingest_then_preview_json(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(EVENTS)
    assert main(["ingest", str(source), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stored"] == {"org": 1, "seats": 0, "usage": 1, "resources": 0}
    assert summary["duplicates"]["usage"] == 1
    assert main(["preview", "--org", "acme", "--period", "2026-01", "--json"]) == 0
    invoice = json.loads(capsys.readouterr().out)
    assert (
        invoice["period_start"] == "2026-01-15T09:00:00Z"
        or invoice["period_start"] == "2026-01-01T00:00:00Z"
    )
    assert invoice["lines"][0] == {
        "code": "seats",
        "quantity": 10,
        "amount": 9000,
        "included": 0,
        "billable": 10,
        "unit_amount_decimal": "900",
        "period_start": "2026-01-15T09:00:00Z",
        "period_end": "2027-01-15T09:00:00Z",
        "description": "10 seat(s) × 900 per year",
    }
    assert invoice["total"] == 9000
    assert main(["preview", "--org", "acme", "--period", "2026-02"]) == 0
    table = capsys.readouterr().out
    assert "copilot_messages" in table
    assert "$4.00" in table


def test_ingest_from_stdin_with_a_bad_line_stores_nothing(
    cli_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = (
        EVENTS
        + '\n{"type": "seats", "org": "acme", "count": "ten", "at": "2026-02-01T00:00:00Z"}\n'
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(bad))
    assert main(["ingest", "-"]) == 1
    err = capsys.readouterr().err
    assert "-: line 4: count: must be a whole number, got 'ten'" in err
    assert "nothing stored" in err
    assert main(["preview", "--org", "acme", "--period", "2026-01"]) == 2
    assert capsys.readouterr().err.strip() == "billing: error: unknown org 'acme'"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["preview", "--org", "acme", "--period", "2026-1"], "--period: period '2026-1' must be"),
        (["ingest", "/nonexistent/events.jsonl"], "/nonexistent/events.jsonl: no such file"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    cli_db: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
