"""Plan changes and cancellation from the support console (SPEC §10): the admin API, and the
org page's forms with their CSRF token and the typed confirmation before a cancellation."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.ledger.ingest import Ingestor
from models.ledger import OrgPlanChange
from tests.worker.web_server import serving
from worker.web.app import create_app
from worker.web.services import WebServices

SUPPORT, ADMIN = "support-token-1", "admin-token-1"
NOW = datetime(2027, 6, 15, 10, tzinfo=UTC)
TEAM = {"type": "org", "org": "acme", "plan": "team", "seats": 10, "at": "2027-01-01T00:00:00Z"}


class Dispatcher:
    def send(self, name: str, args: Sequence[Any]) -> str:
        return f"{name} {list(args)}"


@pytest.fixture
def client(engine: Engine) -> Iterator[httpx.Client]:
    with Session(engine) as session:
        assert Ingestor(session).ingest([TEAM], NOW).ok
        session.commit()
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_x",
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=Dispatcher(),  # type: ignore[arg-type]
        clock=lambda: NOW,
    )
    with (
        serving(create_app(services=services)) as url,
        httpx.Client(base_url=url, headers={"Origin": url}) as http,  # a same-origin browser
    ):
        yield http


def plans(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(OrgPlanChange).order_by(col(OrgPlanChange.at))).all()
        return [(row.at.date().isoformat(), row.plan) for row in rows]


def api(http: httpx.Client, body: dict[str, Any], token: str = ADMIN) -> httpx.Response:
    return http.post(
        "/api/admin/orgs/acme/subscription",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_the_api_schedules_a_downgrade_and_cancels_with_the_same_rules(
    client: httpx.Client, engine: Engine
) -> None:
    answer = api(client, {"action": "change", "plan": "free", "interval": "month", "seats": 3})
    assert answer.status_code == 201
    assert answer.json()["scheduled"] == "Team until 2028-01-01, then Free"
    assert plans(engine) == [("2027-01-01", "team"), ("2028-01-01", "free")]
    # A cancellation at term end replaces the scheduled downgrade.
    answer = api(client, {"action": "cancel"})
    assert answer.status_code == 201
    assert answer.json()["scheduled"] == "Team until 2028-01-01, then canceled"
    assert plans(engine) == [("2027-01-01", "team"), ("2028-01-01", "")]


def test_the_api_refuses_what_it_cannot_do_and_stores_nothing(
    client: httpx.Client, engine: Engine
) -> None:
    assert api(client, {"action": "cancel"}, token=SUPPORT).status_code == 403
    bad = api(client, {"action": "change", "plan": "gold"})
    assert (bad.status_code, bad.json()["field"]) == (422, "plan")
    assert api(client, {"action": "pause"}).json()["error"].startswith("action: must be one of")
    assert api(client, {"action": "cancel", "when": "later"}).status_code == 422
    missing = client.post(
        "/api/admin/orgs/nobody/subscription",
        json={"action": "cancel"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert missing.status_code == 404
    assert plans(engine) == [("2027-01-01", "team")]


def _login(http: httpx.Client) -> str:
    form = http.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    data = {"token": ADMIN, "csrf_token": token.group(1), "next": "/orgs/acme"}
    page = http.post("/login", data=data, follow_redirects=True)
    assert page.status_code == 200
    found = re.search(
        r'id="cancel-subscription".*?name="csrf_token" value="([^"]+)"', page.text, re.S
    )
    assert found is not None, "the org page shows the subscription forms to an admin"
    return found.group(1)


def test_the_org_page_cancels_only_when_the_org_id_is_typed_again(
    client: httpx.Client, engine: Engine
) -> None:
    csrf = _login(client)
    form = {"csrf_token": csrf, "action": "cancel", "when": "now", "confirm": "acm"}
    refused = client.post("/admin/orgs/acme/subscription", data=form)
    assert refused.status_code == 422
    assert "type the org id" in refused.text
    assert plans(engine) == [("2027-01-01", "team")]
    form["confirm"] = "acme"
    done = client.post("/admin/orgs/acme/subscription", data=form)
    assert (done.status_code, done.headers["location"]) == (303, "/orgs/acme")
    assert plans(engine) == [("2027-01-01", "team"), ("2027-06-15", "")]
    page = client.get("/orgs/acme")
    assert "canceled" in page.text
