"""The support console over HTTP (issue 18), on a world run through the emulator: search,
paging, the org page, plain-language explanations of each line kind, and a failed re-sync."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.reconciliation.queries import Search, parse_search, search_reconciliations
from models.db import unit_of_work
from models.reconciliation import Reconciliation
from tests.worker.support_world import ADMIN, Site, build, site
from worker.web.auth import COOKIE
from worker.web.sessions import token_fingerprint

SEAT_STEPS = "3 seat changes (16 → 18 → 21 → 23, +7 seats in all)"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("support-world")
    return workdir, build(workdir)


@pytest.fixture
def web(world: tuple[Path, dict[str, Any]]) -> Iterator[Site]:
    with site(*world) as served:
        yield served


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {r["stripe_invoice_id"] for r in response.json()["reconciliations"]}


def test_one_search_finds_an_invoice_by_id_number_org_prefix_or_customer(web: Site) -> None:
    invoice = web.invoice_id("acme")
    assert _ids(web.api(f"/api/reconciliations?q={invoice}")) == {invoice}
    org = web.api("/api/orgs/acme").json()
    acme_invoices = {i["stripe_invoice_id"] for i in org["invoices"]}
    assert len(acme_invoices) == 3  # the first invoice, January and February
    assert _ids(web.api("/api/reconciliations?q=ac")) == acme_invoices  # an org id's prefix
    assert _ids(web.api(f"/api/reconciliations?q={org['stripe']['customer_id']}")) == acme_invoices
    number = next(i["number"] for i in org["invoices"] if i["stripe_invoice_id"] == invoice)
    assert number
    assert _ids(web.api(f"/api/reconciliations?q={number}")) == {invoice}
    assert _ids(web.api("/api/reconciliations?q=nobody")) == set()
    page = web.page(f"/reconciliations?q={number}")
    assert page.status_code == 200
    assert page.text.count('class="rec-row"') == 1
    assert 'href="/orgs/acme"' in page.text  # one click from the result to the org's page


@pytest.mark.parametrize(
    ("query", "field"),
    [("period=2027-13", "period"), ("period=jan", "period"), ("status=fine", "status")],
)
def test_a_malformed_filter_is_a_400_naming_it(web: Site, query: str, field: str) -> None:
    api = web.api(f"/api/reconciliations?{query}")
    assert api.status_code == 400
    assert api.json()["field"] == field
    assert api.json()["error"].startswith(f"{field}:")
    page = web.page(f"/reconciliations?{query}")
    assert page.status_code == 400
    assert "Bad filter: " + field in page.text


def test_paging_goes_beyond_200_rows(engine: Engine) -> None:
    at = datetime(2027, 1, 1, tzinfo=UTC)
    with unit_of_work(engine) as session:
        for n in range(205):
            session.add(
                Reconciliation(
                    stripe_invoice_id=f"in_page_{n:03d}",
                    stripe_customer_id="cus_page",
                    org_id="org_page",
                    currency="usd",
                    status="matched",
                    expected_total_amount=n,
                    stripe_total_amount=n,
                    trigger="cli",
                    created_at=at + timedelta(minutes=n),
                )
            )
    with Session(engine) as session:
        first = search_reconciliations(session, parse_search({"q": "org_pa"}))
        assert len(first.rows) == 200
        assert first.next_before_id is not None
        second = search_reconciliations(session, Search(q="org_pa", before_id=first.next_before_id))
    assert second.next_before_id is None
    names = [r.stripe_invoice_id for r in (*first.rows, *second.rows)]
    assert len(names) == len(set(names)) == 205
    assert names[0] == "in_page_204"  # newest first
    assert names[-1] == "in_page_000"


def _detail(web: Site, invoice_id: str) -> tuple[str, dict[str, Any]]:
    rows = web.api(f"/api/reconciliations?q={invoice_id}").json()["reconciliations"]
    (row,) = rows
    page = web.page(f"/reconciliations/{row['id']}")
    assert page.status_code == 200
    return page.text, web.api(f"/api/reconciliations/{row['id']}").json()


def _explained(data: dict[str, Any], component: str) -> dict[str, Any]:
    return next(line["explained"] for line in data["lines"] if line["component"] == component)


def test_several_seat_increases_on_one_line_are_explained_step_by_step(web: Site) -> None:
    html, data = _detail(web, web.invoice_id("acme"))
    seats = _explained(data, "seat_proration")
    assert seats["summary"] == (f"{SEAT_STEPS}, each prorated to the term end Jan 1 2028: $59.83.")
    assert seats["steps"] == [
        "+2 seats on Jan 15 2027 10:00 UTC: 2 × $9.00 × 350 d 14 h 0 m / 365 d = $17.29",
        "+3 seats on Jan 20 2027 11:00 UTC: 3 × $9.00 × 345 d 13 h 0 m / 365 d = $25.56",
        "+2 seats on Jan 21 2027 14:05 UTC: 2 × $9.00 × 344 d 9 h 55 m / 365 d = $16.98",
    ]
    assert seats["rounding"].startswith("Stripe rounds the credit and the charge of each seat")
    assert (
        "Unused time on 16 × Team seats after 15 Jan 2027 (quantity 16): -$138.31"
        in (seats["stripe"])
    )
    assert "16 → 18, quantity 2" not in html
    assert SEAT_STEPS in html


def test_usage_lines_name_their_units_and_show_dollars_never_long_cents(web: Site) -> None:
    html, data = _detail(web, web.invoice_id("acme"))
    iac = _explained(data, "iac_resource_hours")
    assert iac["steps"][0] == (
        "1 resource report: for each stack and each clock hour the peak resource count, "
        "summed over the period = 1,800,000 resource-hours"
    )
    assert "total 0" not in html  # neither in the explanation nor in the stored trace
    assert "→ total 1800000" in html
    assert "300,000 resource-hours × $0.0001 per resource-hour = $30.00" in iac["steps"]
    runner = _explained(data, "runner_minutes")
    assert "234 minutes × $0.008 per minute = $1.872" in runner["steps"]
    assert runner["rounding"] == "The exact $1.872 is rounded once, half up, to $1.87."
    assert runner["verdict"] == "Stripe $1.87, expected $1.87: they agree."
    assert "\\u2192" not in html  # the full trace is text, not escaped JSON
    assert "{" not in re.sub(r"<style>.*?</style>", "", html, flags=re.DOTALL)
    assert not re.search(r"\d+\.\d{3,}¢", html)  # no 1898.311111…¢ anywhere


def test_zenaton_seconds_become_hours_and_the_minimum_is_explained(web: Site) -> None:
    _, data = _detail(web, web.invoice_id("zen"))
    usage = _explained(data, "execution_time")
    assert (
        "Stripe counts in hours of 3,600 seconds: 36,000 seconds ÷ 3,600 = 10 hours"
        in (usage["steps"])
    )
    assert "10 hours × $0.13 per hour = $1.30" in usage["steps"]
    minimum = _explained(data, "minimum")
    assert minimum["steps"] == ["$10.00 minimum − $1.30 usage = $8.70"]


def test_a_late_usage_adjustment_names_the_late_event_and_its_arrival(web: Site) -> None:
    _, data = _detail(web, web.invoice_id("late-co", index=1))
    adjustment = _explained(data, "adjustment")
    assert adjustment["steps"] == [
        "2027-01: the ledger now prices it at $1.50 (125 messages → $1.50); Stripe billed "
        "$1.00 for it → +$0.50 here",
        "Late event l-3: 25 messages dated Jan 30 2027 09:00 UTC, arrived Feb 4 2027 10:00 UTC",
    ]


def test_the_org_page_has_plan_seats_invoices_usage_and_stripe_links(web: Site) -> None:
    org = web.api("/api/orgs/acme").json()
    assert (org["book"], org["plan"], org["interval"]) == ("devtools", "team", "year")
    assert org["current_term"] == {
        "period_start": "2027-01-01T00:00:00Z",
        "period_end": "2028-01-01T00:00:00Z",
    }
    assert [c["seat_count"] for c in org["seat_changes"]] == [16, 18, 21, 23]
    assert [(c["plan"], c["at"]) for c in org["plan_changes"]] == [("team", "2027-01-01T00:00:00Z")]
    customer = org["stripe"]["customer_id"]
    assert (
        org["stripe"]["customer_url"] == f"https://dashboard.stripe.com/test/customers/{customer}"
    )
    cycle = next(
        i for i in org["invoices"] if i["period"] == "2027-01" and i["stripe_total_amount"]
    )
    assert (cycle["status"], cycle["held"], cycle["stripe_total_amount"]) == (
        "matched",
        False,
        9570,
    )
    assert cycle["hosted_invoice_url"].endswith(cycle["stripe_invoice_id"])
    assert cycle["dashboard_url"].startswith("https://dashboard.stripe.com/test/invoices/in_")
    meters = {m["meter"]: m for m in org["usage"]["meters"]}
    assert meters["copilot_messages"]["days"] == {"2027-01-04": "700"}
    assert meters["copilot_messages"]["unit"] == "message"
    # 2,500 resources from Jan 2: 24 × 2,500 resource-hours every day of both periods.
    assert meters["iac_resource_hours"]["days"]["2027-02-09"] == "60000"
    assert org["quotas"] == []

    page = web.page("/orgs/acme")
    assert page.status_code == 200
    assert page.text.count('class="seat-row"') == 4
    assert page.text.count("<svg") == len(meters)
    assert "2027-01-04: 700 messages" in page.text  # a bar's title
    assert web.page("/orgs/nobody").status_code == 404
    assert web.api("/api/orgs/nobody").status_code == 404


def test_a_zenaton_org_shows_its_quotas(web: Site) -> None:
    org = web.api("/api/orgs/zen").json()
    quotas = {q["quota"]: q for q in org["quotas"]}
    assert quotas["tasks_per_month"]["limit"] == 10_000_000
    assert quotas["environments"]["limit"] == 30
    assert "tasks_per_month" in web.page("/orgs/zen").text


class FailingDispatcher:
    def send(self, name: str, args: Sequence[Any]) -> str:
        raise RuntimeError(f"broker unreachable while sending {name} for {args[0]}")


def test_a_failed_admin_resync_shows_what_failed_not_a_bare_500(
    world: tuple[Path, dict[str, Any]],
) -> None:
    with site(*world, dispatcher=FailingDispatcher()) as web:
        session = web.services.sessions.open(token_fingerprint(ADMIN))
        response = httpx.post(
            f"{web.url}/admin/resync",
            data={
                "org": "acme",
                "what": "seats",
                "back": "/orgs/acme",
                "csrf_token": session.csrf_token,
            },
            cookies={COOKIE: session.session_id},
            headers={"Origin": web.url},
            timeout=30,
        )
    assert response.status_code == 502
    assert "Re-sync of seats for acme failed" in response.text
    assert "broker unreachable while sending billing.seats.sync_org for acme" in response.text
    assert "safe to repeat" in response.text
    assert "Internal Server Error" not in response.text
