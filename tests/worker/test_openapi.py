"""GET /openapi.json: a valid OpenAPI 3.1 document naming exactly the app's endpoints, with the
quote body the handler validates; /api/events; and the 5xx and bare answers schemathesis found
(tests/worker/test_openapi_schemathesis.py) fixed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import schemathesis
from sqlalchemy.engine import Engine
from starlette.routing import Route

from tests.worker.pricing_site import pricing_app
from tests.worker.web_server import serving
from worker.web.app import all_routes, create_app
from worker.web.schemas.quote import QuoteBody
from worker.web.services import InlineDispatcher, WebServices
from worker.web.sessions import token_fingerprint

ADMIN = "admin-token-openapi"
NOW = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def web(engine: Engine) -> Iterator[tuple[httpx.Client, WebServices]]:
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_openapi",
        support_tokens=(),
        admin_tokens=(ADMIN,),
        dispatcher=InlineDispatcher({}),
        clock=lambda: NOW,
    )
    with serving(create_app(services=services)) as url, httpx.Client(base_url=url) as client:
        yield client, services


def document(client: httpx.Client) -> dict[str, object]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    return body


def test_the_document_is_public_and_valid_openapi_3_1(
    web: tuple[httpx.Client, WebServices],
) -> None:
    body = document(web[0])
    assert body["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(body).validate()  # against the OpenAPI 3.1 meta-schema


def test_the_document_names_exactly_the_apps_endpoints(
    web: tuple[httpx.Client, WebServices],
) -> None:
    paths = document(web[0])["paths"]
    assert isinstance(paths, dict)
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    served = {
        (method, route.path)
        for route in all_routes()
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert documented == served


def test_the_quote_body_documented_is_the_one_validated(
    web: tuple[httpx.Client, WebServices],
) -> None:
    body = document(web[0])
    operation = body["paths"]["/api/quote"]["post"]  # type: ignore[index]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = body["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[index]
    assert set(schema["properties"]) == set(QuoteBody.model_fields)
    assert schema["additionalProperties"] is False
    with serving(pricing_app()) as url, httpx.Client(base_url=url) as client:
        unknown = client.post("/api/quote", json={"plan": "free", "price": 3}).json()
        allowed = ", ".join(schema["properties"])
        assert unknown["errors"] == [
            {"field": "price", "message": f"unknown field (fields: {allowed})"}
        ]


def test_api_events_is_api_usage(web: tuple[httpx.Client, WebServices]) -> None:
    client, _ = web
    auth = {"Authorization": f"Bearer {ADMIN}"}
    org = {"type": "org", "org": "org_events", "plan": "free", "at": "2026-01-01T00:00:00Z"}
    usage = {
        "type": "usage",
        "id": "u1",
        "org": "org_events",
        "meter": "copilot_messages",
        "quantity": 5,
        "at": "2026-01-02T00:00:00Z",
    }
    first = client.post("/api/events", json=[org, usage], headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == {
        "org": 1,
        "seats": 0,
        "usage": 1,
        "resources": 0,
        "cancel": 0,
        "credit": 0,
    }
    again = client.post("/api/usage", json=[usage], headers=auth)
    assert again.json()["duplicates"]["usage"] == 1  # the same ledger, either name
    assert client.post("/api/events", json=[usage]).status_code == 401


@pytest.mark.parametrize("query", ["org=a%00b", "period=%00", "status=matched%00"])
def test_a_nul_in_a_filter_is_a_400_not_a_500(
    web: tuple[httpx.Client, WebServices], query: str
) -> None:
    """PostgreSQL refuses NUL in a query: the filter is refused before it is looked up."""
    client, services = web
    name = query.split("=", 1)[0]
    api = client.get(f"/api/reconciliations?{query}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert api.status_code == 400
    assert api.json() == {"error": f"{name}: must not contain NUL characters", "field": name}
    session = services.sessions.open(token_fingerprint(ADMIN))
    client.cookies.set("billing_session", session.session_id)
    page = client.get(f"/reconciliations?{query}")
    assert page.status_code == 400
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert f"{name}: must not contain NUL characters" in page.text


def test_a_refused_resync_form_is_a_page(web: tuple[httpx.Client, WebServices]) -> None:
    client, services = web
    session = services.sessions.open(token_fingerprint(ADMIN))
    client.cookies.set("billing_session", session.session_id)
    response = client.post(
        "/admin/resync",
        data={"org": "", "what": "seats", "csrf_token": session.csrf_token},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "org: required" in response.text


def test_an_error_echoing_a_lone_surrogate_is_sent_escaped(
    web: tuple[httpx.Client, WebServices],
) -> None:
    """JSON may carry `"\\ud800"` (UTF-8 cannot): errors naming it were a 500 while encoding."""
    client, _ = web
    event = (
        b'[{"type": "seats", "org": "o", "count": 1, "at": "2026-01-01T00:00:00Z", "\\ud800": 1}]'
    )
    refused = client.post("/api/usage", content=event, headers={"Authorization": f"Bearer {ADMIN}"})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"line": 1, "field": "\ud800", "message": "unknown field for type 'seats'"}
    ]
    with serving(pricing_app()) as url, httpx.Client(base_url=url) as pricing:
        quote = pricing.post("/api/quote", content=b'{"usage": {"\\ud800": 1}}')
    assert quote.status_code == 422
    assert quote.json()["errors"][0]["field"] == "usage.\ud800"
