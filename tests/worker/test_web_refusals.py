"""Hostile input to the web process gets a 4xx naming what is wrong, never a 500, and stores
nothing: signed webhooks that are not events of our mode, out-of-range instants, JSON nested
thousands deep, quantities spelled as JSON does not, reconciliation ids past 64 bits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from models.ledger import Org, UsageEvent
from models.reconciliation import WebhookEvent
from stripe_emulator.webhooks import sign
from tests.worker.web_server import serving
from worker.settings import Settings
from worker.web.app import create_app
from worker.web.auth import COOKIE
from worker.web.services import WebServices
from worker.web.sessions import MemorySessionStore, token_fingerprint

SECRET = "whsec_refusals"
SUPPORT = "support-token-refusals"
ADMIN = "admin-token-refusals"
NOW = datetime(2026, 2, 1, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {ADMIN}"}
NESTED = "[" * 100_000 + "]" * 100_000


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send(self, name: str, args: Sequence[Any]) -> str:
        self.sent.append((name, list(args)))
        return "ok"


def services(engine: Engine, *, livemode: bool = False) -> WebServices:
    return WebServices(
        engine=engine,
        webhook_secret=SECRET,
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=Recorder(),
        sessions=MemorySessionStore(),
        clock=lambda: NOW,
        stripe_livemode=livemode,
    )


@contextmanager
def site(web: WebServices) -> Iterator[httpx.Client]:
    with serving(create_app(services=web)) as url, httpx.Client(base_url=url) as web_client:
        yield web_client


@pytest.fixture
def client(engine: Engine) -> Iterator[httpx.Client]:
    with site(services(engine)) as web_client:
        yield web_client


def counts(engine: Engine) -> tuple[int, int, int]:
    """Rows of the inbox, the orgs and the usage events."""
    with Session(engine) as session:
        return tuple(  # type: ignore[return-value]
            session.exec(select(func.count()).select_from(table)).one()
            for table in (WebhookEvent, Org, UsageEvent)
        )


def event(**fields: Any) -> bytes:
    body = {
        "id": "evt_refusals",
        "object": "event",
        "type": "invoice.finalized",
        "created": 1_769_904_000,
        "livemode": False,
        "data": {"object": {"id": "in_1", "object": "invoice"}},
        **fields,
    }
    return json.dumps(body).encode()


def post_webhook(client: httpx.Client, body: bytes, signed_at: float | None = None) -> Any:
    signature = sign(body, SECRET, int(time.time() if signed_at is None else signed_at))
    return client.post("/stripe/webhook", content=body, headers={"Stripe-Signature": signature})


# --------------------------------------------------------------------------- webhooks


def test_a_signature_dated_ten_minutes_ahead_is_refused(
    client: httpx.Client, engine: Engine
) -> None:
    response = post_webhook(client, event(), signed_at=time.time() + 600)
    assert response.status_code == 400
    assert "in the future (tolerance 300 s)" in response.json()["error"]
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize(
    ("key_livemode", "event_livemode", "message"),
    [
        (False, True, "a live-mode event, but the Stripe key is a test key"),
        (True, False, "a test-mode event, but the Stripe key is a live key"),
    ],
)
def test_an_event_of_the_other_mode_gets_400_and_is_not_stored(
    engine: Engine, key_livemode: bool, event_livemode: bool, message: str
) -> None:
    web = services(engine, livemode=key_livemode)
    with site(web) as test_client:
        response = post_webhook(test_client, event(livemode=event_livemode))
    assert response.status_code == 400
    assert response.json()["error"] == f"invalid event: event evt_refusals: {message}"
    assert counts(engine) == (0, 0, 0)
    assert isinstance(web.dispatcher, Recorder)
    assert web.dispatcher.sent == []


@pytest.mark.parametrize(
    ("key", "environment", "livemode"),
    [
        (None, "development", False),
        ("sk_test_abc", "development", False),
        ("rk_test_abc", "test", False),
        ("sk_live_abc", "production", True),
        ("rk_live_abc", "production", True),
    ],
)
def test_the_key_says_which_mode_the_events_must_be(
    key: str | None, environment: str, livemode: bool
) -> None:
    settings = Settings(STRIPE_API_KEY=key, environment=environment)
    assert settings.stripe_livemode is livemode


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "the body is a JSON array, not an event object"),
        (event()[:-1].replace(b'"id": "evt_refusals", ', b"") + b"}", "the event has no id"),
        (NESTED.encode(), "the body is JSON nested too deeply to be an event"),
        (event(created=10**40), "created must be a Unix timestamp"),
        (event(id="evt_\u0000"), "id holds characters that are not text"),
    ],
)
def test_a_signed_body_that_is_not_an_event_gets_400_by_name(
    client: httpx.Client, engine: Engine, body: bytes, message: str
) -> None:
    response = post_webhook(client, body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert counts(engine) == (0, 0, 0)


# --------------------------------------------------------------------------- /api/usage

ORG = {"type": "org", "org": "org_r", "plan": "free", "at": "2026-01-01T00:00:00Z"}


def usage(**fields: Any) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": "u1",
        "org": "org_r",
        "meter": "copilot_messages",
        "quantity": 5,
        "at": "2026-01-02T00:00:00Z",
        **fields,
    }


def refused(client: httpx.Client, content: str) -> list[dict[str, Any]]:
    response = client.post("/api/usage", content=content, headers=AUTH)
    assert response.status_code == 422, response.text
    errors: list[dict[str, Any]] = response.json()["errors"]
    return errors


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_an_instant_outside_utc_datetimes_is_a_line_error(
    client: httpx.Client, engine: Engine, at: str
) -> None:
    lines = [json.dumps({**ORG, "at": at}), json.dumps(usage(at=at))]
    message = f"{at!r} is outside the years 1 to 9999 in UTC"
    assert refused(client, "\n".join(lines)) == [
        {"line": 1, "field": "at", "message": message},
        {"line": 2, "field": "at", "message": message},
    ]
    assert counts(engine) == (0, 0, 0)


def test_json_nested_thousands_deep_is_a_line_error(client: httpx.Client, engine: Engine) -> None:
    as_lines = refused(client, json.dumps(ORG) + "\n" + NESTED)
    assert as_lines == [
        {"line": 2, "field": "(json)", "message": "not an event: JSON nested too deeply"}
    ]
    as_array = refused(client, f"[{json.dumps(ORG)}, {NESTED}]")
    assert as_array == [
        {"line": 1, "field": "body", "message": "not a JSON array of events: nested too deeply"}
    ]
    assert counts(engine) == (0, 0, 0)


def test_a_number_of_5000_digits_is_a_line_error(client: httpx.Client, engine: Engine) -> None:
    huge = "1" * 5000
    body = f'[{json.dumps(ORG)}, {json.dumps(usage())[:-1]}, "extra": {huge}}}]'
    (error,) = refused(client, body)
    assert (error["line"], error["field"]) == (1, "body")
    assert "digits" in error["message"]
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("quantity", ["1_000", "1e3", " 5", "NaN", "Infinity", "0x10", "05"])
def test_a_quantity_string_not_written_as_a_json_number_is_refused(
    client: httpx.Client, engine: Engine, quantity: str
) -> None:
    errors = refused(client, json.dumps([ORG, usage(quantity=quantity)]))
    assert [(e["line"], e["field"]) for e in errors] == [(2, "quantity")]
    assert "is not a decimal number such as 5 or 2.5" in errors[0]["message"]
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("identifier", ["u\u0000", "u\ud800"])
def test_an_id_a_database_cannot_store_is_refused(
    client: httpx.Client, engine: Engine, identifier: str
) -> None:
    errors = refused(client, json.dumps([ORG, usage(id=identifier)]))
    assert [(e["line"], e["field"]) for e in errors] == [(2, "id")]
    assert counts(engine) == (0, 0, 0)


# --------------------------------------------------------------------------- reconciliations

HUGE_IDS = [str(2**63), str(2**64 + 1), "9" * 5000, str(2**63 - 1), "0"]


@pytest.mark.parametrize("reconciliation_id", HUGE_IDS)
def test_a_reconciliation_id_past_64_bits_is_not_found(
    client: httpx.Client, reconciliation_id: str
) -> None:
    support = {"Authorization": f"Bearer {SUPPORT}"}
    response = client.get(f"/api/reconciliations/{reconciliation_id}", headers=support)
    assert (response.status_code, response.json()) == (404, {"error": "no such reconciliation"})


@pytest.mark.parametrize("reconciliation_id", HUGE_IDS[:3])
def test_the_page_of_a_reconciliation_id_past_64_bits_is_not_found(
    engine: Engine, reconciliation_id: str
) -> None:
    web = services(engine)
    session = web.sessions.open(token_fingerprint(SUPPORT))
    with site(web) as test_client:
        test_client.cookies.set(COOKIE, session.session_id)
        response = test_client.get(f"/reconciliations/{reconciliation_id}")
    assert response.status_code == 404
    assert "reconciliation" in response.text.lower()
