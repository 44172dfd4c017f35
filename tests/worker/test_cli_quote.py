"""`billing quote`: the seeds' examples through --json, the table, and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from billing.pricing.book import BOOKS_DIR
from worker.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["quote", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def line(payload: dict[str, object], code: str) -> dict[str, object]:
    lines = payload["lines"]
    assert isinstance(lines, list)
    return next(item for item in lines if item["code"] == code)


@pytest.mark.parametrize(
    ("args", "code", "amount", "total"),
    [
        (["--plan", "free", "--usage", "copilot_messages=80"], "copilot_messages", 60, 60),
        (["--plan", "free", "--usage", "runner_minutes=120"], "runner_minutes", 16, 16),
        (
            ["--plan", "team", "--usage", "iac_resource_hours=1600000"],
            "iac_resource_hours",
            1000,
            1000,
        ),
        (["--plan", "team", "--seats", "10"], "seats", 9000, 9000),
        (["--plan", "team", "--interval", "year", "--seats", "10"], "seats", 9000, 9000),
        (
            ["--book", "zenaton", "--plan", "payg", "--usage", "execution_time=803520"],
            "execution_time",
            2902,
            2902,
        ),
    ],
)
def test_seed_examples(
    capsys: pytest.CaptureFixture[str], args: list[str], code: str, amount: int, total: int
) -> None:
    payload = run_json(capsys, *args)
    assert line(payload, code)["amount"] == amount
    assert payload["total"] == total


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    payload = run_json(capsys, "--plan", "free", "--usage", "copilot_messages=80")
    assert list(payload) == ["book", "plan", "interval", "currency", "lines", "total"]
    assert payload["book"] == "devtools"
    assert payload["interval"] == "month"
    assert payload["currency"] == "usd"
    assert line(payload, "copilot_messages") == {
        "code": "copilot_messages",
        "quantity": 80,
        "included": 50,
        "billable": 30,
        "unit_amount_decimal": "2",
        "amount": 60,
    }
    assert line(payload, "seats")["amount"] == 0


def test_minimum_line_and_fractional_quantity(capsys: pytest.CaptureFixture[str]) -> None:
    payload = run_json(
        capsys, "--book", "zenaton", "--plan", "payg", "--usage", "execution_time=3600.5"
    )
    assert line(payload, "execution_time")["quantity"] == "3600.5"
    assert line(payload, "execution_time")["amount"] == 13
    assert line(payload, "minimum") == {
        "code": "minimum",
        "quantity": 1,
        "included": 0,
        "billable": 1,
        "unit_amount_decimal": "987",
        "amount": 987,
    }
    assert payload["total"] == 1000


def test_contract_quote(capsys: pytest.CaptureFixture[str]) -> None:
    payload = run_json(
        capsys, "--plan", "enterprise", "--contract", "org_enterprise_example", "--seats", "4"
    )
    assert line(payload, "seats")["amount"] == 3000
    assert line(payload, "minimum")["amount"] == 50000


def test_book_by_path(capsys: pytest.CaptureFixture[str]) -> None:
    payload = run_json(capsys, "--book", str(BOOKS_DIR / "zenaton.toml"), "--plan", "free")
    assert payload["book"] == "zenaton"


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["quote", "--plan", "team", "--seats", "10", "--usage", "copilot_messages=600"]) == 0
    )
    out = capsys.readouterr().out
    assert "Copilot messages" in out
    assert "$90.00" in out
    assert "$92.00" in out  # total: 9000 + 100 × 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plan", "gold"], "unknown plan 'gold'"),
        (["--plan", "free", "--usage", "tokens=3"], "unknown meter 'tokens'"),
        (["--plan", "free", "--usage", "copilot_messages=-1"], "must not be negative"),
        (["--plan", "free", "--usage", "copilot_messages=lots"], "is not a number"),
        (["--plan", "free", "--usage", "copilot_messages"], "expected METER=QUANTITY"),
        (["--plan", "team", "--interval", "week"], "must be month or year"),
        (["--plan", "team", "--interval", "month"], "not offered with interval 'month'"),
        (["--plan", "team", "--seats", "-3"], "non-negative whole number"),
        (["--plan", "team", "--seats", "2.5"], "non-negative whole number"),
        (["--book", "zenaton", "--plan", "payg", "--seats", "3"], "has no seats"),
        (
            ["--book", "zenaton", "--plan", "payg", "--usage", "copilot_messages=1"],
            "is not billed on plan 'payg'",
        ),
        (["--book", "nowhere", "--plan", "free"], "unknown price book 'nowhere'"),
        ([], "Missing option '--plan'"),
    ],
)
def test_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["quote", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("billing: error: ")
    assert message in captured.err


def test_invalid_book_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncurrency = "usd"\n', encoding="utf-8")
    assert main(["quote", "--book", str(bad), "--plan", "free"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"invalid price book {bad}: meters: " in err


def test_console_script_exit_code_and_no_traceback() -> None:
    script = shutil.which("billing") or ""
    command = [script] if script else [sys.executable, "-m", "worker.cli"]
    ok = subprocess.run(
        [*command, "quote", "--plan", "team", "--seats", "10", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["total"] == 9000
    bad = subprocess.run(
        [*command, "quote", "--plan", "free", "--usage", "x=1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0
