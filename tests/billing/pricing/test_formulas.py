"""The formula document and each line's formula: generated from the book, every amount the
engine's (seed examples, allowance edges, half-cent rounding, minimums, graduated contracts)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.core.meters import Meter
from billing.core.periods import term_period
from billing.pricing.book import PriceBook, load_book, parse_book
from billing.pricing.charge import quote
from billing.pricing.document import Heading, Paragraph, Table, to_html, to_markdown
from billing.pricing.formula_text import line_formula, quote_rows
from billing.pricing.formulas import formulas_document, formulas_html, formulas_markdown
from billing.pricing.proration import prorated_amount

M = Meter.COPILOT_MESSAGES
R = Meter.RUNNER_MINUTES
H = Meter.IAC_RESOURCE_HOURS
X = Meter.EXECUTION_TIME


@pytest.mark.parametrize(
    ("book_name", "plan", "meter", "quantity", "formula"),
    [
        ("devtools", "free", M, "80", "max(0, 80 − 50) × $0.02 = $0.60"),
        ("devtools", "free", R, "120", "max(0, 120 − 100) × $0.008 = $0.16"),
        (
            "devtools",
            "team",
            H,
            "1600000",
            "max(0, 1,600,000 − 1,500,000) × $0.0001 = $10.00",
        ),
        # Allowance edges: at it nothing is due; one over is one unit's price, rounded once.
        ("devtools", "free", M, "50", "max(0, 50 − 50) × $0.02 = $0.00"),
        ("devtools", "free", M, "51", "max(0, 51 − 50) × $0.02 = $0.02"),
        ("devtools", "team", R, "1001", "max(0, 1,001 − 1,000) × $0.008 = $0.008 → $0.01"),
        ("devtools", "free", R, "1001", "max(0, 1,001 − 100) × $0.008 = $7.208 → $7.21"),
        ("devtools", "free", H, "150049", "max(0, 150,049 − 150,000) × $0.0001 = $0.0049 → $0.00"),
        ("devtools", "free", H, "150050", "max(0, 150,050 − 150,000) × $0.0001 = $0.005 → $0.01"),
        ("zenaton", "payg", X, "803520", "803,520 × $0.13 ÷ 3,600 = $29.016 → $29.02"),
        ("zenaton", "payg", X, "3600.5", "3,600.5 × $0.13 ÷ 3,600 = $0.130018… → $0.13"),
    ],
)
def test_meter_line_formulas(
    book_name: str, plan: str, meter: Meter, quantity: str, formula: str
) -> None:
    book = load_book(book_name)
    terms = book.terms(plan)
    charge = quote(terms, None, {meter: Decimal(quantity)})
    line = charge.line(meter.value)
    assert line is not None
    text = line_formula(line, terms, book)
    assert text == formula
    # The amount at the end of the formula is the engine's rounded line amount.
    assert text.endswith(f"${line.amount // 100}.{line.amount % 100:02d}")


def test_seat_minimum_and_graduated_formulas(devtools: PriceBook, zenaton: PriceBook) -> None:
    team = devtools.terms("team", "year")
    assert line_formula(quote(team, 10, {}).lines[0], team, devtools) == (
        "10 seats × $9.00 per seat per year = $90.00"
    )
    payg = zenaton.terms("payg")
    minimum = quote(payg, None, {X: Decimal(3600)}).line("minimum")
    assert minimum is not None
    assert line_formula(minimum, payg, zenaton) == "max(0, $10.00 minimum − $0.13 usage) = $9.87"
    contract = devtools.terms("enterprise", None, "org_enterprise_example")
    runner = quote(contract, 0, {R: Decimal(120_000)}).line(R.value)
    assert runner is not None
    # 10,000 free, 90,000 at 0.6¢, 20,000 at 0.4¢ = 540 + 80 dollars
    assert line_formula(runner, contract, devtools) == (
        "10,000 minutes × $0.00 + 90,000 minutes × $0.006 + 20,000 minutes × $0.004 = $620.00"
    )
    assert runner.amount == 62000


def test_quote_rows_carry_the_engines_amounts(devtools: PriceBook) -> None:
    terms = devtools.terms("team", "year")
    charge = quote(terms, 10, {M: Decimal(800)})
    rows = quote_rows(devtools, terms, charge)
    assert [(r.code, r.amount, r.amount_text) for r in rows] == [
        ("seats", 9000, "$90.00"),
        ("copilot_messages", 600, "$6.00"),
        ("runner_minutes", 0, "$0.00"),
        ("iac_resource_hours", 0, "$0.00"),
    ]
    assert rows[1].unit_price == "$0.02 per message"
    assert rows[0].unit_price == "$9.00 per seat per year"


def examples_table(markdown: str) -> dict[str, tuple[str, str]]:
    """`Example | Formula | Amount` rows of the document, by example title."""
    section = markdown.split("## Examples from the business documents", 1)[1]
    section = section.split("\n## ", maxsplit=1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {title.strip(): (formula.strip(), amount.strip()) for title, formula, amount in rows[1:]}


@pytest.mark.parametrize(
    ("book_name", "title", "amount"),
    [
        ("devtools", "80 Copilot messages on Free (seed 002)", "$0.60"),
        ("devtools", "120 automation runner minutes on Free (seed 002)", "$0.16"),
        ("devtools", "1.6M IaC resource-hours on Team (seed 002)", "$10.00"),
        ("devtools", "10 Team seats for a year (seed 002)", "$90.00"),
        (
            "zenaton",
            "An agent busy 30 % of a 31-day month on Pay-as-you-go: 0.3 × 24 × 31 × 3,600 s "
            "(seed 000)",
            "$29.02",
        ),
    ],
)
def test_the_seed_examples_are_in_the_document(book_name: str, title: str, amount: str) -> None:
    rows = examples_table(formulas_markdown(load_book(book_name)))
    assert rows[title][1] == amount


def test_the_document_gives_each_meter_and_plan(devtools: PriceBook) -> None:
    text = formulas_markdown(devtools)
    assert "| Free | 50 | $0.02 per message | `max(0, messages − 50) × $0.02` |" in text
    assert "| Team | 1,000 | $0.008 per minute | `max(0, minutes − 1,000) × $0.008` |" in text
    assert "`max(0, resource-hours − 1,500,000) × $0.0001`" in text
    for heading in ("### Free (`free`)", "### Team (`team`)", "### Enterprise (`enterprise`)"):
        assert heading in text
    # The Team worked example: 10 seats, 600 messages, 1,200 minutes, 1.8M resource-hours.
    assert "| Total |  |  |  |  | $123.60 |  |" in text
    assert "0.08" not in text  # seed 002's typo never reaches the document (SPEC.md §9.1)


def test_the_proration_example_is_the_proration_modules(devtools: PriceBook) -> None:
    term = term_period(datetime(2026, 1, 1, tzinfo=UTC), devtools.terms("team").interval, 0)
    cents = prorated_amount(2, 900, term, datetime(2026, 7, 1, tzinfo=UTC))
    assert cents == 907  # 2 × 900 × 15,897,600 / 31,536,000 = 907.397…
    text = formulas_markdown(devtools)
    assert "`$9.00 × 2 × 15,897,600 ÷ 31,536,000 = $9.07`" in text
    assert "remainingSeconds ÷ termSeconds" in text


def test_the_minimum_section(devtools: PriceBook, zenaton: PriceBook) -> None:
    zen = formulas_markdown(zenaton)
    assert "`max(0, $10.00 minimum − $1.30 usage) = $8.70`" in zen
    assert "monthlyCharge = monthlyUsage + max(0, monthlyMinimum - monthlyUsage)" in zen
    assert "No plan of this book has a monthly minimum" in formulas_markdown(devtools)
    assert "## Seat proration" not in zen  # the zenaton book prices no seats


def test_contracts_only_when_asked(devtools: PriceBook) -> None:
    assert "org_enterprise_example" not in formulas_markdown(devtools)
    assert "org_enterprise_example" not in formulas_html(devtools)
    private = formulas_markdown(devtools, contracts=True)
    assert "### Contract `org_enterprise_example` (Enterprise)" in private
    assert "`max(0, $500.00 minimum − $102.00 usage) = $398.00`" in private


def test_markdown_and_html_hold_the_same_document(devtools: PriceBook) -> None:
    blocks = formulas_document(devtools)
    markdown, page = to_markdown(blocks), to_html(blocks)
    for block in blocks:
        if isinstance(block, Heading):
            assert block.text.replace("`", "") in re.sub(r"</?code>", "", page)
        if isinstance(block, Table):
            assert f"<caption>{block.caption}</caption>" in page.replace("&#x27;", "'")
            assert f"*{block.caption}*" in markdown
    assert page.count("<table>") == markdown.count("\n| --- ") + markdown.count("\n| ---: ")


def test_html_escapes_the_books_text() -> None:
    data: dict[str, Any] = {
        "name": "evil",
        "currency": "usd",
        "meters": {"copilot_messages": {"display_name": "<script>x</script>", "unit": "m"}},
        "plans": {
            "free": {
                "display_name": "<b>Free</b>",
                "meters": {"copilot_messages": {"unit_amount_decimal": "2"}},
            }
        },
    }
    page = formulas_html(parse_book(data, "test"))
    assert "<script>" not in page
    assert "<b>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_document_blocks_render_lists_code_and_numeric_columns() -> None:
    blocks = (
        Paragraph("a `x|y` b"),
        Table("T", ("name", "amount"), (("a|b", "$1.00"),), frozenset({1})),
    )
    assert to_markdown(blocks) == (
        "a `x|y` b\n\n*T*\n\n| name | amount |\n| --- | ---: |\n| a\\|b | $1.00 |\n"
    )
    assert '<td class="num">$1.00</td>' in to_html(blocks)
    assert "<p>a <code>x|y</code> b</p>" in to_html(blocks)
