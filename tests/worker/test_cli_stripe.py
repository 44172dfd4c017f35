"""`billing stripe sync-catalog` and provisioning end to end against the local Stripe emulator."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing.core.errors import TransientBillingError
from billing.core.meters import Interval
from billing.setup.provisioning import OrgToProvision, ProvisionAction
from billing.stripe_gateway import StripeConfig, StripeCustomer, StripeGateway
from models.db import migrate
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.billing.setup.test_catalog import APPROXIMATE_BOOK
from tests.fixtures.stripe_params import RecordedCall, checking_stripe_params
from worker import composition
from worker.cli import main
from worker.settings import get_settings


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture
def env(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[RecordedCall]]:
    """Settings pointing at the emulator and a fresh SQLite file; every call's params checked."""
    monkeypatch.setenv("BILLING_STRIPE_API_BASE", emulator.url)
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.setenv("BILLING_STRIPE_MAX_NETWORK_RETRIES", "0")
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    get_settings.cache_clear()
    with checking_stripe_params() as calls:
        yield calls
    get_settings.cache_clear()


def sync(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["stripe", "sync-catalog", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_sync_catalog_is_idempotent_and_reports_injected_drift(
    env: list[RecordedCall], emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = sync(capsys, "--book", "devtools")
    assert code == 0
    # 7 products, 4 meters (the minimum top-up's too), 17 prices (billing.setup.catalog_plan)
    assert first["counts"]["created"] == 28
    assert first["counts"]["verified"] == 0

    code, second = sync(capsys, "--book", "devtools")
    assert code == 0
    assert second["counts"] == {"created": 0, "verified": 28, "drifted": 0, "repaired": 0}
    assert [o["stripe_id"] for o in second["objects"]] == [o["stripe_id"] for o in first["objects"]]

    seat = next(o for o in first["objects"] if o["catalog_key"] == "price:devtools:team:seats:year")
    emulator.state.set_price_amount(seat["stripe_id"], Decimal(1200))
    code, drifted = sync(capsys, "--book", "devtools")
    assert code == 1
    (drift,) = [o for o in drifted["objects"] if o["action"] == "drifted"]
    assert drift["catalog_key"] == "price:devtools:team:seats:year"
    assert "unit=900¢" in drift["book_terms"]
    assert "unit=1200¢" in drift["stripe_terms"]

    code, repaired = sync(capsys, "--book", "devtools", "--repair")
    assert code == 0
    (fixed,) = [o for o in repaired["objects"] if o["action"] == "repaired"]
    assert fixed["stripe_id"] != seat["stripe_id"]
    code, after = sync(capsys, "--book", "devtools")
    assert code == 0
    assert after["counts"]["verified"] == 28
    assert env  # parameters of every call were checked against stripe.params


def test_sync_catalog_table_says_when_a_price_is_approximate(
    env: list[RecordedCall],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    book = tmp_path / "hourly.toml"
    book.write_text(APPROXIMATE_BOOK, encoding="utf-8")
    assert main(["stripe", "sync-catalog", "--book", str(book)]) == 0
    out = capsys.readouterr().out
    assert "approximate" in out
    assert "price:hourly:basic:execution_time" in out


def test_sync_catalog_without_key_for_real_stripe_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BILLING_STRIPE_API_BASE", raising=False)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["stripe", "sync-catalog"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("billing: error: STRIPE_API_KEY is not set")
    assert err.count("\n") == 1


def test_provisioning_against_the_emulator_twice(
    env: list[RecordedCall], emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stripe", "sync-catalog", "--book", "devtools", "--json"]) == 0
    capsys.readouterr()
    now = datetime.now(UTC)
    org = OrgToProvision(
        org_id="org_team_e2e",
        book="devtools",
        plan="team",
        interval=Interval.YEAR,
        term_start_at=now,
        seat_count=7,
    )
    first = composition.provisioner().provision(org, now)
    second = composition.provisioner().provision(org, now)
    assert first.subscription_action is ProvisionAction.CREATED
    assert second.subscription_action is ProvisionAction.EXISTING
    assert second.stripe_subscription_id == first.stripe_subscription_id

    sub = composition.stripe_gateway().retrieve_subscription(first.stripe_subscription_id)
    assert sub.billing_mode == "flexible"
    assert sub.metadata["org_id"] == "org_team_e2e"
    seats = {i.stripe_subscription_item_id: i for i in sub.items}
    seat_item = seats[first.stripe_subscription_item_ids["seats"]]
    usage_item = seats[first.stripe_subscription_item_ids["copilot_messages"]]
    assert seat_item.quantity == 7
    assert seat_item.current_period_end_at is not None
    assert usage_item.current_period_end_at is not None
    assert seat_item.current_period_end_at > usage_item.current_period_end_at  # year vs month
    creates = [c for c in env if c.method == "post" and c.path == "/v1/subscriptions"]
    assert len(creates) == 1


def test_stripe_emulator_command_serves_the_api() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "worker.cli", "stripe-emulator", "--port", str(port)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            banner = process.stdout.readline() if process.stdout else ""
            assert f"http://127.0.0.1:{port}" in banner
            gateway = StripeGateway(
                StripeConfig(
                    "sk_test_x", api_base=f"http://127.0.0.1:{port}", max_network_retries=0
                )
            )
            customer = _create_when_up(gateway, deadline=time.monotonic() + 10)
            fetched = gateway.retrieve_customer(customer.stripe_customer_id)
            assert fetched.metadata == {"org_id": "org_cli"}
        finally:
            process.terminate()
            process.wait(timeout=10)


def _create_when_up(gateway: StripeGateway, deadline: float) -> StripeCustomer:
    while True:
        try:
            return gateway.create_customer(
                metadata={"org_id": "org_cli"}, idempotency_key="provision:customer:org_cli"
            )
        except TransientBillingError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_stripe_emulator_command_sets_the_aggregation_delay() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "worker.cli", "stripe-emulator", "--port", str(port)),
        *("--limits", "sandbox", "--aggregation-delay", "2.5"),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            banner = "".join(process.stdout.readline() for _ in range(4)) if process.stdout else ""
            assert "meter aggregation delay: 2.5 s" in banner
            config = _config_when_up(f"http://127.0.0.1:{port}", time.monotonic() + 10)
            assert config["meter_aggregation_delay_seconds"] == 2.5
            assert config["limits"] == "sandbox"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _config_when_up(url: str, deadline: float) -> dict[str, object]:
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_emulator/config", timeout=5) as response:
                body: dict[str, object] = json.loads(response.read())
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
