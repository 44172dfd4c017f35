"""`billing stripe create-event-destination` and `billing stripe meter-errors` on the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing.stripe_gateway.thin_events import ERROR_REPORT_TRIGGERED, MeterErrorEvent
from billing.stripe_gateway.thin_events import MeterErrorSample as Sample
from billing.usage.meter_errors import record_report
from models.db import make_engine, migrate
from stripe_emulator import EmulatorConfig, EmulatorServer
from worker.cli import main
from worker.settings import get_settings

NOW = datetime(2026, 1, 20, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmulatorServer, str]]:
    with EmulatorServer(EmulatorConfig()) as emulator:
        monkeypatch.setenv("BILLING_STRIPE_API_BASE", emulator.url)
        url = f"sqlite:///{tmp_path / 'billing.db'}"
        migrate(url)
        monkeypatch.setenv("BILLING_DATABASE_URL", url)
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        get_settings.cache_clear()
        yield emulator, url
        get_settings.cache_clear()


def test_create_event_destination_prints_the_secret_once_made(
    env: tuple[EmulatorServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator, _ = env
    assert main(["stripe", "create-event-destination", "--url", "http://127.0.0.1:1/t"]) == 0
    out = capsys.readouterr().out
    [destination] = emulator.state.store.event_destinations.values()
    assert f"BILLING_STRIPE_EVENT_DESTINATION_SECRET={destination['_secret']}" in out
    assert destination["event_payload"] == "thin"
    assert sorted(destination["enabled_events"]) == [
        "v1.billing.meter.error_report_triggered",
        "v1.billing.meter.no_meter_found",
    ]
    # a second run with the same URL replays the first (same idempotency key)
    assert main(["stripe", "create-event-destination", "--url", "http://127.0.0.1:1/t"]) == 0
    assert len(emulator.state.store.event_destinations) == 1
    assert main(["stripe", "create-event-destination", "--url", "ftp://x"]) != 0


def test_meter_errors_lists_the_stored_reports(
    env: tuple[EmulatorServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = env
    engine = make_engine(url)
    report = MeterErrorEvent(
        stripe_event_id="evt_test_cli",
        type=ERROR_REPORT_TRIGGERED,
        created_at=NOW,
        stripe_meter_id="mtr_1",
        error_count=1,
        summary="There is 1 invalid event",
        validation_start_at=NOW,
        validation_end_at=NOW,
        samples=(Sample("meter_event_invalid_value", 1, "Invalid value: x", "not-ours"),),
    )
    assert record_report(engine, report, NOW).outcome == "stored"
    assert record_report(engine, report, NOW).outcome == "duplicate"
    engine.dispose()
    capsys.readouterr()
    assert main(["stripe", "meter-errors", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["code"], row["identifier"], row["usage_push_id"]) == (
        "meter_event_invalid_value",
        "not-ours",
        None,
    )
    assert main(["stripe", "meter-errors", "--org", "org_other", "--json"]) == 0
    assert capsys.readouterr().out == ""
