"""`GET /healthz` and `billing serve`'s start: database reachability and the webhook secret."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine

from models.db import make_engine, migrate
from tests.worker.web_server import serving
from worker.cli import main
from worker.logging import uvicorn_log_config
from worker.settings import get_settings
from worker.web.app import create_app
from worker.web.services import WebServices


class NoDispatch:
    def send(self, name: str, args: Any) -> str:
        raise AssertionError(f"/healthz must not send tasks ({name})")


def services(engine: Engine, webhook_secret: str) -> WebServices:
    return WebServices(
        engine=engine,
        webhook_secret=webhook_secret,
        support_tokens=("support-token",),
        admin_tokens=("admin-token",),
        dispatcher=NoDispatch(),
    )


def healthz(web: WebServices) -> httpx.Response:
    with serving(create_app(services=web)) as url:
        return httpx.get(f"{url}/healthz", timeout=30)  # no token: the route is public


def test_healthy_with_the_database_and_the_secret(engine: Engine) -> None:
    response = healthz(services(engine, "whsec_test"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database_reachable": True,
        "webhook_secret_set": True,
        "warnings": [],
    }


def test_warns_when_the_webhook_secret_is_unset(engine: Engine) -> None:
    response = healthz(services(engine, ""))
    assert response.status_code == 200  # it serves; webhooks alone are refused
    body = response.json()
    assert body["status"] == "degraded"
    assert body["webhook_secret_set"] is False
    assert len(body["warnings"]) == 1
    assert "BILLING_STRIPE_WEBHOOK_SECRET is not set" in body["warnings"][0]


def test_unavailable_when_the_database_does_not_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make_engine(f"postgresql://billing:hunter2@127.0.0.1:{port}/billing")
    try:
        response = healthz(services(engine, "whsec_test"))
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["database_reachable"] is False
    assert "hunter2" not in response.text


@pytest.fixture
def serve_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """`billing serve` up to uvicorn.run, which records its arguments instead of serving."""
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)  # `billing db upgrade`: serve refuses a database that is not migrated
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.setenv("BILLING_WEB_INLINE_TASKS", "true")
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("BILLING_STRIPE_WEBHOOK_SECRET", raising=False)
    get_settings.cache_clear()
    yield runs
    get_settings.cache_clear()


def test_serve_warns_once_at_start_without_a_webhook_secret(
    serve_env: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert serve_env == [
        {
            "host": "0.0.0.0",
            "port": 8123,
            "proxy_headers": True,
            "log_level": "info",
            "log_config": uvicorn_log_config(),  # tests/worker/test_access_log.py
        }
    ]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "serve.started_without_webhook_secret" in lines[0]
    assert "BILLING_STRIPE_WEBHOOK_SECRET is not set" in lines[0]


def test_serve_is_quiet_with_a_webhook_secret(
    serve_env: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BILLING_STRIPE_WEBHOOK_SECRET", "whsec_test")
    assert main(["serve"]) == 0
    assert len(serve_env) == 1
    assert capsys.readouterr().err == ""
