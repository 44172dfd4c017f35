"""The page, the API, the CLI and the formula document agree with each other and with billing
(the expected invoice of billing.ledger) on every seed example and on the books' edge cases."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from billing.core.meters import Meter
from billing.core.money import format_minor_units
from billing.core.periods import month_period
from billing.ledger.expected_invoice import OrgLedger, PlanSegment, compute_expected_invoice
from billing.pricing.book import load_book
from billing.pricing.book_cache import BookCache
from billing.pricing.formulas import example_usage, formulas_markdown
from billing.pricing.proration import SeatChange
from tests.worker.pricing_site import SUPPORT, page_formulas, page_lines, page_total, pricing_app
from tests.worker.web_server import serving
from worker.cli import main

PERIOD = month_period("2026-03")


@dataclass(frozen=True)
class Case:
    """One quote, and the amounts (cents) the business documents or the rules say it costs."""

    book: str
    plan: str
    usage: dict[str, str] = field(default_factory=dict)
    interval: str | None = None
    seats: int | None = None
    amounts: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def cli_args(self) -> list[str]:
        args = ["--book", self.book, "--plan", self.plan]
        args += ["--interval", self.interval] if self.interval else []
        args += ["--seats", str(self.seats)] if self.seats is not None else []
        for code, quantity in self.usage.items():
            args += ["--usage", f"{code}={quantity}"]
        return args

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"book": self.book, "plan": self.plan, "usage": self.usage}
        if self.interval:
            body["interval"] = self.interval
        if self.seats is not None:
            body["seats"] = self.seats
        return body

    def query(self) -> str:
        params = {"book": self.book, "plan": self.plan, **self.usage}
        params |= {"interval": self.interval} if self.interval else {}
        params |= {"seats": str(self.seats)} if self.seats is not None else {}
        return urlencode(params)


D, Z = "devtools", "zenaton"
M, R, H, X = "copilot_messages", "runner_minutes", "iac_resource_hours", "execution_time"
CASES = {
    # The seeds' own examples (seed 002, and seed 000 for zenaton).
    "seed: 80 messages on Free": Case(D, "free", {M: "80"}, amounts={M: 60}, total=60),
    "seed: 120 minutes on Free": Case(D, "free", {R: "120"}, amounts={R: 16}, total=16),
    "seed: 1.6M resource-hours on Team": Case(
        D, "team", {H: "1600000"}, amounts={H: 1000}, total=1000
    ),
    "seed: 10 Team seats a year": Case(D, "team", {}, "year", 10, {"seats": 9000}, 9000),
    "seed: zenaton 30 % of a 31-day month": Case(
        Z, "payg", {X: "803520"}, amounts={X: 2902}, total=2902
    ),
    # Allowance edges and the one rounding, half up.
    "exactly at the message allowance": Case(D, "free", {M: "50"}, total=0),
    "one message over": Case(D, "free", {M: "51"}, amounts={M: 2}, total=2),
    "one Team minute over: 0.8¢ → 1¢": Case(D, "team", {R: "1001"}, amounts={R: 1}, total=1),
    "1,001 Free minutes: 720.8¢ → 721¢": Case(D, "free", {R: "1001"}, amounts={R: 721}, total=721),
    "0.49¢ of resource-hours → 0¢": Case(D, "free", {H: "150049"}, total=0),
    "0.5¢ of resource-hours → 1¢": Case(D, "free", {H: "150050"}, amounts={H: 1}, total=1),
    "the page's example": Case(D, "team", {M: "800"}, "year", 10, {"seats": 9000, M: 600}, 9600),
    # The zenaton minimum: a top-up line up to $10.
    "zenaton minimum, one hour used": Case(
        Z, "payg", {X: "3600"}, amounts={X: 13, "minimum": 987}, total=1000
    ),
    "zenaton minimum, nothing used": Case(Z, "payg", amounts={"minimum": 1000}, total=1000),
    "zenaton above the minimum": Case(Z, "payg", {X: "360000"}, amounts={X: 1300}, total=1300),
    "a fractional quantity": Case(
        Z, "payg", {X: "3600.5"}, amounts={X: 13, "minimum": 987}, total=1000
    ),
}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with serving(pricing_app()) as url, httpx.Client(base_url=url) as http:
        yield http


def cli_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    assert main(["quote", *args, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def amounts(quote: dict[str, Any]) -> dict[str, int]:
    return {line["code"]: line["amount"] for line in quote["lines"]}


def billed(
    book: str, plan: str, interval: str, org_id: str, seats: int | None, usage: dict[str, str]
) -> dict[str, int]:
    """What billing expects on the invoice of a month whose first day starts the org's term,
    for these seats and this month's usage: the non-zero lines, by code."""
    quantities = {Meter(code): Decimal(quantity) for code, quantity in usage.items()}
    resource_hours = quantities.get(Meter.IAC_RESOURCE_HOURS, Decimal(0))
    ledger = OrgLedger(
        org_id=org_id,
        plan_segments=[PlanSegment(PERIOD.period_start, book, plan, interval)],
        seat_changes=[SeatChange(PERIOD.period_start, seats)] if seats else [],
        usage=quantities,
        resource_hours=int(resource_hours),
    )
    invoice = compute_expected_invoice(ledger, PERIOD, BookCache())
    assert invoice is not None
    return {line.code: line.amount for line in invoice.lines if line.amount}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_surface_and_billing_agree(
    client: httpx.Client, capsys: pytest.CaptureFixture[str], case: Case
) -> None:
    cli = cli_json(capsys, case.cli_args())
    assert cli["total"] == case.total
    assert amounts(cli).items() >= case.amounts.items()
    api = client.post("/api/quote", json=case.body())
    assert api.status_code == 200
    assert api.json() == cli
    page = client.get(f"/pricing?{case.query()}")
    assert page.status_code == 200
    assert page_lines(page.text) == amounts(cli)
    assert page_total(page.text) == cli["total"]
    for code, formula in page_formulas(page.text).items():
        assert formula.endswith(format_minor_units(amounts(cli)[code], "usd"))
    expected = billed(case.book, case.plan, cli["interval"], "org_quote", case.seats, case.usage)
    assert expected == {code: amount for code, amount in amounts(cli).items() if amount}


