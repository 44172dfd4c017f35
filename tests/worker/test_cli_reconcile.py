"""`billing reconcile`, `billing reconciliations list|show` against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing.core.meters import Interval
from billing.pricing.book import load_book
from billing.setup.catalog import CatalogSync
from billing.setup.provisioning import OrgToProvision, Provisioner
from models.db import engine_for, migrate
from stripe_emulator import EmulatorConfig, EmulatorServer
from worker import composition
from worker.cli import main
from worker.settings import get_settings


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    """The command's JSON: its last stdout line (unconfigured structlog also prints there)."""
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as emulator:
        monkeypatch.setenv("BILLING_STRIPE_API_BASE", emulator.url)
        url = f"sqlite:///{tmp_path / 'billing.db'}"
        migrate(url)
        monkeypatch.setenv("BILLING_DATABASE_URL", url)
        monkeypatch.setenv("BILLING_STRIPE_MAX_NETWORK_RETRIES", "0")
        monkeypatch.setenv("BILLING_STRIPE_BUDGET", "none")
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
        get_settings.cache_clear()
        yield emulator
        get_settings.cache_clear()


def test_reconcile_an_invoice_then_list_and_show_it(
    env: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings()
    engine = engine_for(settings.database_url)
    gateway = composition.stripe_gateway(settings)
    now = datetime.now(UTC)
    CatalogSync(gateway, engine).sync(load_book("devtools"), now)
    # Provisioned in Stripe but absent from the ledger: Stripe bills seats nobody expects.
    outcome = Provisioner(gateway, engine).provision(
        OrgToProvision("org_cli", "devtools", "team", Interval.YEAR, now, 3), now
    )
    (invoice,) = env.state.invoices(outcome.stripe_customer_id)

    assert main(["reconcile", "--invoice", invoice["id"], "--json"]) == 0
    (row,) = _json(capsys)
    assert row["status"] == "unexpected_in_stripe"

    assert main(["reconciliations", "list", "--status", "unexpected_in_stripe", "--json"]) == 0
    listed = _json(capsys)
    assert [r["stripe_invoice_id"] for r in listed] == [invoice["id"]]
    assert main(["reconciliations", "list", "--status", "matched", "--json"]) == 0
    assert _json(capsys) == []

    assert main(["reconciliations", "show", str(row["id"]), "--json"]) == 0
    shown = _json(capsys)
    assert shown["org_id"] == "org_cli"
    assert [(x["component"], x["status"], x["stripe_amount"]) for x in shown["lines"]] == [
        ("seats", "unexpected_in_stripe", 2700)
    ]
    assert main(["reconciliations", "show", "999"]) == 2
    assert capsys.readouterr().err.startswith("billing: error: no reconciliation 999")
    assert main(["reconcile"]) == 2
    assert main(["reconciliations", "list", "--status", "bogus"]) == 2
