"""The ingestion formats: one JSON object per event, parsed and checked field by field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from billing.core.meters import Meter
from billing.core.money import decimal_places, parse_decimal
from billing.core.periods import PeriodError, parse_instant

MAX_ID_LENGTH = 200
MAX_QUANTITY_PLACES = 12
MAX_QUANTITY = Decimal(10) ** 26
# A quantity given as a string is a decimal number as JSON writes one, without an exponent:
# "5", "2.5", "0.125". Decimal() alone would also take "1_000", " 5", "1e3", "NaN" and "١٢".
_DECIMAL_STRING = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")

EVENT_TYPES = ("org", "seats", "usage", "resources", "cancel", "credit")
CANCEL_WHEN = ("term_end", "now")
_FIELDS: Mapping[str, frozenset[str]] = {
    "org": frozenset({"type", "org", "book", "plan", "interval", "seats", "at"}),
    "seats": frozenset({"type", "org", "count", "at"}),
    "usage": frozenset({"type", "id", "org", "meter", "quantity", "at"}),
    "resources": frozenset({"type", "org", "stack", "count", "at"}),
    "cancel": frozenset({"type", "org", "at", "when"}),
    "credit": frozenset({"type", "id", "org", "amount", "at", "expires_at", "reason"}),
}


@dataclass(frozen=True, order=True)
class LineError:
    """One problem of one input line (1-based), shown as `line N: field: problem`."""

    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.problem}"


@dataclass(frozen=True)
class OrgLine:
    line: int
    org_id: str
    book: str | None
    plan: str
    interval: str | None
    seat_count: int | None
    at: datetime


@dataclass(frozen=True)
class SeatsLine:
    line: int
    org_id: str
    seat_count: int
    at: datetime


@dataclass(frozen=True)
class UsageLine:
    line: int
    event_id: str
    org_id: str
    meter: Meter
    quantity: Decimal
    at: datetime


@dataclass(frozen=True)
class ResourcesLine:
    line: int
    org_id: str
    stack: str
    resource_count: int
    at: datetime


@dataclass(frozen=True)
class CancelLine:
    """The org's subscription ends at the end of its current term, or `now` (at `at`)."""

    line: int
    org_id: str
    when: str  # one of CANCEL_WHEN
    at: datetime


@dataclass(frozen=True)
class CreditLine:
    """A credit of `amount` cents granted at `at` (billing.pricing.credits says what it pays)."""

    line: int
    credit_id: str
    org_id: str
    amount: int
    at: datetime
    expires_at: datetime | None
    reason: str


EventLine = OrgLine | SeatsLine | UsageLine | ResourcesLine | CancelLine | CreditLine


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


# JSON with exact decimals: `1.5` becomes Decimal('1.5'), never a float; NaN and Infinity refused.
EXACT_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
_DECODER = EXACT_JSON
_METERS_BY_CODE = {meter.value: meter for meter in Meter}
_FROM_ISO = datetime.fromisoformat


