"""The public pricing routes served on their own, with a rate limit of the test's choosing, and
readers of what the calculator page shows."""

from __future__ import annotations

import html
import re

from sqlalchemy import create_engine
from starlette.applications import Starlette

from worker.web import pricing, quote_api
from worker.web.rate_limit import RateLimiter
from worker.web.services import InlineDispatcher, WebServices

SUPPORT = "pricing-support-token"


def pricing_services() -> WebServices:
    """The pricing routes read only the configured book and the tokens (never the database)."""
    return WebServices(
        engine=create_engine("sqlite://"),
        webhook_secret="whsec_unused",
        support_tokens=(SUPPORT,),
        admin_tokens=(),
        dispatcher=InlineDispatcher({}),
        default_book="devtools",
    )


def pricing_app(limiter: RateLimiter | None = None) -> Starlette:
    """`/pricing`, `/pricing/formulas` and `/api/quote` sharing `limiter` (default: no limit
    a test can reach)."""
    if limiter is None:
        limiter = RateLimiter(capacity=1_000_000, refill_per_second=1_000_000)
    app = Starlette(routes=[*pricing.make_routes(limiter), *quote_api.make_routes(limiter)])
    app.state.services = pricing_services()
    return app


def page_total(page: str) -> int | None:
    found = re.search(r'id="total" data-amount="(\d+)"', page)
    return None if found is None else int(found.group(1))


def page_lines(page: str) -> dict[str, int]:
    """Each quote line's amount in cents, by code, as the page's table carries it."""
    return {
        code: int(amount)
        for code, amount in re.findall(r'<tr data-code="([^"]+)" data-amount="(\d+)">', page)
    }


def page_formulas(page: str) -> dict[str, str]:
    rows = re.findall(
        r'<tr data-code="([^"]+)".*?<td class="formula"[^>]*><code>(.*?)</code>', page
    )
    return {code: html.unescape(formula) for code, formula in rows}


def field_tag(page: str, input_id: str) -> str:
    found = re.search(rf'<(?:input|select)[^>]*\bid="{input_id}"[^>]*>', page)
    assert found is not None, f"no input {input_id!r} on the page"
    return found.group(0)


def field_error(page: str, input_id: str) -> str:
    found = re.search(rf'<p class="field-error" id="{input_id}-error">(.*?)</p>', page)
    assert found is not None, f"no error element for {input_id!r}"
    return html.unescape(found.group(1))
