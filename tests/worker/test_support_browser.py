"""The support pages in a real headless Chromium: log in, list, filter, open one, screenshot,
re-sync and log out; a page on another port cannot post the admin's forms."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from billing.reconciliation.reconciler import Reconciler
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine
from models.db import make_engine, migrate, unit_of_work
from models.stripe_records import StripeCustomerRecord
from tests.fixtures.browser import chromium, needs_chromium
from tests.worker.web_server import serving
from worker.web.app import create_app
from worker.web.services import SYNC_SEATS, InlineDispatcher, WebServices

SUPPORT = "support-browser-token"
ADMIN = "admin-browser-token"
NOW = datetime(2026, 2, 1, 1, tzinfo=UTC)
pytestmark = needs_chromium


class StubGateway:
    """Serves fixed invoices; reconciliation only reads them here."""

    def __init__(self, invoices: dict[str, StripeInvoice]) -> None:
        self.invoices = invoices

    def retrieve_invoice(self, stripe_invoice_id: str) -> StripeInvoice:
        return self.invoices[stripe_invoice_id]

    def list_invoices(self, *, stripe_customer_id: str | None = None) -> list[StripeInvoice]:
        """The customer's invoices (a balance applied is checked against the earlier ones)."""
        return [i for i in self.invoices.values() if i.stripe_customer_id == stripe_customer_id]


def _invoice(invoice_id: str, customer: str, lines: list[tuple[str, int]]) -> StripeInvoice:
    return StripeInvoice(
        stripe_invoice_id=invoice_id,
        stripe_customer_id=customer,
        stripe_subscription_id=None,
        status="open",
        billing_reason="manual",
        currency="usd",
        subtotal_amount=sum(a for _, a in lines),
        total_amount=sum(a for _, a in lines),
        amount_due=0,
        auto_advance=True,
        period_start_at=NOW,
        period_end_at=NOW,
        created_at=NOW,
        lines=tuple(
            StripeInvoiceLine(
                stripe_invoice_line_id=f"il_{invoice_id}_{n}",
                amount=amount,
                currency="usd",
                description=description,
                quantity_decimal=None,
                stripe_price_id=None,
                proration=False,
                stripe_subscription_item_id=None,
                stripe_invoice_item_id=f"ii_{n}",
                period_start_at=NOW,
                period_end_at=NOW,
            )
            for n, (description, amount) in enumerate(lines)
        ),
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def resyncs() -> list[str]:
    """The orgs whose seat re-sync the admin form ran."""
    return []


@pytest.fixture
def site(engine: Engine, resyncs: list[str]) -> Iterator[str]:
    with unit_of_work(engine) as session:
        for org, cus in (("org_alpha", "cus_alpha"), ("org_beta", "cus_beta")):
            session.add(
                StripeCustomerRecord(
                    org_id=org,
                    status="done",
                    idempotency_key=f"k-{org}",
                    stripe_customer_id=cus,
                    updated_at=NOW,
                )
            )
    gateway = StubGateway(
        {
            "in_alpha": _invoice("in_alpha", "cus_alpha", [("Goodwill fee", 1234)]),
            "in_beta": _invoice("in_beta", "cus_beta", []),
        }
    )
    reconciler = Reconciler(engine, gateway)  # type: ignore[arg-type]
    for invoice_id in ("in_alpha", "in_beta"):
        reconciler.reconcile_invoice(invoice_id, NOW, trigger="cli")
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_x",
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=InlineDispatcher({SYNC_SEATS: resyncs.append}),
        clock=lambda: NOW,
    )
    with serving(create_app(services=services)) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(width=1400, extra_flags=()) as driver:
        yield driver


