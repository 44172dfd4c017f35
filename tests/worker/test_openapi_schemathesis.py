"""Schemathesis against GET /openapi.json: every documented operation, called in process (ASGI)
with generated requests, valid and invalid, answers no 5xx, only documented statuses and content
types, and bodies and headers that conform to the document.

The credentials are real: an admin bearer token, an admin login session (its cookie, and its CSRF
token put into the forms it posts), and Stripe signatures of whatever webhook body was generated
(signed by a wrapper around the app, as Stripe signs the raw bytes). The ledger holds an org and a
reconciliation, so the quota check, the reconciliation pages and their JSON answer 200 too, and
a credit, so the org pages and the credit ledger answer 200 with something in them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.ledger.ingest import Ingestor
from models.db import unit_of_work
from models.reconciliation import Reconciliation, ReconciliationLine
from stripe_emulator.webhooks import sign
from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import drop_prefix, make_service, new_prefix
from worker.web import pricing, quotas, quote_api
from worker.web.app import all_routes
from worker.web.bodies import BodyTooLarge, body_too_large
from worker.web.login import LOGIN_CSRF_COOKIE
from worker.web.openapi import build_document
from worker.web.rate_limit import RateLimiter
from worker.web.services import WebServices
from worker.web.sessions import MemorySessionStore, token_fingerprint

pytestmark = pytest.mark.redis

SECRET = "whsec_schemathesis"
ADMIN = "admin-token-schemathesis"
NOW = datetime(2026, 2, 1, tzinfo=UTC)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FORM_PATHS = {
    "/admin/resync",
    "/logout",
    "/admin/orgs/{org_id}/subscription",
}  # forms of a login session, checked against its token
LOGIN_CSRF = "login-form-token"
EXAMPLES = 30  # per operation and database: the whole run stays under a minute


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send(self, name: str, args: Sequence[Any]) -> str:
        self.sent.append((name, list(args)))
        return f"recorded {name}"


class SignWebhooks:
    """Signs each `/stripe/webhook` body with the secret, as Stripe does, before the app sees
    it: generated events then reach the inbox instead of stopping at the signature."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/stripe/webhook":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        signature = sign(body, SECRET, int(time.time())).encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"stripe-signature"]
        scope = {**scope, "headers": [*headers, (b"stripe-signature", signature)]}

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def seed(engine: Engine) -> None:
    """An org on a plan with quotas and a credit (ingested, as the API would), and a
    reconciliation of one of its invoices with a trace as the reconciler writes them."""
    org = {
        "type": "org",
        "org": "org_acme",
        "book": "zenaton",
        "plan": "free",
        "at": "2026-01-01T00:00:00Z",
    }
    credit = {
        "type": "credit",
        "id": "credit_1",
        "org": "org_acme",
        "amount": 5000,
        "at": "2026-01-10T00:00:00Z",
        "expires_at": "2026-12-31T00:00:00Z",
        "reason": "Goodwill",
    }
    with unit_of_work(engine) as session:
        assert Ingestor(session).ingest([org, credit], NOW).ok
    trace = {
        "expected": {"steps": ["90 messages - 10 included = 80 billable"]},
        "stripe": {"lines": [{"id": "il_1", "quantity": 90, "amount": 160, "proration": False}]},
    }
    with unit_of_work(engine) as session:
        row = Reconciliation(
            stripe_invoice_id="in_1",
            stripe_customer_id="cus_1",
            org_id="org_acme",
            period="2026-01",
            currency="usd",
            status="mismatched",
            expected_total_amount=1000,
            stripe_total_amount=1100,
            trigger="cli",
            created_at=NOW,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        session.add(
            ReconciliationLine(
                reconciliation_id=row.id,
                position=0,
                component="copilot_messages",
                status="mismatched",
                expected_quantity=80,
                expected_amount=60,
                stripe_quantity=90,
                stripe_amount=160,
                difference_amount=100,
                explanation="Stripe billed 10 messages more.",
                trace_json=json.dumps(trace),
            )
        )


@pytest.fixture
def site(engine: Engine) -> Iterator[tuple[ASGIApp, MemorySessionStore]]:
    seed(engine)
    prefix = new_prefix()
    service = make_service(engine, prefix)
    unlimited = RateLimiter(capacity=1_000_000, refill_per_second=1_000_000)
    replaced = {"/pricing", "/pricing/formulas", "/api/quote", "/api/quotas/check"}
    routes = [
        *(route for route in all_routes() if getattr(route, "path", None) not in replaced),
        *pricing.make_routes(unlimited),
        *quote_api.make_routes(unlimited),
        *quotas.make_routes(lambda: service, authorize=quotas.require_admin_token),
    ]
    sessions = MemorySessionStore()
    app = Starlette(routes=routes, exception_handlers={BodyTooLarge: body_too_large})
    app.state.services = WebServices(
        engine=engine,
        webhook_secret=SECRET,
        support_tokens=(),
        admin_tokens=(ADMIN,),
        dispatcher=Recorder(),
        sessions=sessions,
        clock=lambda: NOW,
    )
    yield SignWebhooks(app), sessions
    drop_prefix(redis.Redis.from_url(REDIS_TEST_URL), prefix)


def credentials(case: schemathesis.Case, sessions: MemorySessionStore) -> dict[str, Any]:
    """The admin's token and session; a form of the session gets its CSRF token."""
    session = sessions.open(token_fingerprint(ADMIN))  # /logout closes the one it is sent with
    if case.path in FORM_PATHS and isinstance(case.body, dict):
        case.body = {**case.body, "csrf_token": session.csrf_token}
    if case.path == "/login" and isinstance(case.body, dict):
        case.body = {**case.body, "csrf_token": LOGIN_CSRF}
    return {
        "headers": {"Authorization": f"Bearer {ADMIN}", "Origin": f"http://{asgi.HOST}"},
        "cookies": {"billing_session": session.session_id, LOGIN_CSRF_COOKIE: LOGIN_CSRF},
    }


OPERATIONS = [
    (method.upper(), path) for path, item in build_document()["paths"].items() for method in item
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(op) for op in OPERATIONS])
def test_every_operation_conforms_and_never_fails(
    site: tuple[ASGIApp, MemorySessionStore], method: str, path: str
) -> None:
    app, sessions = site
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
    cases = st.one_of(
        *operation.get_strategies_from_examples(),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS, **credentials(case, sessions))
        statuses.add(response.status_code)

    statuses: set[int] = set()
    conforms()
    if path != "/login":  # logging in needs a token nobody generates
        # The credentials were taken at least once: the run got past authentication.
        assert statuses - {401, 403}, f"{method} {path}: only {sorted(statuses)}"