def example_rows(markdown: str) -> dict[str, tuple[str, str]]:
    section = markdown.split("## Examples from the business documents", 1)[1]
    section = section.split("\n## ", maxsplit=1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {title.strip(): (formula.strip(), amount.strip()) for title, formula, amount in rows[2:]}


@pytest.mark.parametrize("book_name", ["devtools", "zenaton"])
def test_the_documents_examples_are_what_the_page_and_cli_say(
    client: httpx.Client, capsys: pytest.CaptureFixture[str], book_name: str
) -> None:
    book = load_book(book_name)
    rows = example_rows(client.get(f"/pricing/formulas?book={book_name}&format=markdown").text)
    assert len(rows) == len(book.examples) > 0
    for example in book.examples:
        usage = {meter.value: str(quantity) for meter, quantity in example.usage.items()}
        interval = example.interval.value if example.interval else None
        case = Case(book_name, example.plan, usage, interval, example.seat_count)
        cli = cli_json(capsys, case.cli_args())
        formula, amount = rows[example.title]
        assert amount == format_minor_units(cli["total"], book.currency)
        page = client.get(f"/pricing?{case.query()}").text
        documented = re.findall(r"`([^`]+)`", formula)
        assert documented
        assert set(documented) <= set(page_formulas(page).values())


def worked_example_total(markdown: str, caption: str) -> str:
    table = markdown.split(f"*{caption}*", 1)[1].split("\n\n", 2)[1]
    total = next(line for line in table.splitlines() if line.startswith("| Total |"))
    return total.strip("| ").split(" | ")[-1].strip("| ")


@pytest.mark.parametrize("book_name", ["devtools", "zenaton"])
def test_each_plans_worked_example_is_the_apis_quote(client: httpx.Client, book_name: str) -> None:
    book = load_book(book_name)
    markdown = formulas_markdown(book)
    for plan in book.plans:
        terms = book.terms(plan, book.plan_intervals(plan)[0])
        body = {
            "book": book_name,
            "plan": plan,
            "interval": terms.interval.value,
            "usage": {meter.value: str(q) for meter, q in example_usage(terms).items()},
        }
        if terms.has_seats:
            body["seats"] = 10
        quote = client.post("/api/quote", json=body).json()
        caption = f"{book.plan_display_name(plan)}: worked example"
        assert worked_example_total(markdown, caption) == format_minor_units(quote["total"], "usd")


def test_a_contract_org_agrees_on_the_cli_api_document_and_billing(
    client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    org = "org_enterprise_example"
    book = load_book("devtools")
    terms = book.terms("enterprise", None, org)
    usage = {meter.value: str(q) for meter, q in example_usage(terms).items()}
    case = Case("devtools", "enterprise", usage, "year", 10)
    cli = cli_json(capsys, [*case.cli_args(), "--contract", org])
    api = client.post(
        "/api/quote",
        json={**case.body(), "contract": org},
        headers={"Authorization": f"Bearer {SUPPORT}"},
    )
    assert api.json() == cli
    # 10 × $7.50; 4,000 messages × 1.5¢; 2,000 minutes × 0.6¢ (graduated); 300,000 × 0.01¢;
    # usage $102.00 under the $500 minimum: a $398.00 top-up.
    assert amounts(cli) == {
        "seats": 7500,
        "copilot_messages": 6000,
        "runner_minutes": 1200,
        "iac_resource_hours": 3000,
        "minimum": 39800,
    }
    document = formulas_markdown(book, contracts=True)
    assert worked_example_total(document, f"{org}: worked example") == "$575.00"
    assert billed("devtools", "enterprise", "year", org, 10, usage) == amounts(cli)
