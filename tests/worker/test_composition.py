"""The wiring, read from the source: `worker/composition.py` is the only place that builds the
gateway and the services, nothing probes for modules that "may not exist yet", and only
`worker/clock.py` reads the wall clock in `worker/`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.db import migrate
from worker import clock, composition
from worker.settings import Settings
from worker.tasks.common import instant

ROOT = Path(__file__).parents[2]
COMPOSITION = ROOT / "worker" / "composition.py"
# What only the composition root may construct.
BUILT_BY_COMPOSITION = {
    "StripeGateway",
    "BudgetedRequestsClient",
    "Reconciler",
    "EventHandler",
    "PriceDriftCheck",
    "SeatSync",
    "UsagePusher",
    "Provisioner",
    "CatalogSync",
    "QuotaService",
    "MeterErrorIntake",
}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in ("worker", "billing"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text(encoding="utf-8"))


def _called_names(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                yield func.id
            elif isinstance(func, ast.Attribute):
                yield func.attr


def test_only_the_composition_root_builds_services_and_gateways() -> None:
    built_elsewhere = {
        (str(path), name)
        for path, tree in _sources()
        if path != COMPOSITION.relative_to(ROOT)
        for name in _called_names(tree)
        if name in BUILT_BY_COMPOSITION
    }
    assert built_elsewhere == set()


def test_the_composition_root_builds_each_of_them() -> None:
    """The list above is not stale: each class is built in worker/composition.py."""
    assert set(_called_names(ast.parse(COMPOSITION.read_text(encoding="utf-8")))) >= (
        BUILT_BY_COMPOSITION
    )


def test_nothing_probes_for_optional_modules() -> None:
    probes = set()
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names]
                module = node.module if isinstance(node, ast.ImportFrom) else None
                imported = [module or "", *names]
                # importlib.metadata reads the installed version (`billing --version`): not a
                # probe for code that may not exist.
                if any(
                    n.startswith("importlib") and not n.startswith("importlib.metadata")
                    for n in imported
                ):
                    probes.add(str(path))
            # getattr(composition, "name", None): a fallback for something that may not exist
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) == 3
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in {"composition", "module"}
            ):
                probes.add(str(path))
    assert probes == set()


WALL_CLOCK_READERS = {Path("worker/clock.py")}


def test_only_the_clock_reads_the_wall_clock_in_worker() -> None:
    readers = set()
    for path, tree in _sources():
        if path.parts[0] != "worker" or path in WALL_CLOCK_READERS:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"now", "utcnow", "today"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"datetime", "date"}
            ):
                readers.add(f"{path}:{node.lineno}")
    assert readers == set()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),  # the worker's clock
        ("2026-02-01T00:00:00Z", datetime(2026, 2, 1, tzinfo=UTC)),  # a replay's instant
    ],
)
def test_a_task_runs_as_of_its_given_instant_or_the_workers_clock(
    given: str | None, expected: datetime
) -> None:
    with clock.installed(lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC)):
        assert instant(given) == expected


@pytest.mark.parametrize(("env", "transport"), [(None, "stream"), ("v1", "v1")])
def test_the_meter_transport_setting_reaches_the_usage_pusher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str | None, transport: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(database_url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_composition")
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    if env is None:
        monkeypatch.delenv("BILLING_STRIPE_METER_TRANSPORT", raising=False)
    else:
        monkeypatch.setenv("BILLING_STRIPE_METER_TRANSPORT", env)
    settings = Settings()
    assert settings.stripe_meter_transport == transport
    assert composition.usage_pusher(settings).sender.transport == transport
