"""`billing org change|cancel` and `billing preview --invoice-periods` as an admin runs them:
the plan ledger after each command, what is scheduled, and refusals that change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.db import migrate
from worker import clock
from worker.cli import main
from worker.settings import get_settings

NOW = datetime(2027, 6, 15, 10, tzinfo=UTC)
TEAM = '{"type": "org", "org": "acme", "plan": "team", "seats": 10, "at": "2027-01-01T00:00:00Z"}'


@pytest.fixture
def acme(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    migrate(database_url)
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    get_settings.cache_clear()
    source = tmp_path / "org.jsonl"
    source.write_text(TEAM)
    with clock.installed(lambda: NOW):
        assert main(["ingest", str(source), "--json"]) == 0
        yield
    get_settings.cache_clear()


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_a_downgrade_is_scheduled_for_the_term_end_and_a_repeat_withdraws_nothing(
    acme: None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["org", "change", "--org", "acme", "--plan", "free", "--seats", "3", "--json"]) == 0
    result = _json(capsys)
    assert result["scheduled"] == "Team until 2028-01-01, then Free"
    assert result["plans"] == [
        {
            "at": "2027-01-01T00:00:00Z",
            "book": "devtools",
            "plan": "team",
            "interval": "year",
            "requested_at": "",
        },
        {
            "at": "2028-01-01T00:00:00Z",
            "book": "devtools",
            "plan": "free",
            "interval": "month",
            "requested_at": "2027-06-15T10:00:00Z",
        },
    ]
    # Naming the current plan again withdraws the scheduled downgrade.
    assert main(["org", "change", "--org", "acme", "--plan", "team", "--json"]) == 0
    result = _json(capsys)
    assert result["scheduled"] is None
    assert [row["plan"] for row in result["plans"]] == ["team"]  # type: ignore[index]


def test_cancel_at_term_end_then_the_invoice_periods(
    acme: None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["org", "cancel", "--org", "acme", "--json"]) == 0
    assert _json(capsys)["scheduled"] == "Team until 2028-01-01, then canceled"
    with clock.installed(lambda: NOW):
        assert main(["preview", "--org", "acme", "--invoice-periods", "--json"]) == 0
    result = _json(capsys)
    invoices = result["invoices"]
    assert isinstance(invoices, list)
    # January's invoice bills the year's seats; the periods run monthly from the subscription.
    assert (invoices[0]["period_start"], invoices[0]["total"]) == ("2027-01-01T00:00:00Z", 9000)
    assert [i["period_start"][:10] for i in invoices][-1] == "2027-07-01"
    assert result["scheduled"] == "Team until 2028-01-01, then canceled"


def test_refusals_name_the_field_and_store_nothing(
    acme: None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["org", "change", "--org", "acme", "--plan", "gold"]) == 1
    assert "plan: unknown plan 'gold'" in capsys.readouterr().err
    assert main(["org", "cancel", "--org", "nobody"]) == 1
    assert "org: unknown org 'nobody'" in capsys.readouterr().err
    assert main(["org", "cancel", "--org", "acme", "--now", "--json"]) == 0
    capsys.readouterr()
    assert main(["org", "cancel", "--org", "acme", "--now", "--at", "2027-06-16T00:00:00Z"]) == 1
    assert "has no subscription to cancel" in capsys.readouterr().err
