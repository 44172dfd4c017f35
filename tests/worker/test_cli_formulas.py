"""`billing book formulas`: the generated formula document, as Markdown or a standalone HTML page,
the same document `GET /pricing/formulas` serves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from billing.pricing.book import BOOKS_DIR, load_book
from billing.pricing.formulas import formulas_html, formulas_markdown
from worker.cli import main
from worker.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("BILLING_BOOK", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["book", "formulas", *args]) == 0
    return capsys.readouterr().out


def test_markdown_of_the_default_book(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys)
    assert out == formulas_markdown(load_book("devtools"))
    assert out.startswith("# Pricing formulas: the devtools price book\n")
    for seed in ("$0.60", "$0.16", "$10.00", "$90.00"):
        assert f"| {seed} |" in out


def test_the_zenaton_book_by_name_and_by_path(capsys: pytest.CaptureFixture[str]) -> None:
    by_name = run(capsys, "--book", "zenaton")
    assert "`803,520 × $0.13 ÷ 3,600 = $29.016 → $29.02` | $29.02 |" in by_name
    assert run(capsys, "--book", str(BOOKS_DIR / "zenaton.toml")) == by_name


def test_html_is_a_standalone_page_around_the_served_fragment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run(capsys, "--format", "html")
    assert out.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in out
    assert formulas_html(load_book("devtools")) in out
    assert "<caption>Examples, each quoted by the engine</caption>" in out


def test_contracts_only_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert "org_enterprise_example" not in run(capsys)
    private = run(capsys, "--contracts")
    assert "### Contract `org_enterprise_example` (Enterprise)" in private
    assert private == formulas_markdown(load_book("devtools"), contracts=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--book", "nowhere"], "unknown price book 'nowhere'"),
        (["--format", "pdf"], "'pdf' is not one of 'markdown', 'html'"),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["book", "formulas", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
