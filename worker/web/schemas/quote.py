"""The body `POST /api/quote` takes, as the pydantic model that validates it, and its answers.

Each field is checked by the parser `billing quote` and the pricing page use
(billing.pricing.quote_input), so the API refuses with the same words; an error's `field` is the
pydantic location joined with dots (`usage.copilot_messages`). What depends on the chosen book
beyond its name (the plan, the contract, which meters the plan bills) is checked by
`price_request` afterwards, as for the CLI. The book names come in the validation context.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from billing.core.meters import Interval, Meter
from billing.pricing.quote_input import (
    MAX_QUANTITY,
    MAX_SEAT_COUNT,
    USAGE,
    given,
    parse_quantity,
    parse_seat_count,
)

ERROR_TYPE = "quote_input"  # the pydantic error type of every message written here


def problem(message: str) -> PydanticCustomError:
    # The message goes in the context: a template would read braces in it as placeholders.
    return PydanticCustomError(ERROR_TYPE, "{message}", {"message": message})


def _book(value: object, info: ValidationInfo) -> str | None:
    books: Mapping[str, object] = (info.context or {}).get("books", {})
    if value is None:
        return None
    if not isinstance(value, str) or value not in books:
        raise problem(f"unknown price book {value!r} (books: {', '.join(books)})")
    return value


def _interval(value: object) -> Interval | None:
    if not given(value):
        return None
    if not isinstance(value, str) or value not in set(Interval):
        raise problem("must be month or year")
    return Interval(value)


def _seats(value: object) -> int | None:
    if not given(value):
        return None
    try:
        return parse_seat_count(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _usage_object(value: object) -> object:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise problem("must be an object of METER: QUANTITY")
    return value


def _quantity(value: object) -> Decimal | None:
    if not given(value):
        return None  # an empty quantity is priced at zero
    try:
        return parse_quantity(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _schema(**schema: Any) -> WithJsonSchema:
    return WithJsonSchema(schema)


_OPTIONAL_TEXT = {"type": ["string", "null"]}
_QUANTITY_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_QUANTITY)},
        {"type": "string", "pattern": r"^\s*(0|[1-9][0-9]{0,14})(\.[0-9]{1,12})?\s*$"},
        {"type": "null"},
    ],
    "description": "Non-negative, at most 12 decimal places; a number or a decimal string.",
}


class QuoteBody(BaseModel):
    """Every field is optional: the configured book, its default plan (or the contract's), the
    plan's first interval, no seats, no usage."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "book": "devtools",
                    "plan": "team",
                    "interval": "year",
                    "seats": 10,
                    "usage": {"copilot_messages": 800, "runner_minutes": "120.5"},
                }
            ]
        },
    )

    book: Annotated[
        object,
        PlainValidator(_book),
        _schema(type=["string", "null"], description="A price book's name (default: configured)."),
    ] = None
    plan: Annotated[
        object,
        _schema(**_OPTIONAL_TEXT, description="A plan of the book (checked against it)."),
    ] = None
    interval: Annotated[
        object,
        PlainValidator(_interval),
        _schema(enum=[*(i.value for i in Interval), None], description="The seats' term."),
    ] = None
    seats: Annotated[
        object,
        PlainValidator(_seats),
        _schema(
            anyOf=[
                {"type": "integer", "minimum": 0, "maximum": MAX_SEAT_COUNT},
                {"type": "string", "pattern": r"^\s*[0-9]{1,8}\s*$"},
                {"type": "null"},
            ],
            description=f"A whole number of seats, at most {MAX_SEAT_COUNT:,}.",
        ),
    ] = None
    usage: Annotated[
        dict[str, Annotated[object, PlainValidator(_quantity)]],
        BeforeValidator(_usage_object),
        _schema(
            type=["object", "null"],
            propertyNames={"enum": [meter.value for meter in Meter]},
            additionalProperties=_QUANTITY_SCHEMA,
            description="One month's quantity per meter code (meters the plan bills).",
        ),
    ] = Field(default_factory=dict)
    contract: Annotated[
        object,
        _schema(
            **_OPTIONAL_TEXT,
            description="An org id: its negotiated terms (needs a support or admin token).",
        ),
    ] = None


FIELDS = tuple(QuoteBody.model_fields)


def field_problems(error: ValidationError) -> list[tuple[str | None, str]]:
    """Each problem as (field, message): `usage.METER` for a quantity, today's words."""
    problems: list[tuple[str | None, str]] = []
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or None
        if item["type"] == "extra_forbidden":
            problems.append((name, f"unknown field (fields: {', '.join(FIELDS)})"))
        else:
            problems.append((name, str(item["msg"])))
    return problems


class QuoteLine(BaseModel):
    code: str = Field(description="`seats`, a meter code, or `minimum` (the top-up).")
    quantity: int | str = Field(description="A whole number, or an exact decimal string.")
    included: int | str
    billable: int | str
    unit_amount_decimal: str = Field(description="Minor units per unit, an exact decimal.")
    amount: int = Field(description="Minor units (cents).")


class QuoteReply(BaseModel):
    """Exactly what `billing quote --json` prints (billing.pricing.quote_json)."""

    book: str
    plan: str
    interval: Interval
    currency: str
    lines: list[QuoteLine]
    total: int = Field(description="Minor units (cents).")


class FieldError(BaseModel):
    field: str | None = Field(description=f"`book`, `plan`, `{USAGE}.METER`, ... or null.")
    message: str


class QuoteErrors(BaseModel):
    errors: list[FieldError]
