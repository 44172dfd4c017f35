"""`POST /api/quotas/check`: the handler on a bare Starlette app, then mounted in the web app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from billing.quotas.service import QuotaService
from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import add_org, drop_prefix, make_service, new_prefix
from worker.settings import get_settings
from worker.web import quotas
from worker.web.app import create_app
from worker.web.services import InlineDispatcher, WebServices

pytestmark = pytest.mark.redis


@pytest.fixture
def service(engine: Engine) -> Iterator[QuotaService]:
    prefix = new_prefix()
    yield make_service(engine, prefix)
    drop_prefix(redis.Redis.from_url(REDIS_TEST_URL), prefix)


class Http:
    """Requests to a bare Starlette app through httpx's ASGI transport (no server)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


@pytest.fixture
def http(service: QuotaService) -> Http:
    return Http(Starlette(routes=quotas.make_routes(lambda: service)))


def test_allowed_then_denied(engine: Engine, http: Http) -> None:
    add_org(engine, "org_a", "free")
    body = {"org": "org_a", "quota": "tasks_per_second", "amount": 100}
    first = http.post("/api/quotas/check", json=body)
    assert first.status_code == 200
    assert first.json() == {
        "allowed": True,
        "limit": 100,
        "used": 100,
        "remaining": 0,
        "mode": "hard",
    }
    second = http.post("/api/quotas/check", json={"org": "org_a", "quota": "tasks_per_second"})
    assert second.status_code == 200
    assert second.json() == {
        "allowed": False,
        "limit": 100,
        "used": 100,
        "remaining": 0,
        "mode": "hard",
    }


def test_unlimited_and_no_consume(engine: Engine, http: Http) -> None:
    add_org(engine, "org_zen_enterprise_example", "enterprise")
    body = {"org": "org_zen_enterprise_example", "quota": "tasks_per_month", "consume": False}
    answer = http.post("/api/quotas/check", json=body).json()
    assert answer == {"allowed": True, "limit": None, "used": 0, "remaining": None, "mode": "hard"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"org": "org_missing", "quota": "environments"}, 404, "org"),
        ({"org": "org_a", "quota": "tasks_per_hour"}, 422, "quota"),
        ({"org": "org_a", "quota": "environments", "amount": 0}, 422, "amount"),
        ({"org": "org_a", "quota": "environments", "amount": 1.5}, 422, "amount"),
        ({"org": "org_a", "quota": "environments", "amount": "2"}, 422, "amount"),
        ({"quota": "environments"}, 422, "org"),
        ({"org": "org_a"}, 422, "quota"),
        ({"org": "org_a", "quota": "environments", "consume": "no"}, 422, "consume"),
        (["org_a"], 400, None),
    ],
)
def test_bad_requests_name_the_field(
    engine: Engine, http: Http, body: object, status: int, field: str | None
) -> None:
    add_org(engine, "org_a", "free")
    response = http.post("/api/quotas/check", json=body)
    assert response.status_code == status
    assert response.json()["field"] == field
    assert response.json()["error"]


def test_malformed_json_and_wrong_method(http: Http) -> None:
    response = http.post(
        "/api/quotas/check", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert http.get("/api/quotas/check").status_code == 405


def test_module_exposes_the_route_list() -> None:
    assert [route.path for route in quotas.routes] == ["/api/quotas/check"]


# --------------------------------------------------------------------------- in the web app

ADMIN = "admin-token-q"
SUPPORT = "support-token-q"


@pytest.fixture
def app_http(engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Http]:
    """`create_app` as `billing serve` builds it; the quota service comes from the settings."""
    prefix = new_prefix()
    monkeypatch.setenv("BILLING_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLING_REDIS_URL", REDIS_TEST_URL)
    monkeypatch.setenv("BILLING_QUOTA_KEY_PREFIX", prefix)
    get_settings.cache_clear()
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_unused",
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=InlineDispatcher({}),
    )
    yield Http(create_app(services=services))
    get_settings.cache_clear()
    drop_prefix(redis.Redis.from_url(REDIS_TEST_URL), prefix)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"authorization": f"Bearer {SUPPORT}"}, 403),
        ({"authorization": f"Bearer {ADMIN}"}, 200),
    ],
)
def test_the_web_app_mounts_the_route_behind_admin_tokens(
    engine: Engine, app_http: Http, headers: dict[str, str], status: int
) -> None:
    add_org(engine, "org_a", "free")
    body = {"org": "org_a", "quota": "environments", "amount": 3}
    response = app_http.post("/api/quotas/check", json=body, headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response.json() == {
            "allowed": True,
            "limit": 3,
            "used": 0,
            "remaining": 3,
            "mode": "hard",
        }
