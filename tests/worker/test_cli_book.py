"""`billing --version` and `billing book show`: what is installed, and what a price book offers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from worker.cli import main
from worker.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("BILLING_BOOK", raising=False)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def show(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["book", "show", "--json", *args]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def by_key(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"billing {version('billing-worker')}\n"


def test_version_answers_even_when_the_settings_are_bad(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_x")  # refused outside production
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("billing ")


def test_devtools_book_lists_plans_intervals_meters_units_and_prices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = show(capsys)  # BILLING_BOOK's default
    assert book["book"] == "devtools"
    assert book["currency"] == "usd"
    assert book["default_plan"] == "free"
    assert [m["unit"] for m in book["meters"]] == ["message", "minute", "resource-hour"]
    plans = by_key(book["plans"], "plan")
    assert list(plans) == ["free", "team", "enterprise"]
    assert plans["free"]["seats"] == [
        {"interval": "month", "seat_unit_amount": 0},
        {"interval": "year", "seat_unit_amount": 0},
    ]
    team = plans["team"]
    assert team["display_name"] == "Team"
    assert team["seats"] == [{"interval": "year", "seat_unit_amount": 900}]
    messages = by_key(team["meters"], "meter")["copilot_messages"]
    assert messages["included"] == 500
    assert messages["tiers"] == [
        {"up_to": 500, "unit_amount_decimal": "0", "flat_amount": 0},
        {"up_to": None, "unit_amount_decimal": "2", "flat_amount": 0},
    ]
    minutes = by_key(plans["free"]["meters"], "meter")["runner_minutes"]
    assert minutes["tiers"][1]["unit_amount_decimal"] == "0.8"
    contract = by_key(book["contracts"], "org")["org_enterprise_example"]
    assert contract["plan"] == "enterprise"
    assert contract["seats"] == [{"interval": "year", "seat_unit_amount": 750}]
    assert contract["minimum_amount"] == 50_000
    runner = by_key(contract["meters"], "meter")["runner_minutes"]
    assert [t["up_to"] for t in runner["tiers"]] == [10_000, 100_000, None]


def test_zenaton_book_prices_execution_time_per_hour(capsys: pytest.CaptureFixture[str]) -> None:
    book = show(capsys, "--book", "zenaton")
    payg = by_key(book["plans"], "plan")["payg"]
    assert payg["seats"] == []  # no seats: usage only
    assert payg["minimum_amount"] == 1_000
    execution = by_key(payg["meters"], "meter")["execution_time"]
    assert execution["per"] == 3_600
    assert execution["tiers"] == [{"up_to": None, "unit_amount_decimal": "13", "flat_amount": 0}]
    assert by_key(payg["quotas"], "quota")["tasks_per_month"] == {
        "quota": "tasks_per_month",
        "limit": 10_000_000,
        "mode": "hard",
    }
    assert by_key(book["meters"], "code")["execution_time"]["unit"] == "second"


def test_table_shows_prices_as_a_person_reads_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps to the terminal width
    assert main(["book", "show"]) == 0
    table = capsys.readouterr().out
    assert "Team (team)" in table
    assert "$9.00 / year" in table
    assert "Copilot messages (message)" in table
    assert "2¢ / message" in table
    assert "0.6¢ / minute to 100,000; 0.4¢ / minute above 100,000" in table
    assert "$500.00" in table  # the example contract's monthly minimum
    assert main(["book", "show", "--book", "zenaton"]) == 0
    zenaton = capsys.readouterr().out
    assert "13¢ / 3,600 second" in zenaton
    assert "no seats" in zenaton


def test_a_book_file_is_shown_from_its_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(
        'name = "mini"\ncurrency = "eur"\ndefault_plan = "solo"\n'
        '[meters.copilot_messages]\ndisplay_name = "Messages"\nunit = "message"\n'
        '[plans.solo]\ndisplay_name = "Solo"\nseat_unit_amount = { month = 500 }\n'
        '[plans.solo.meters.copilot_messages]\nunit_amount_decimal = "1.25"\n'
    )
    book = show(capsys, "--book", str(path))
    assert book["book"] == "mini"
    assert book["source"] == str(path)
    solo = book["plans"][0]
    assert solo["seats"] == [{"interval": "month", "seat_unit_amount": 500}]
    assert solo["meters"][0]["tiers"] == [
        {"up_to": None, "unit_amount_decimal": "1.25", "flat_amount": 0}
    ]


def test_unknown_book_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["book", "show", "--book", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "billing: error: unknown price book 'nope' (bundled: devtools, zenaton)\n"