def parse_json_line(text: str) -> object:
    """JSON with exact decimals (`1.5` becomes Decimal('1.5'), never a float).

    An object written without surrounding whitespace (the common case) goes straight to the
    decoder's C scanner (`raw_decode`, without the two whitespace scans around it); anything
    else, and every error, takes `JSONDecoder.decode`, which gives the same value and the
    messages callers show.
    """
    if text[:1] == "{" and text[-1:] == "}":
        try:
            value, end = _DECODER.raw_decode(text)
        except (ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                return value
    return _DECODER.decode(text)


class _Fields:
    """Reads fields of one record, collecting a LineError per bad field."""

    def __init__(self, line: int, record: Mapping[str, Any], errors: list[LineError]) -> None:
        self.line = line
        self.record = record
        self.errors = errors

    def problem(self, field: str, text: str) -> None:
        self.errors.append(LineError(self.line, field, text))

    def text(self, field: str, *, required: bool = True) -> str | None:
        value = self.record.get(field)
        if value is None:
            if required:
                self.problem(field, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(field, f"must be a non-empty string, got {_show(value)}")
            return None
        if len(value) > MAX_ID_LENGTH:
            self.problem(field, f"must be at most {MAX_ID_LENGTH} characters")
            return None
        if not value.isprintable() and not _storable(value):
            self.problem(field, f"must be text (no NUL, no lone surrogate), got {value!r}")
            return None
        return value

    def count(self, field: str, *, required: bool = True) -> int | None:
        value = self.record.get(field)
        if value is None:
            if required:
                self.problem(field, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(field, f"must be a whole number, got {_show(value)}")
            return None
        if value < 0:
            self.problem(field, f"must not be negative, got {value}")
            return None
        if value > 2**31 - 1:
            self.problem(field, f"is too large ({value})")
            return None
        return value

    def quantity(self, field: str) -> Decimal | None:
        value = self.record.get(field)
        if type(value) is int and 0 <= value < MAX_QUANTITY:  # the common case, fast
            return Decimal(value)
        if value is None:
            self.problem(field, "is required")
            return None
        if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value):
            self.problem(
                field, f"{_show(value)} is not a decimal number such as 5 or 2.5 (no exponent)"
            )
            return None
        try:
            quantity = parse_decimal(value)
        except ValueError as exc:
            self.problem(field, str(exc))
            return None
        if quantity < 0:
            self.problem(field, f"must not be negative, got {_show(value)}")
            return None
        if decimal_places(quantity) > MAX_QUANTITY_PLACES:
            self.problem(field, f"has more than {MAX_QUANTITY_PLACES} decimal places")
            return None
        if quantity >= MAX_QUANTITY:
            self.problem(field, f"is too large ({_show(value)})")
            return None
        return quantity

    def instant(self, field: str, *, required: bool = True) -> datetime | None:
        value = self.record.get(field)
        if value is None:
            if required:
                self.problem(field, "is required")
            return None
        if not isinstance(value, str):
            self.problem(field, f"must be an ISO 8601 string, got {_show(value)}")
            return None
        try:
            return parse_instant(value)
        except PeriodError as exc:
            self.problem(field, str(exc))
            return None


def _show(value: object) -> str:
    """A refused value as the message shows it: quoted, and cut short when long."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _storable(text: str) -> bool:
    """Whether a database can store `text`: UTF-8 (no lone surrogate) without NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def parse_record(line: int, raw: object, errors: list[LineError]) -> EventLine | None:
    """Check one record's shape and fields; None (with errors appended) when it is invalid.

    Whether the org, plan and meter exist is checked later, against the ledger and the books.
    """
    if isinstance(raw, str):
        try:
            raw = parse_json_line(raw)
        except ValueError as exc:
            errors.append(LineError(line, "(json)", f"not valid JSON: {exc}"))
            return None
        except RecursionError:
            errors.append(LineError(line, "(json)", "not an event: JSON nested too deeply"))
            return None
    if not isinstance(raw, Mapping):
        errors.append(LineError(line, "(json)", "must be a JSON object"))
        return None
    kind = raw.get("type")
    if kind == "usage":
        fast = _well_formed_usage(line, raw)
        if fast is not None:
            return fast
    if not isinstance(kind, str) or kind not in _FIELDS:  # a list or an object is no type
        errors.append(
            LineError(line, "type", f"unknown type {_show(kind)} (known: {', '.join(EVENT_TYPES)})")
        )
        return None
    before = len(errors)
    allowed = _FIELDS[str(kind)]
    errors.extend(
        LineError(line, str(key), f"unknown field for type {kind!r}")
        for key in raw
        if key not in allowed
    )
    result = _event_line(str(kind), _Fields(line, raw, errors))
    return result if len(errors) == before else None


def _event_line(kind: str, fields: _Fields) -> EventLine | None:
    """The line of a known type from its fields (None when one is missing or invalid)."""
    line = fields.line
    org_id = fields.text("org")
    at = fields.instant("at")
    result: EventLine | None = None
    if kind == "org":
        book = fields.text("book", required=False)
        plan = fields.text("plan")
        interval = fields.text("interval", required=False)
        seats = fields.count("seats", required=False)
        if org_id and plan and at:
            result = OrgLine(line, org_id, book, plan, interval, seats, at)
    elif kind == "seats":
        seats = fields.count("count")
        if org_id and seats is not None and at:
            result = SeatsLine(line, org_id, seats, at)
    elif kind == "usage":
        event_id = fields.text("id")
        meter_code = fields.text("meter")
        meter: Meter | None = None
        if meter_code is not None:
            if meter_code in _METERS_BY_CODE:
                meter = _METERS_BY_CODE[meter_code]
            else:
                known = ", ".join(m.value for m in Meter)
                fields.problem("meter", f"unknown meter {meter_code!r} (known: {known})")
        quantity = fields.quantity("quantity")
        if org_id and event_id and meter and quantity is not None and at:
            result = UsageLine(line, event_id, org_id, meter, quantity, at)
    elif kind == "cancel":
        when = fields.record.get("when", "term_end")
        if when not in CANCEL_WHEN:
            fields.problem("when", f"must be 'term_end' or 'now', got {_show(when)}")
        elif org_id and at:
            result = CancelLine(line, org_id, str(when), at)
    elif kind == "credit":
        result = _credit_line(fields, org_id, at)
    else:
        stack = fields.text("stack")
        resources = fields.count("count")
        if org_id and stack and resources is not None and at:
            result = ResourcesLine(line, org_id, stack, resources, at)
    return result


def _credit_line(fields: _Fields, org_id: str | None, at: datetime | None) -> CreditLine | None:
    credit_id = fields.text("id")
    amount = fields.count("amount")
    if amount == 0:
        fields.problem("amount", "must be a whole number of cents above 0, got 0")
    expires_at = fields.instant("expires_at", required=False)
    if expires_at is not None and at is not None and expires_at <= at:
        fields.problem("expires_at", f"must be after at ({at.isoformat()})")
    reason = fields.text("reason")
    if org_id and credit_id and amount and at and reason:
        return CreditLine(fields.line, credit_id, org_id, amount, at, expires_at, reason)
    return None


_USAGE_FIELDS = _FIELDS["usage"]


UsageFields = tuple[str, str, str, int, datetime]  # (id, org, meter code, quantity, at)


def _well_formed_usage(line: int, raw: Mapping[str, Any]) -> UsageLine | None:
    """The common case of a clean usage event, checked without collecting errors (backfills
    are millions of these); anything unusual returns None and takes the full path."""
    fields = well_formed_usage_fields(raw)
    if fields is None:
        return None
    event_id, org_id, meter_code, quantity, instant = fields
    return UsageLine(
        line, event_id, org_id, _METERS_BY_CODE[meter_code], Decimal(quantity), instant
    )


def well_formed_usage_fields(raw: Mapping[str, Any]) -> UsageFields | None:
    """The fields of a usage record (its `type` aside) that is clean by the common case's
    checks: a whole quantity, known meter, printable ids, an instant with an offset (UTC).
    None for anything else, which `parse_record` judges in full."""
    if len(raw) != len(_USAGE_FIELDS):
        return None
    event_id = raw.get("id")
    org_id = raw.get("org")
    meter_code = raw.get("meter")
    quantity = raw.get("quantity")
    at = raw.get("at")
    if (
        type(event_id) is not str
        or type(org_id) is not str
        or type(meter_code) is not str
        or type(quantity) is not int
        or type(at) is not str
        or not 0 < len(event_id) <= MAX_ID_LENGTH
        or not 0 < len(org_id) <= MAX_ID_LENGTH
        or event_id.isspace()
        or org_id.isspace()
        or not event_id.isprintable()  # NUL or a lone surrogate: the full path says so
        or not org_id.isprintable()
        or not 0 <= quantity < MAX_QUANTITY
        or meter_code not in _METERS_BY_CODE
    ):
        return None
    try:
        instant = _FROM_ISO(at)
    except ValueError:
        return None
    if instant.tzinfo is not UTC:  # "Z" and "+00:00" give UTC itself, as parse_instant does
        try:
            instant = parse_instant(at)
        except PeriodError:
            return None
    return event_id, org_id, meter_code, quantity, instant
