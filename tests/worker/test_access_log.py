"""`billing serve`'s access log: a token, secret or key in a query string never reaches it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from models.db import migrate
from tests.worker.web_server import free_port
from worker.logging import redact_query


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/reconciliations", "/reconciliations"),
        ("/reconciliations?org=acme&status=", "/reconciliations?org=acme&status="),
        ("/x?token=abc", "/x?token=***"),
        (
            "/x?org=acme&Access_Token=abc&period=2026-01",
            "/x?org=acme&Access_Token=***&period=2026-01",
        ),
        (
            "/x?api_key=a&client_secret=b&password=c",
            "/x?api_key=***&client_secret=***&password=***",
        ),
        ("/x?%74oken=abc", "/x?%74oken=***"),  # the name as the client encoded it
        ("/x?session=abc&sig=def", "/x?session=***&sig=***"),
        ("/x?token", "/x?token"),  # no value to hide
    ],
)
def test_redact_query(target: str, logged: str) -> None:
    assert redact_query(target) == logged


def test_serve_keeps_query_tokens_out_of_the_access_log(tmp_path: Path) -> None:
    """A real `billing serve` process: requests with secrets in their query strings, then its
    whole output read back."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    port = free_port()
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": url,
        "BILLING_WEB_INLINE_TASKS": "true",
        "BILLING_STRIPE_WEBHOOK_SECRET": "whsec_test",
    }
    env.pop("STRIPE_API_KEY", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, server)
        httpx.get(f"{base}/healthz?token=SECRET-1&org=acme")
        httpx.get(f"{base}/reconciliations?api_key=SECRET-2&Session_Id=SECRET-3")
        httpx.post(f"{base}/api/usage?access_token=SECRET-4", content=b"")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=15)
    assert '"GET /healthz?token=***&org=acme HTTP/1.1" 200' in output, output
    assert "GET /reconciliations?api_key=***&Session_Id=*** HTTP/1.1" in output
    assert "POST /api/usage?access_token=*** HTTP/1.1" in output
    assert "SECRET" not in output


def _wait_until_serving(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "billing serve exited"
        try:
            httpx.get(f"{base}/healthz", timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise AssertionError("billing serve did not start")
