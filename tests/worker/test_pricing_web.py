"""The public calculator over HTTP: the page (server-rendered, errors beside their fields), the
formulas page, `POST /api/quote` (the CLI's JSON, 422 naming the field) and the rate limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from billing.pricing.book import load_book
from billing.pricing.formulas import formulas_html, formulas_markdown
from tests.worker.pricing_site import (
    SUPPORT,
    field_error,
    field_tag,
    page_formulas,
    page_lines,
    page_total,
    pricing_app,
    pricing_services,
)
from tests.worker.web_server import serving
from worker.cli import main
from worker.web.app import create_app
from worker.web.rate_limit import RateLimiter

PAGE_EXAMPLE = "/pricing?book=devtools&plan=team&interval=year&seats=10&copilot_messages=800"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with serving(pricing_app()) as url, httpx.Client(base_url=url) as http:
        yield http


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["quote", *args, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_the_app_mounts_the_public_pricing_routes() -> None:
    with serving(create_app(services=pricing_services())) as url, httpx.Client(base_url=url) as c:
        assert c.get("/pricing").status_code == 200
        assert c.get("/pricing/formulas").status_code == 200
        assert c.post("/api/quote", json={"plan": "free"}).json()["total"] == 0


def test_the_page_renders_the_quote_without_javascript(client: httpx.Client) -> None:
    response = client.get(PAGE_EXAMPLE)
    assert response.status_code == 200
    page = response.text
    assert page_total(page) == 9600
    assert page_lines(page) == {
        "seats": 9000,
        "copilot_messages": 600,
        "runner_minutes": 0,
        "iac_resource_hours": 0,
    }
    assert page_formulas(page)["copilot_messages"] == "max(0, 800 − 500) × $0.02 = $6.00"
    assert page_formulas(page)["seats"] == "10 seats × $9.00 per seat per year = $90.00"
    assert '<dd id="seats-total">$90.00</dd>' in page
    assert '<dd id="usage-total">$6.00</dd>' in page
    assert "<caption" in page
    assert "Team · devtools book · seats per year, usage per month" in page
    # Inputs keep what was asked, each with its label.
    assert 'value="800"' in field_tag(page, "copilot_messages")
    for input_id in ("book", "plan", "interval", "seats", "copilot_messages", "runner_minutes"):
        assert f'<label for="{input_id}">' in page
        assert 'aria-invalid="false"' in field_tag(page, input_id)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width: 40rem)" in page
    assert "<script src" not in page  # no external script, no CDN
    assert "http" not in page.split("<script>", 1)[1]


def test_the_minimum_and_the_zenaton_form(client: httpx.Client) -> None:
    page = client.get("/pricing?book=zenaton&plan=payg&execution_time=3600").text
    assert page_lines(page) == {"execution_time": 13, "minimum": 987}
    assert page_total(page) == 1000
    assert "Usage, per month (minimum $10.00)" in page
    assert 'id="seats"' not in page  # the book prices no seats: no seat or term inputs


@pytest.mark.parametrize(
    ("query", "input_id", "message"),
    [
        ("plan=team&seats=-1", "seats", "must be a non-negative whole number"),
        ("plan=team&seats=2.5", "seats", "must be a non-negative whole number"),
        ("plan=free&copilot_messages=abc", "copilot_messages", "'abc' is not a number"),
        ("plan=free&runner_minutes=-5", "runner_minutes", "must not be negative"),
        ("plan=gold", "plan", "unknown plan 'gold' in book 'devtools'"),
        ("plan=team&interval=week", "interval", "must be month or year"),
        ("plan=team&interval=month", "interval", "is not offered with interval 'month'"),
        ("book=nowhere", "book", "unknown price book 'nowhere' (books: devtools, zenaton)"),
        ("book=/etc/passwd", "book", "unknown price book '/etc/passwd'"),
    ],
)
def test_a_bad_value_is_explained_beside_its_field(
    client: httpx.Client, query: str, input_id: str, message: str
) -> None:
    response = client.get(f"/pricing?{query}")
    assert response.status_code == 400
    page = response.text
    tag = field_tag(page, input_id)
    assert 'aria-invalid="true"' in tag
    assert f'{input_id}-error"' in tag.split("aria-describedby=", 1)[1]
    assert message in field_error(page, input_id)
    assert 'id="error-summary" role="alert"><h2>' in page
    assert f'<a href="#{input_id}">' in page
    assert page_total(page) is None


def test_a_meter_the_book_does_not_bill_is_refused_in_the_summary(client: httpx.Client) -> None:
    response = client.get("/pricing?book=devtools&plan=free&execution_time=5")
    assert response.status_code == 400
    assert "usage.execution_time: meter &#39;execution_time&#39; is not billed" in response.text


def test_switching_the_book_starts_from_its_defaults(client: httpx.Client) -> None:
    response = client.get("/pricing?book=zenaton&form_book=devtools&plan=team&copilot_messages=9")
    assert response.status_code == 200
    assert "Showing the zenaton book" in response.text
    assert page_lines(response.text) == {"execution_time": 0}


def test_the_formulas_page_is_the_generated_document(client: httpx.Client) -> None:
    for name in ("devtools", "zenaton"):
        page = client.get(f"/pricing/formulas?book={name}")
        assert page.status_code == 200
        assert formulas_html(load_book(name)) in page.text
        markdown = client.get(f"/pricing/formulas?book={name}&format=markdown")
        assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"
        assert markdown.text == formulas_markdown(load_book(name))
    assert "org_enterprise_example" not in client.get("/pricing/formulas").text
    missing = client.get("/pricing/formulas?book=nowhere")
    assert missing.status_code == 404


# --------------------------------------------------------------------------- the API


@pytest.mark.parametrize(
    ("body", "cli_args"),
    [
        (
            {
                "book": "devtools",
                "plan": "team",
                "interval": "year",
                "seats": 10,
                "usage": {"copilot_messages": 800},
            },
            [
                "--book",
                "devtools",
                "--plan",
                "team",
                "--interval",
                "year",
                "--seats",
                "10",
                "--usage",
                "copilot_messages=800",
            ],
        ),
        (
            {"plan": "free", "usage": {"runner_minutes": 1001.5}},
            ["--book", "devtools", "--plan", "free", "--usage", "runner_minutes=1001.5"],
        ),
        (
            {"book": "zenaton", "plan": "payg", "usage": {"execution_time": "3600.5"}},
            ["--book", "zenaton", "--plan", "payg", "--usage", "execution_time=3600.5"],
        ),
    ],
)
def test_the_api_answers_what_the_cli_prints(
    client: httpx.Client,
    capsys: pytest.CaptureFixture[str],
    body: dict[str, Any],
    cli_args: list[str],
) -> None:
    response = client.post("/api/quote", json=body)
    assert response.status_code == 200
    assert response.json() == cli_json(capsys, *cli_args)


def test_a_fractional_json_number_is_read_exactly(client: httpx.Client) -> None:
    body = b'{"plan": "free", "usage": {"runner_minutes": 1001.1}}'
    line = client.post("/api/quote", content=body).json()["lines"][2]
    # 901.1 × 0.8 = 720.88 cents (a float would not carry 1001.1 exactly)
    assert line == {
        "code": "runner_minutes",
        "quantity": "1001.1",
        "included": 100,
        "billable": "901.1",
        "unit_amount_decimal": "0.8",
        "amount": 721,
    }


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"usage": {"copilot_messages": -1}}, "usage.copilot_messages", "must not be negative"),
        ({"usage": {"copilot_messages": "x"}}, "usage.copilot_messages", "'x' is not a number"),
        ({"usage": {"copilot_messages": True}}, "usage.copilot_messages", "is not a number"),
        ({"usage": {"tokens": 1}}, "usage.tokens", "unknown meter 'tokens'"),
        ({"usage": {"execution_time": 1}}, "usage.execution_time", "is not billed on plan"),
        ({"usage": []}, "usage", "must be an object of METER: QUANTITY"),
        ({"seats": 2.5}, "seats", "must be a non-negative whole number"),
        ({"seats": "10"}, None, None),  # a string of digits is a seat count, as on the CLI
        ({"plan": "team", "seats": -1}, "seats", "must be a non-negative whole number"),
        ({"plan": "gold"}, "plan", "unknown plan 'gold'"),
        ({"plan": "team", "interval": "month"}, "interval", "not offered with interval"),
        ({"interval": 12}, "interval", "must be month or year"),
        ({"book": "nowhere"}, "book", "unknown price book 'nowhere'"),
        ({"book": "../../etc/passwd"}, "book", "unknown price book"),
        ({"price": 3}, "price", "unknown field (fields: book, plan, interval, seats, usage"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str | None, message: str | None
) -> None:
    response = client.post("/api/quote", json=body)
    if field is None:
        assert response.status_code == 200
        return
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == [field]
    assert message is not None
    assert message in errors[0]["message"]


@pytest.mark.parametrize(
    "body", [b"[]", b"nope", b'"text"', b'{"usage": NaN}', b"\xff", b"[" * 10_000, b"9" * 5000]
)
def test_a_body_that_is_not_a_json_object_is_a_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/api/quote", content=body)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"field": None, "message": "the body must be a JSON object"}]
    }


def test_a_huge_body_is_refused_before_it_is_read_whole(client: httpx.Client) -> None:
    response = client.post("/api/quote", content=b"{" + b" " * 20_000 + b"}")
    assert response.status_code == 413


def test_a_contract_is_quoted_only_with_a_token(
    client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"plan": "enterprise", "contract": "org_enterprise_example", "seats": 4}
    refused = client.post("/api/quote", json=body)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["field"] == "contract"
    wrong = client.post("/api/quote", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    allowed = client.post("/api/quote", json=body, headers={"Authorization": f"Bearer {SUPPORT}"})
    expected = cli_json(
        capsys,
        "--book",
        "devtools",
        "--plan",
        "enterprise",
        "--contract",
        "org_enterprise_example",
        "--seats",
        "4",
    )
    assert allowed.json() == expected
    assert expected["total"] == 53000  # 4 × $7.50 + the $500 minimum
    # The page takes no contract: the list price of Enterprise.
    page = client.get("/pricing?plan=enterprise&seats=4&contract=org_enterprise_example").text
    assert page_total(page) == 3600


def test_the_rate_limit_is_shared_by_the_page_and_the_api() -> None:
    limiter = RateLimiter(capacity=2, refill_per_second=1 / 3600)
    with serving(pricing_app(limiter)) as url, httpx.Client(base_url=url) as client:
        assert client.post("/api/quote", json={}).status_code == 200
        assert client.get("/pricing").status_code == 200
        refused = client.post("/api/quote", json={})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3600"
        message = refused.json()["errors"][0]["message"]
        assert message.startswith("rate limit: 2 requests at once, then 0.000277778 per second")
        page = client.get("/pricing")
        assert page.status_code == 429
        assert "Try again in 3600 s" in page.text
        assert client.get("/pricing/formulas").status_code == 200  # the document is not limited
