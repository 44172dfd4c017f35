"""One pydantic model per `billing ingest` event type, describing `POST /api/usage` in the
OpenAPI document.

billing/ledger/formats.py parses events by hand (its errors name the line and the field, and a
backfill of millions of usage events must not pay for a model per line), so these models validate
nothing at run time: they are what the document says about each type. Adding an event type is
one subclass of `EventModel` with its `type` literal; it registers itself, and
tests/worker/test_openapi_events.py fails until its fields are formats.py's `_FIELDS` of that type.
"""

from __future__ import annotations

import functools
import operator
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from billing.core.meters import Meter
from billing.ledger.formats import MAX_ID_LENGTH, MAX_QUANTITY, MAX_QUANTITY_PLACES

# Non-empty, not only blanks, at most MAX_ID_LENGTH characters (formats._Fields.text).
Text = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"\S")]
# A whole number a 32-bit column holds (formats._Fields.count).
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
# ISO 8601 with an explicit offset (billing.core.periods.parse_instant refuses naive times).
Instant = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with an offset (Z or +hh:mm); a naive time is refused.",
            "examples": ["2026-01-31T23:00:00Z"],
        }
    ),
]
# A JSON number, or a decimal string such as "2.5" (no exponent), read as an exact decimal.
Quantity = Annotated[
    Decimal | str,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_QUANTITY)},
                {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,25})(\.[0-9]{1,12})?$"},
            ],
            "description": (
                f"Non-negative, less than 10^26, at most {MAX_QUANTITY_PLACES} decimal places; "
                "a JSON number or a decimal string, never rounded through a float."
            ),
        }
    ),
]


class EventModel(BaseModel):
    """What every event has: its type, its org and its instant. Subclasses register by type."""

    model_config = ConfigDict(extra="forbid")
    registry: ClassVar[dict[str, type[EventModel]]] = {}

    org: Text
    at: Instant

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        EventModel.registry[cls.event_type()] = cls

    @classmethod
    def event_type(cls) -> str:
        (name,) = get_args(cls.model_fields["type"].annotation)
        return str(name)


class OrgEvent(EventModel):
    """An org on a plan from `at` (its first line creates it; a later one changes its plan)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "org",
                    "org": "org_acme",
                    "book": "devtools",
                    "plan": "team",
                    "interval": "year",
                    "seats": 10,
                    "at": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )
    type: Literal["org"]
    book: Text | None = Field(default=None, description="The price book (default: configured).")
    plan: Text
    interval: Text | None = Field(default=None, description="month or year, as the plan offers.")
    seats: Count | None = None


class SeatsEvent(EventModel):
    """The org's seat count from `at`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "seats", "org": "org_acme", "count": 12, "at": "2026-01-15T09:30:00Z"}
            ]
        }
    )
    type: Literal["seats"]
    count: Count


class UsageEvent(EventModel):
    """One metered quantity; `id` makes a resend a duplicate (and other content a conflict)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "usage",
                    "id": "evt_0001",
                    "org": "org_acme",
                    "meter": "copilot_messages",
                    "quantity": 80,
                    "at": "2026-01-15T10:00:00Z",
                }
            ]
        }
    )
    type: Literal["usage"]
    id: Text
    meter: Meter
    quantity: Quantity


class ResourcesEvent(EventModel):
    """The count of managed resources of one stack from `at` (billed in resource-hours)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "resources",
                    "org": "org_acme",
                    "stack": "prod",
                    "count": 40,
                    "at": "2026-01-15T00:00:00Z",
                }
            ]
        }
    )
    type: Literal["resources"]
    stack: Text
    count: Count


class CancelEvent(EventModel):
    """The org's subscription ends: at the end of its term (the default), or `now` (at `at`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "cancel",
                    "org": "org_acme",
                    "when": "term_end",
                    "at": "2026-03-01T00:00:00Z",
                }
            ]
        }
    )
    type: Literal["cancel"]
    when: Literal["term_end", "now"] = Field(
        default="term_end", description="term_end: at the end of the paid term; now: at `at`."
    )


class CreditEvent(EventModel):
    """A credit of `amount` cents granted at `at`; `id` makes a resend a duplicate. Credits pay
    metered line items only, oldest expiry first (billing.pricing.credits)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "credit",
                    "id": "credit_0001",
                    "org": "org_acme",
                    "amount": 5000,
                    "at": "2026-01-10T00:00:00Z",
                    "expires_at": "2026-12-31T00:00:00Z",
                    "reason": "Goodwill for the January outage",
                }
            ]
        }
    )
    type: Literal["credit"]
    id: Text
    amount: Annotated[int, Field(ge=1, le=2**31 - 1, description="Cents, above 0.")]
    expires_at: Instant | None = Field(default=None, description="After `at`; null: never.")
    reason: Text


def event_models() -> tuple[type[EventModel], ...]:
    """Every event type's model, in the order they were defined."""
    return tuple(EventModel.registry.values())


def batch_type() -> Any:
    """The body of `POST /api/usage` as a type: a list of events told apart by their `type`."""
    members = functools.reduce(operator.or_, event_models())
    return list[Annotated[members, Field(discriminator="type")]]  # type: ignore[valid-type]
