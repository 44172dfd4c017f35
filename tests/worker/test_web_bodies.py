"""Request bodies are bounded before they are read whole: 413 when `Content-Length` says more
than the endpoint takes, and 413 as soon as a chunked body passes it, the rest never read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from models.db import make_engine, migrate
from worker.web import usage, webhook
from worker.web.app import create_app
from worker.web.csrf import MAX_FORM_BYTES
from worker.web.services import InlineDispatcher, WebServices

ADMIN = "admin-token-bodies"
CHUNK = b"x" * (64 * 1024)
MIB = 1024 * 1024


class Upload:
    """An ASGI `receive` streaming `chunk_count` chunks of 64 KiB; counts those the app read."""

    def __init__(self, chunk_count: int) -> None:
        self.chunk_count = chunk_count
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        self.read += 1
        return {"type": "http.request", "body": CHUNK, "more_body": self.read < self.chunk_count}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'bodies.db'}"
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def post(engine: Engine, path: str, upload: Upload, **headers: str) -> tuple[int, bytes]:
    """POST `upload` to `path` straight through the ASGI app; its status and body."""
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_bodies",
        support_tokens=(),
        admin_tokens=(ADMIN,),
        dispatcher=InlineDispatcher({}),
    )
    app = create_app(services=services)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, upload, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


ENDPOINTS = [
    pytest.param("/stripe/webhook", webhook.MAX_BODY_BYTES, {}, id="webhook"),
    pytest.param("/stripe/thin-events", webhook.MAX_BODY_BYTES, {}, id="thin-events"),
    pytest.param(
        "/api/usage", usage.MAX_BODY_BYTES, {"Authorization": f"Bearer {ADMIN}"}, id="usage"
    ),
    pytest.param(
        "/login",
        MAX_FORM_BYTES,
        {"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"},
        id="form",
    ),
]


def test_the_limits() -> None:
    assert webhook.MAX_BODY_BYTES == MIB
    assert usage.MAX_BODY_BYTES == 20 * MIB


@pytest.mark.parametrize(("path", "limit", "headers"), ENDPOINTS)
def test_a_declared_length_over_the_limit_is_refused_unread(
    engine: Engine, path: str, limit: int, headers: dict[str, str]
) -> None:
    upload = Upload(chunk_count=(limit * 2) // len(CHUNK))
    status, body = post(engine, path, upload, **headers, **{"Content-Length": str(limit * 2)})
    assert status == 413
    assert f"over {limit:,} bytes".encode() in body
    assert upload.read == 0


@pytest.mark.parametrize(("path", "limit", "headers"), ENDPOINTS)
def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    engine: Engine, path: str, limit: int, headers: dict[str, str]
) -> None:
    upload = Upload(chunk_count=(limit + 32 * MIB) // len(CHUNK))  # 32 MiB more than it takes
    status, _body = post(engine, path, upload, **headers)
    assert status == 413
    assert upload.read == limit // len(CHUNK) + 1  # the chunk that passed it, and no more


@pytest.mark.parametrize("declared", ["99999999999999999999999999", "0" * 30 + "12", "²", "-1"])
def test_odd_content_lengths_are_bounded_too(engine: Engine, declared: str) -> None:
    upload = Upload(chunk_count=(webhook.MAX_BODY_BYTES + MIB) // len(CHUNK))
    status, _body = post(engine, "/stripe/webhook", upload, **{"Content-Length": declared})
    assert status == 413
    assert upload.read <= webhook.MAX_BODY_BYTES // len(CHUNK) + 1


def test_a_body_within_the_limit_is_read_and_judged(engine: Engine) -> None:
    upload = Upload(chunk_count=webhook.MAX_BODY_BYTES // len(CHUNK))  # exactly 1 MiB
    status, body = post(engine, "/stripe/webhook", upload)
    assert (status, upload.read) == (400, upload.chunk_count)
    assert b"invalid signature" in body
