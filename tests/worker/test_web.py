"""The web process: webhook signature and inbox, usage ingestion, bearer tokens and roles
(the login form and its sessions: test_web_login.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.ledger.usage_ids import StoredUsageLookup
from billing.reconciliation.inbox import EventHandler
from billing.reconciliation.match import Status
from models.ledger import UsageEvent
from models.reconciliation import WebhookEvent
from stripe_emulator.webhooks import sign
from tests.worker.web_server import serving
from worker.web.app import create_app
from worker.web.services import HANDLE_EVENT, PUSH_USAGE, WebServices

SECRET = "whsec_test_secret"
SUPPORT = "support-token-1"
ADMIN = "admin-token-1"
NOW = datetime(2026, 2, 1, tzinfo=UTC)


class FakeOutcome:
    def __init__(self) -> None:
        self.reconciliation_id = 7
        self.status = Status.MATCHED
        self.held = False


class FakeReconciler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    def reconcile_invoice(self, invoice_id: str, _now: datetime, *, trigger: str, hold: bool):
        self.calls.append((invoice_id, trigger, hold))
        return FakeOutcome()


class Dispatcher:
    """Runs handle_event inline with a real EventHandler; records every send."""

    def __init__(self, handler: EventHandler) -> None:
        self.handler = handler
        self.sent: list[tuple[str, list[Any]]] = []

    def send(self, name: str, args: Sequence[Any]) -> str:
        self.sent.append((name, list(args)))
        if name == HANDLE_EVENT:
            return self.handler.handle(args[0], NOW).action
        return "ok"


@pytest.fixture
def setup(engine: Engine) -> Iterator[tuple[httpx.Client, Dispatcher, FakeReconciler]]:
    reconciler = FakeReconciler()
    # These events name no customer of ours: nothing to push (tests/worker/test_jobs.py).
    handler = EventHandler(engine, reconciler, lambda _org_id, _now: None)  # type: ignore[arg-type]
    dispatcher = Dispatcher(handler)
    services = WebServices(
        engine=engine,
        webhook_secret=SECRET,
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=dispatcher,
        clock=lambda: NOW,
    )
    with serving(create_app(services=services)) as url, httpx.Client(base_url=url) as client:
        yield client, dispatcher, reconciler


def _event(event_id: str, event_type: str = "invoice.finalized") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": 1_769_904_000,
            "livemode": False,
            "api_version": "2026-10-28.endive",
            "data": {"object": {"id": "in_123", "object": "invoice", "status": "open"}},
        }
    ).encode()


def _post(client: httpx.Client, body: bytes, signature: str) -> Any:
    return client.post(
        "/stripe/webhook",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def test_a_valid_event_is_stored_and_handled(setup: Any, engine: Engine) -> None:
    client, _dispatcher, reconciler = setup
    body = _event("evt_1")
    response = _post(client, body, sign(body, SECRET, int(time.time())))
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    assert reconciler.calls == [("in_123", "invoice.finalized", False)]
    with Session(engine) as session:
        row = session.get(WebhookEvent, "evt_1")
    assert row is not None
    assert row.handled_at is not None
    assert row.outcome == "reconciliation 7: matched"


def test_a_replayed_event_is_acknowledged_stored_once_and_handled_once(
    setup: Any, engine: Engine
) -> None:
    client, dispatcher, reconciler = setup
    body = _event("evt_2", "invoice.created")
    for _ in range(3):
        response = _post(client, body, sign(body, SECRET, int(time.time())))
        assert response.status_code == 200
    assert response.json()["duplicate"] is True
    assert reconciler.calls == [("in_123", "invoice.created", True)]  # a draft: may be held
    assert dispatcher.sent == [(HANDLE_EVENT, ["evt_2"])]
    with Session(engine) as session:
        assert len(session.exec(select(WebhookEvent)).all()) == 1
    # A redelivered task (worker died after handling) does not handle it again either.
    assert dispatcher.handler.handle("evt_2", NOW).action == "already_handled"
    assert len(reconciler.calls) == 1


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        (lambda body: sign(body, "whsec_wrong", int(time.time())), "bad signature"),
        (lambda body: sign(body, SECRET, int(time.time()) - 301), "stale timestamp"),
        (lambda body: sign(body + b" ", SECRET, int(time.time())), "body changed"),
        (lambda _body: "", "no signature"),
    ],
)
def test_bad_webhooks_get_400_and_nothing_is_stored(
    setup: Any, engine: Engine, signature: Any, problem: str
) -> None:
    client, dispatcher, reconciler = setup
    body = _event("evt_bad")
    response = _post(client, body, signature(body))
    assert response.status_code == 400, problem
    assert dispatcher.sent == []
    assert reconciler.calls == []
    with Session(engine) as session:
        assert session.exec(select(WebhookEvent)).all() == []


def test_other_event_types_are_recorded_and_ignored(setup: Any) -> None:
    client, _, reconciler = setup
    body = _event("evt_3", "customer.subscription.updated")
    assert _post(client, body, sign(body, SECRET, int(time.time()))).status_code == 200
    assert reconciler.calls == []


ORG = {"type": "org", "org": "org_web", "plan": "free", "at": "2026-01-01T00:00:00Z"}


def _usage(event_id: str, quantity: Any) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": event_id,
        "org": "org_web",
        "meter": "copilot_messages",
        "quantity": quantity,
        "at": "2026-01-02T00:00:00Z",
    }


def test_usage_ingestion_accepts_json_lines_and_arrays(setup: Any, engine: Engine) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    lines = "\n".join(json.dumps(r) for r in (ORG, _usage("u1", 5)))
    response = client.post("/api/usage", content=lines, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["stored"]["usage"] == 1
    again = client.post("/api/usage", json=[_usage("u1", 5), _usage("u2", 3)], headers=auth)
    assert again.json() == {
        "stored": {"org": 0, "seats": 0, "usage": 1, "resources": 0, "cancel": 0, "credit": 0},
        "duplicates": {"org": 0, "seats": 0, "usage": 1, "resources": 0, "cancel": 0, "credit": 0},
    }


def test_seat_changes_schedule_a_coalesced_seat_sync_after_the_commit(setup: Any) -> None:
    client, dispatcher, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    seats = {"type": "seats", "org": "org_web", "count": 4, "at": "2026-01-03T00:00:00Z"}
    assert client.post("/api/usage", json=[ORG, _usage("u1", 5)], headers=auth).status_code == 200
    assert [name for name, _ in dispatcher.sent] == []  # usage alone schedules nothing
    assert client.post("/api/usage", json=[seats], headers=auth).status_code == 200
    assert dispatcher.sent == [("billing.seats.schedule", [["org_web"]])]


def test_usage_ingestion_is_all_or_nothing_with_line_errors(setup: Any, engine: Engine) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    response = client.post(
        "/api/usage", json=[ORG, _usage("ok", 1), _usage("bad", -4)], headers=auth
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "nothing stored",
        "errors": [{"line": 3, "field": "quantity", "message": "must not be negative, got -4"}],
    }
    with Session(engine) as session:
        assert session.exec(select(UsageEvent)).all() == []


def test_a_json_array_body_keeps_quantities_exact(setup: Any, engine: Engine) -> None:
    """A JSON array is read with exact decimals, as JSON Lines are: no float rounds a quantity
    (0.1 stays 0.1; 17 significant digits stay 17)."""
    client, _, _ = setup
    body = (
        '[{"type": "org", "org": "org_web", "plan": "free", "at": "2026-01-01T00:00:00Z"},'
        ' {"type": "usage", "id": "tenth", "org": "org_web", "meter": "runner_minutes",'
        ' "quantity": 0.1, "at": "2026-01-02T00:00:00Z"},'
        ' {"type": "usage", "id": "long", "org": "org_web", "meter": "runner_minutes",'
        ' "quantity": 12345678901.234567, "at": "2026-01-02T00:00:00Z"}]'
    )
    response = client.post("/api/usage", content=body, headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    with Session(engine) as session:
        stored = {row.event_id: row.quantity for row in session.exec(select(UsageEvent))}
    assert stored["tenth"] == Decimal("0.1")
    assert stored["long"] == Decimal("12345678901.234567")


def test_an_unreadable_body_gets_422_naming_its_line(setup: Any) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    broken = client.post("/api/usage", content='[{"type": "org",\n', headers=auth)
    assert (broken.status_code, broken.json()["errors"]) == (
        422,
        [
            {
                "line": 2,
                "field": "body",
                "message": "not a JSON array: Expecting property name enclosed in double quotes",
            }
        ],
    )
    latin1 = client.post("/api/usage", content=b'\n{"org": "caf\xe9"}', headers=auth)
    assert latin1.json()["errors"] == [
        {"line": 2, "field": "body", "message": "not UTF-8: invalid continuation byte"}
    ]


def _stored_usage(engine: Engine) -> list[tuple[str, int]]:
    with Session(engine) as session:
        rows = session.exec(select(UsageEvent)).all()
    return sorted((row.event_id, int(row.quantity)) for row in rows)


def test_a_conflicting_usage_id_gets_409_and_nothing_is_stored(setup: Any, engine: Engine) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert client.post("/api/usage", json=[ORG, _usage("u1", 5)], headers=auth).status_code == 200
    # The same content again is a duplicate (5 and "5.0" are the same quantity).
    again = client.post("/api/usage", json=[_usage("u1", "5.0")], headers=auth)
    assert (again.status_code, again.json()["duplicates"]["usage"]) == (200, 1)
    response = client.post(
        "/api/usage", json=[_usage("u2", 3), _usage("u1", 6), _usage("u2", 4)], headers=auth
    )
    assert response.status_code == 409, response.text
    assert response.json() == {
        "error": "conflicting usage ids; nothing stored",
        "errors": [
            {"line": 2, "field": "id", "message": "'u1' was already stored with quantity 5"},
            {
                "line": 3,
                "field": "id",
                "message": "'u2' was already given on line 1 with quantity 3",
            },
        ],
    }
    assert _stored_usage(engine) == [("u1", 5)]


def test_impossible_dates_get_422_even_beside_a_conflict(setup: Any, engine: Engine) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert client.post("/api/usage", json=[ORG, _usage("u1", 5)], headers=auth).status_code == 200
    lines = [
        _usage("u1", 6),
        {**_usage("u2", 1), "at": "1970-01-01T00:00:00Z"},
        {**_usage("u3", 1), "at": "2099-01-01T00:00:00Z"},
        {**_usage("u4", 1), "at": "2026-02-01T00:04:00Z"},  # 4 minutes ahead: clock skew
    ]
    response = client.post("/api/usage", json=lines, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"line": 1, "field": "id", "message": "'u1' was already stored with quantity 5"},
        {
            "line": 2,
            "field": "at",
            "message": "1970-01-01T00:00:00Z is before the org's first subscription "
            "(2026-01-01T00:00:00Z)",
        },
        {
            "line": 3,
            "field": "at",
            "message": "2099-01-01T00:00:00Z is more than 5 minutes in the future "
            "(now 2026-02-01T00:00:00Z)",
        },
    ]
    assert _stored_usage(engine) == [("u1", 5)]
    skewed = client.post("/api/usage", json=lines[3:], headers=auth)
    assert (skewed.status_code, skewed.json()["stored"]["usage"]) == (200, 1)


def test_authentication_and_roles(setup: Any) -> None:
    client, dispatcher, _ = setup
    assert client.get("/api/reconciliations").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert client.get("/api/reconciliations", headers=bad).status_code == 401
    support = {"Authorization": f"Bearer {SUPPORT}"}
    assert client.get("/api/reconciliations", headers=support).status_code == 200
    assert client.post("/api/usage", json=[ORG], headers=support).status_code == 403
    resync = "/api/admin/orgs/org_web/resync/usage"
    assert client.post(resync).status_code == 401
    assert client.post(resync, headers=support).status_code == 403
    assert dispatcher.sent == []
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert client.post(resync, headers=admin).status_code == 202
    assert dispatcher.sent == [(PUSH_USAGE, ["org_web"])]
    page = client.get("/reconciliations")
    assert page.status_code == 401
    assert 'name="token"' in page.text  # the login form


def test_an_id_stored_meanwhile_by_another_ingest_gets_503_to_send_again(
    setup: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert client.post("/api/usage", json=[ORG, _usage("u1", 5)], headers=auth).status_code == 200
    # Another ingest stores u1 between this one's look-up (which found nothing) and its insert.
    monkeypatch.setattr(StoredUsageLookup, "feed", lambda _self, _records: None)
    response = client.post("/api/usage", json=[_usage("u2", 1), _usage("u1", 6)], headers=auth)
    assert response.status_code == 503
    assert "send it again" in response.json()["error"]
    assert _stored_usage(engine) == [("u1", 5)]


def test_a_credit_event_is_ingested_and_a_conflicting_one_refused(setup: Any) -> None:
    client, _, _ = setup
    auth = {"Authorization": f"Bearer {ADMIN}"}
    credit = {
        "type": "credit",
        "id": "goodwill",
        "org": "org_web",
        "amount": 2000,
        "at": "2026-01-02T00:00:00Z",
        "reason": "sorry for the outage",
    }
    response = client.post("/api/usage", json=[ORG, credit], headers=auth)
    assert (response.status_code, response.json()["stored"]["credit"]) == (200, 1), response.text
    conflict = client.post("/api/usage", json=[{**credit, "amount": 2500}], headers=auth)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["errors"] == [
        {
            "line": 1,
            "field": "id",
            "message": "credit 'goodwill' was already stored with amount 2000",
        }
    ]


def test_admins_grant_credits_and_support_sees_the_balance(setup: Any) -> None:
    client, _, _ = setup
    admin = {"Authorization": f"Bearer {ADMIN}"}
    support = {"Authorization": f"Bearer {SUPPORT}"}
    assert client.post("/api/usage", json=[ORG], headers=admin).status_code == 200
    body = {"amount": 2000, "reason": "sorry for the outage", "id": "outage-1"}
    refused = client.post("/api/admin/orgs/org_web/credits", json=body, headers=support)
    assert refused.status_code == 403
    granted = client.post("/api/admin/orgs/org_web/credits", json=body, headers=admin)
    assert granted.status_code == 201, granted.text
    assert granted.json()["amount"] == 2000
    again = client.post("/api/admin/orgs/org_web/credits", json=body, headers=admin)
    assert again.status_code == 409
    for path, wrong, status, field in [
        ("org_web", {**body, "id": "x", "amount": 0}, 422, "amount"),
        ("org_web", {**body, "id": "x", "expires_at": "2000-01-01T00:00:00Z"}, 422, "expires_at"),
        ("org_web", {**body, "id": "x", "bonus": 1}, 422, "bonus"),
        ("nobody", {**body, "id": "x"}, 404, "org"),
    ]:
        response = client.post(f"/api/admin/orgs/{path}/credits", json=wrong, headers=admin)
        assert response.status_code == status, response.text
        assert response.json()["errors"][0]["field"] == field
    ledger = client.get("/api/orgs/org_web/credits", headers=support)
    assert ledger.status_code == 200
    assert (ledger.json()["granted"], ledger.json()["remaining"]) == (2000, 2000)
    assert [grant["id"] for grant in ledger.json()["grants"]] == ["outage-1"]
    assert client.get("/api/orgs/nobody/credits", headers=support).status_code == 404
    assert client.get("/api/orgs/org_web/credits").status_code == 401
