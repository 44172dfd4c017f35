"""The support console in headless Chromium (issue 18): one search from an invoice number to the
org's page, its usage charts, an explained proration, and an admin re-sync after confirming.
Screenshots are kept in /tmp/billing-support-console-*.png for a human look."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.browser import chromium, needs_chromium
from tests.worker.support_world import ADMIN, Site, build, site

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("support-browser-world")
    with site(workdir, build(workdir)) as served:
        yield served


def _shot(browser: Any, name: str) -> None:
    path = Path(f"/tmp/billing-support-console-{name}.png")
    assert browser.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG")


def test_from_an_invoice_number_to_the_org_page_and_an_explained_proration(web: Site) -> None:
    org = web.api("/api/orgs/acme").json()
    number = next(i["number"] for i in org["invoices"] if i["stripe_total_amount"] == 9570)
    with chromium(width=1400, height=1600) as browser:
        wait = WebDriverWait(browser, 15)
        browser.get(f"{web.url}/login")
        browser.find_element(By.ID, "token").send_keys(ADMIN)
        browser.find_element(By.ID, "login-button").click()
        wait.until(lambda b: b.find_elements(By.ID, "reconciliations"))

        browser.find_element(By.ID, "q").send_keys(number)
        browser.find_element(By.ID, "filter-button").click()
        wait.until(lambda b: "q=" in b.current_url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#reconciliations tr.rec-row")
        assert len(rows) == 1
        rows[0].find_element(By.CSS_SELECTOR, "a.org-link").click()
        wait.until(lambda b: b.find_elements(By.ID, "org-title"))
        assert browser.find_element(By.ID, "org-title").text == "Org acme"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#seat-timeline tr.seat-row")) == 4
        bars = browser.find_elements(By.CSS_SELECTOR, "#chart-iac_resource_hours svg rect.bar")
        assert len(bars) > 30  # a bar a day over the last and the current period
        _shot(browser, "org")

        link = next(
            a for a in browser.find_elements(By.CSS_SELECTOR, "#invoices a") if a.text == number
        )
        link.click()
        wait.until(lambda b: b.find_elements(By.ID, "explain-seat_proration"))
        section = browser.find_element(By.ID, "explain-seat_proration")
        assert "3 seat changes (16 → 18 → 21 → 23, +7 seats in all)" in section.text
        assert "+2 seats on Jan 21 2027 14:05 UTC: 2 × $9.00 × 344 d 9 h 55 m / 365 d" in (
            section.text
        )
        _shot(browser, "proration")

        browser.get(f"{web.url}/orgs/acme")
        wait.until(lambda b: b.find_elements(By.ID, "resync"))
        browser.find_element(By.CSS_SELECTOR, "#resync button[value=seats]").click()
        wait.until(expected_conditions.alert_is_present())
        alert = browser.switch_to.alert
        assert "Re-sync seats of acme" in alert.text
        alert.accept()
        wait.until(lambda b: b.current_url.endswith("/orgs/acme"))
        wait.until(lambda b: web.resyncs == ["acme"])