def test_support_staff_log_in_filter_and_open_a_reconciliation(
    site: str, browser: Any, tmp_path: Path
) -> None:
    browser.get(f"{site}/reconciliations")
    assert "Log in" in browser.page_source  # refused: the login form instead of the data
    assert "in_alpha" not in browser.page_source

    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.ID, "login-button").click()
    wait = WebDriverWait(browser, 15)
    wait.until(lambda b: "not valid" in b.page_source)
    assert "not valid" in browser.find_element(By.ID, "message").text

    browser.find_element(By.ID, "token").send_keys(SUPPORT)
    browser.find_element(By.ID, "login-button").click()
    # Each click loads a new page: wait for it before reading (never a fixed sleep).
    wait.until(lambda b: b.find_elements(By.ID, "reconciliations"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#reconciliations tr.rec-row")
    assert len(rows) == 2
    assert "unexpected_in_stripe" in browser.find_element(By.ID, "counts").text

    browser.find_element(By.ID, "org").send_keys("org_alpha")
    browser.find_element(By.ID, "filter-button").click()
    wait.until(lambda b: "org=org_alpha" in b.current_url)
    wait.until(lambda b: b.find_elements(By.ID, "reconciliations"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#reconciliations tr.rec-row")
    assert len(rows) == 1
    assert "in_alpha" in rows[0].text

    browser.find_element(By.LINK_TEXT, "in_alpha").click()
    wait.until(lambda b: b.find_elements(By.ID, "rec-status"))
    assert browser.find_element(By.ID, "rec-status").text == "unexpected_in_stripe"
    line = browser.find_element(By.CSS_SELECTOR, "#lines tr.line-row")
    assert "Goodwill fee" in line.text
    assert "12.34" in line.text

    shot = tmp_path / "reconciliation.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    keep = Path("/tmp/billing-support-screenshot.png")
    keep.write_bytes(data)  # for a human look after the run


def test_an_unauthenticated_visit_to_a_reconciliation_is_refused(site: str, browser: Any) -> None:
    browser.get(f"{site}/reconciliations/1")
    assert "Log in" in browser.page_source
    assert "Goodwill" not in browser.page_source


def attack_page(target: str) -> Starlette:
    """Another site on the same host (another port): its page posts the re-sync form of the
    billing site as soon as it loads, with the visitor's cookies."""
    html = f"""<!doctype html><html><body>
<form method="post" action="{target}/admin/resync" id="attack">
<input type="hidden" name="org" value="org_alpha"><input type="hidden" name="what" value="seats">
<input type="hidden" name="back" value="/reconciliations"></form>
<script>document.getElementById("attack").submit()</script></body></html>"""

    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    return Starlette(routes=[Route("/", page)])


def _log_in(browser: Any, site: str, token: str) -> WebDriverWait[Any]:
    browser.get(f"{site}/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login-button").click()
    wait = WebDriverWait(browser, 15)
    wait.until(lambda b: b.find_elements(By.ID, "reconciliations"))
    return wait


def test_a_page_on_another_port_cannot_make_an_admin_resync(
    site: str, browser: Any, resyncs: list[str]
) -> None:
    wait = _log_in(browser, site, ADMIN)
    with serving(attack_page(site)) as attacker:
        browser.get(attacker)
        wait.until(lambda b: "cross-site request refused" in b.page_source)
    assert resyncs == []

    browser.get(f"{site}/reconciliations/1")  # the admin's own button still works
    wait.until(lambda b: b.find_elements(By.ID, "resync"))
    browser.find_element(By.CSS_SELECTOR, "#resync button[value=seats]").click()
    # The page's address is the same before and after the post: wait for the post itself.
    wait.until(lambda _b: resyncs)
    wait.until(lambda b: b.current_url.endswith("/reconciliations/1"))
    assert resyncs == ["org_alpha"]

    browser.find_element(By.ID, "logout-button").click()
    wait.until(lambda b: b.find_elements(By.ID, "login"))
    browser.get(f"{site}/reconciliations")
    assert "Log in" in browser.page_source
    assert "in_alpha" not in browser.page_source
