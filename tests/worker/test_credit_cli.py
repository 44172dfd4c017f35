"""`billing credit grant` and `billing credit list` as support runs them: output, exit codes,
and refusals that store nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from models.db import migrate
from worker import clock
from worker.cli import main
from worker.settings import get_settings

NOW = datetime(2027, 5, 20, 12, tzinfo=UTC)
ORG = (
    '{"type": "org", "org": "zen", "book": "zenaton", "plan": "payg", "at": "2027-05-01T00:00:00Z"}'
)


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    migrate(database_url)
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    get_settings.cache_clear()
    source = tmp_path / "org.jsonl"
    source.write_text(ORG)
    with clock.installed(lambda: NOW):
        assert main(["ingest", str(source), "--json"]) == 0
        yield database_url
    get_settings.cache_clear()


def listed(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["credit", "list", "--org", "zen", "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_grant_then_list(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(
        [
            "credit",
            "grant",
            "--org",
            "zen",
            "--amount",
            "2000",
            "--reason",
            "sorry for the outage",
            "--expires",
            "2027-08-01T00:00:00Z",
            "--id",
            "outage-1",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out == (
        "granted outage-1: $20.00 to zen, expires 2027-08-01T00:00:00Z\n"
    )
    assert main(["credit", "grant", "--org", "zen", "--amount", "500", "--reason", "r"]) == 0
    ledger = listed(capsys)
    assert (ledger["granted"], ledger["remaining"], ledger["lapsed"]) == (2500, 2500, 0)
    assert ledger["grants"] == [
        {
            "id": "outage-1",
            "amount": 2000,
            "at": "2027-05-20T12:00:00Z",
            "expires_at": "2027-08-01T00:00:00Z",
            "reason": "sorry for the outage",
            "applied": 0,
            "remaining": 2000,
            "lapsed": 0,
            "status": "active",
        },
        {
            "id": "support:zen:1810814400",
            "amount": 500,
            "at": "2027-05-20T12:00:00Z",
            "expires_at": None,
            "reason": "r",
            "applied": 0,
            "remaining": 500,
            "lapsed": 0,
            "status": "active",
        },
    ]
    assert main(["credit", "list", "--org", "zen"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("credits of zen")
    assert "zen: granted $25.00, remaining $25.00, lapsed $0.00" in table
    # Once past its expiry, what is left of the credit shows as lapsed.
    with clock.installed(lambda: datetime(2027, 8, 2, tzinfo=UTC)):
        ledger = listed(capsys)
    assert (ledger["remaining"], ledger["lapsed"]) == (500, 2000)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--org", "zen", "--amount", "0"], "--amount: must be a whole number of cents above 0"),
        (["--org", "zen", "--amount", "-300"], "--amount: must not be negative, got -300"),
        (["--org", "nobody", "--amount", "300"], "--org: unknown org 'nobody'"),
        (
            ["--org", "zen", "--amount", "300", "--expires", "2027-05-01T00:00:00Z"],
            "--expires: 2027-05-01T00:00:00Z is not after now (2027-05-20T12:00:00Z)",
        ),
        (
            ["--org", "zen", "--amount", "300", "--expires", "soon"],
            "--expires: 'soon' is not an ISO 8601 timestamp",
        ),
        (
            ["--org", "zen", "--amount", "300", "--id", "outage-1"],
            "--id: credit 'outage-1' was already granted to 'zen' on 2027-05-20T12:00:00Z ($20.00)",
        ),
    ],
)
def test_refusals_exit_1_and_store_nothing(
    cli_db: str, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    assert (
        main(
            [
                "credit",
                "grant",
                "--org",
                "zen",
                "--amount",
                "2000",
                "--reason",
                "x",
                "--id",
                "outage-1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["credit", "grant", *args, "--reason", "goodwill"]) == 1
    message = capsys.readouterr().err
    assert message.startswith(f"billing: error: {error}")
    assert message.rstrip().endswith("nothing stored")
    assert [grant["id"] for grant in listed(capsys)["grants"]] == ["outage-1"]


def test_list_of_an_unknown_org_exits_1(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["credit", "list", "--org", "nobody"]) == 1
    assert "--org: unknown org 'nobody'" in capsys.readouterr().err
