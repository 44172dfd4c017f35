"""docker-compose.yml: a web service with its port, health checks, one image, a writable beat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BILLING_SERVICES = ("migrate", "web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_web_serves_on_all_interfaces_with_a_published_port(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    command = web["command"]
    assert command[:2] == ["billing", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert any(str(mapping).endswith(f":{port}") for mapping in web["ports"])
    for variable in (
        "BILLING_SUPPORT_TOKENS",
        "BILLING_ADMIN_TOKENS",
        "BILLING_STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_KEY",
    ):
        assert str(web["environment"][variable]).startswith("${" + variable)


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("web", "/healthz"),
        ("worker", "inspect ping -d celery@$$HOSTNAME"),
        ("beat", "inspect ping -d celerybeat@$$HOSTNAME"),
    ],
)
def test_every_process_has_a_health_check(
    compose: dict[str, Any], service: str, probe: str
) -> None:
    assert probe in " ".join(compose["services"][service]["healthcheck"]["test"])


def test_one_image_built_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    built = [name for name in BILLING_SERVICES if "build" in services[name]]
    assert built == ["migrate"]
    assert len({services[name]["image"] for name in BILLING_SERVICES}) == 1


def test_beat_keeps_its_schedule_on_a_volume(compose: dict[str, Any]) -> None:
    beat = compose["services"]["beat"]
    schedule = Path(beat["command"][beat["command"].index("--schedule") + 1])
    mounts = {mount.split(":")[1]: mount.split(":")[0] for mount in beat["volumes"]}
    assert str(schedule.parent) in mounts
    assert mounts[str(schedule.parent)] in compose["volumes"]
    # The image's unprivileged user owns that folder, so the volume starts writable.
    assert f"--home-dir {schedule.parent} --create-home" in (ROOT / "Dockerfile").read_text()


def test_build_context_leaves_out_environments_and_databases() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything, then only what the image copies
    allowed = {line.removeprefix("!").rstrip("/") for line in ignored if line.startswith("!")}
    assert ".venv" not in allowed
    assert {"billing", "models", "worker", "pyproject.toml", "uv.lock"} <= allowed
