"""`POST /api/quote`: the pricing calculator as JSON, public and rate-limited.

Body: `{"book", "plan", "interval", "seats", "usage": {METER: QUANTITY}}`, every field optional
(the configured book, its default plan, the plan's first interval, no seats, no usage). Answers
200 with exactly the object `billing quote --json` prints for the same inputs
(billing.pricing.quote_json), priced by the same engine. Quantities are JSON numbers (read as
exact decimals, never floats) or decimal strings; seats a whole number.

The body is validated by the pydantic model that GET /openapi.json documents
(worker/web/schemas/quote.py QuoteBody); its validators are billing.pricing.quote_input's
parsers, so the words are the CLI's. Errors are `{"errors": [{"field": NAME | null, "message":
TEXT}]}`: 400 for a body that is not a JSON object (or over MAX_BODY_BYTES: 413), 422 naming each
bad field (`usage.METER` for a quantity), 429 with `Retry-After` past the rate limit
(worker/web/pricing.py QUOTE_LIMITER). `"contract": ORG_ID` quotes an org's negotiated terms and
needs a support or admin bearer token (401 without): contracts are not public.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.pricing.quote_input import QuoteInputError, QuoteRequest, price_request
from billing.pricing.quote_json import quote_json
from worker.web.auth import bearer_role
from worker.web.bodies import BodyTooLarge, read_limited
from worker.web.common import EscapedJSONResponse, services_of
from worker.web.pricing import QUOTE_LIMITER, books_of
from worker.web.rate_limit import RateLimiter, client_address
from worker.web.schemas.quote import QuoteBody, field_problems

MAX_BODY_BYTES = 16 * 1024


def errors(status: int, *problems: tuple[str | None, str], **headers: str) -> JSONResponse:
    body = {"errors": [{"field": name, "message": message} for name, message in problems]}
    return EscapedJSONResponse(body, status_code=status, headers=headers or None)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


async def read_body(request: Request) -> dict[str, Any] | Response:
    """The body as a JSON object (numbers with a fraction as Decimal), or the error to send."""
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return errors(413, (None, str(exc)))
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        body = None
    if not isinstance(body, dict):
        return errors(400, (None, "the body must be a JSON object"))
    return body


def make_routes(limiter: RateLimiter) -> list[Route]:
    async def quote_endpoint(request: Request) -> Response:
        if wait := limiter.take(client_address(request)):
            message = f"rate limit: {limiter.describe()}; try again in {wait} s"
            return errors(429, (None, message), **{"Retry-After": str(wait)})
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        if body.get("contract") is not None and bearer_role(request, services_of(request)) is None:
            message = "a contract's terms are not public: send a support or admin bearer token"
            return errors(401, ("contract", message))
        books, default = books_of(request)
        try:
            valid = QuoteBody.model_validate(body, context={"books": books})
        except ValidationError as exc:
            return errors(422, *field_problems(exc))
        book = books[valid.book] if isinstance(valid.book, str) else default
        inputs = QuoteRequest(valid.plan, valid.interval, valid.seats, valid.usage, valid.contract)
        try:
            priced = price_request(book, inputs)
        except QuoteInputError as exc:
            return errors(422, *((p.field, p.message) for p in exc.problems))
        terms = priced.terms
        return JSONResponse(quote_json(book.name, terms.plan, terms.interval, priced.charge))

    return [Route("/api/quote", quote_endpoint, methods=["POST"])]


routes = make_routes(QUOTE_LIMITER)
