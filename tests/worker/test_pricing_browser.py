"""The pricing calculator in a real headless Chromium: the server-rendered quote, the live
update as the visitor types (no reload), an error beside its field, and a phone-sized screen.

Set BILLING_DOCS_SCREENSHOT=1 to also write the phone-width screenshot to docs/pricing.png
(the README shows it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.fixtures.browser import chromium, needs_chromium
from tests.worker.pricing_site import pricing_services
from tests.worker.web_server import serving
from worker.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PAGE = "/pricing?book=devtools&plan=team&interval=year&seats=10&copilot_messages=800"
pytestmark = needs_chromium


@pytest.fixture
def site() -> Iterator[str]:
    with serving(create_app(services=pricing_services())) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(width=1280, extra_flags=("--hide-scrollbars",)) as driver:
        yield driver


def text_of(browser: Any, element_id: str) -> str:
    found = browser.find_elements(By.ID, element_id)
    return str(found[0].text) if found else ""


def retype(browser: Any, element_id: str, text: str) -> None:
    field = browser.find_element(By.ID, element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)


def save_png(browser: Any, path: Path) -> bytes:
    assert browser.save_screenshot(str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    return data


def test_the_quote_updates_live_as_the_visitor_types(
    site: str, browser: Any, tmp_path: Path
) -> None:
    browser.get(site + PAGE)
    assert text_of(browser, "total") == "$96.00"  # server-rendered: $90 seats + 300 × 2¢
    assert text_of(browser, "seats-total") == "$90.00"
    browser.execute_script("window.noReload = true")  # gone if the page reloads

    retype(browser, "copilot_messages", "1200")
    wait = WebDriverWait(browser, 15)
    wait.until(lambda b: text_of(b, "total") == "$104.00")  # $90 + 700 × 2¢
    assert browser.execute_script("return window.noReload") is True
    assert "copilot_messages=1200" in browser.current_url  # the URL can be shared
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-code="copilot_messages"]')
    assert "max(0, 1,200 − 500) × $0.02 = $14.00" in row.text
    wait.until(lambda b: text_of(b, "live-status") == "Total $104.00")

    retype(browser, "runner_minutes", "1001")  # one minute over: 0.8¢ rounds to 1¢
    wait.until(lambda b: text_of(b, "total") == "$104.01")

    retype(browser, "seats", "-5")
    wait.until(lambda b: "non-negative whole number" in text_of(b, "seats-error"))
    seats = browser.find_element(By.ID, "seats")
    assert seats.get_attribute("aria-invalid") == "true"
    assert "seats-error" in (seats.get_attribute("aria-describedby") or "")
    assert text_of(browser, "total") == ""  # no quote while a field is wrong
    assert "Seats: must be a non-negative whole number" in text_of(browser, "error-summary")

    retype(browser, "seats", "3")
    wait.until(lambda b: text_of(b, "total") == "$41.01")  # $27 + $14 + 1¢
    assert browser.find_element(By.ID, "seats").get_attribute("aria-invalid") == "false"
    save_png(browser, tmp_path / "pricing.png")


def test_choosing_another_book_shows_its_plans_and_meters(site: str, browser: Any) -> None:
    browser.get(site + PAGE)
    Select(browser.find_element(By.ID, "book")).select_by_value("zenaton")
    wait = WebDriverWait(browser, 15)
    wait.until(lambda b: b.find_elements(By.ID, "execution_time"))
    assert "Showing the zenaton book" in text_of(browser, "note")
    assert not browser.find_elements(By.ID, "copilot_messages")
    Select(browser.find_element(By.ID, "plan")).select_by_value("payg")
    wait.until(lambda b: text_of(b, "total") == "$10.00")  # nothing used: the minimum
    retype(browser, "execution_time", "803520")
    wait.until(lambda b: text_of(b, "total") == "$29.02")  # seed 000: 30 % of a 31-day month


def test_the_page_fits_a_phone_screen(site: str, browser: Any, tmp_path: Path) -> None:
    browser.set_window_size(390, 844)
    browser.get(site + PAGE)
    width = browser.execute_script("return window.innerWidth")
    assert width <= 400
    # The quote table becomes one card per line: nothing scrolls sideways.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    label = browser.find_element(By.CSS_SELECTOR, 'tr[data-code="seats"] td.num')
    assert label.value_of_css_property("display") == "flex"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(390, height)
    data = save_png(browser, tmp_path / "pricing-phone.png")
    if os.environ.get("BILLING_DOCS_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "pricing.png").write_bytes(data)
