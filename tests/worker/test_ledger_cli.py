"""`billing ingest` and `billing preview` as a user runs them: output, exit codes, errors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing.ledger.usage_ids import StoredUsageLookup
from models.db import migrate
from worker import clock
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
    assert summary["stored"] == {
        "org": 1,
        "seats": 0,
        "usage": 1,
        "resources": 0,
        "cancel": 0,
        "credit": 0,
    }
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


def test_ingest_refuses_a_conflicting_id_and_impossible_dates_with_exit_1(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(EVENTS)
    assert main(["ingest", str(source)]) == 0
    capsys.readouterr()
    refused = tmp_path / "refused.jsonl"
    refused.write_text(
        "\n".join(
            json.dumps({**_USAGE, **changes})
            for changes in (
                {"id": "e2", "quantity": 5},
                {"quantity": 701},
                {"id": "e3", "at": "1970-01-01T00:00:00Z"},
                {"id": "e4", "at": "2099-01-01T00:00:00Z"},
            )
        )
    )
    with clock.installed(lambda: datetime(2026, 3, 1, 12, tzinfo=UTC)):
        assert main(["ingest", str(refused)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{refused}: line 2: id: 'e1' was already stored with quantity 700",
        f"{refused}: line 3: at: 1970-01-01T00:00:00Z is before the org's first subscription "
        "(2026-01-15T09:00:00Z)",
        f"{refused}: line 4: at: 2099-01-01T00:00:00Z is more than 5 minutes in the future "
        "(now 2026-03-01T12:00:00Z)",
        "billing: 3 invalid line(s); nothing stored",
    ]
    # The conflicting line alone is refused just the same, and the ledger keeps 700 messages.
    refused.write_text(json.dumps({**_USAGE, "quantity": 701}))
    assert main(["ingest", str(refused), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"] == [
        {"line": 1, "field": "id", "problem": "'e1' was already stored with quantity 700"}
    ]
    assert main(["preview", "--org", "acme", "--period", "2026-02", "--json"]) == 0
    lines = json.loads(capsys.readouterr().out)["lines"]
    assert {line["code"]: line["quantity"] for line in lines}["copilot_messages"] == 700


def test_ingest_racing_another_ingest_stores_nothing_and_exits_2(
    cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(EVENTS)
    assert main(["ingest", str(source)]) == 0
    # Another ingest stores e1 between this one's look-up (which found nothing) and its insert.
    # (The org line sends the file down the general path: on PostgreSQL a file of usage events
    # alone takes usage_stream.py's path, where the insert itself meets stored copies.)
    monkeypatch.setattr(StoredUsageLookup, "feed", lambda _self, _records: None)
    usages = [json.dumps({**_USAGE, "id": i}) for i in ("e2", "e1")]
    source.write_text("\n".join([EVENTS.splitlines()[0], *usages]))
    assert main(["ingest", str(source)]) == 2
    assert "send it again" in capsys.readouterr().err
    monkeypatch.undo()
    source.write_text(json.dumps({**_USAGE, "id": "e2"}))
    assert main(["ingest", str(source), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"]["usage"] == 1  # e2 was not stored
