"""Record parsing: a quantity is a JSON number or a decimal string as JSON writes a number, and
every field that reaches the database is text it can store."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from billing.ledger.formats import LineError, UsageLine, parse_record


def usage(quantity: Any, **fields: Any) -> str:
    record = {
        "type": "usage",
        "id": "e1",
        "org": "acme",
        "meter": "copilot_messages",
        "quantity": quantity,
        "at": "2026-02-04T12:00:00Z",
        **fields,
    }
    return json.dumps(record)


def parse(text: str) -> tuple[UsageLine | None, list[str]]:
    errors: list[LineError] = []
    parsed = parse_record(4, text, errors)
    assert parsed is None or isinstance(parsed, UsageLine)
    return parsed, [str(error) for error in errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (usage(5), Decimal(5)),
        (usage("5"), Decimal(5)),  # README: "strings holding a decimal number"
        (usage("2.5"), Decimal("2.5")),
        (usage("0.125"), Decimal("0.125")),
        (usage("0"), Decimal(0)),
        (usage("5.0"), Decimal(5)),
        (usage(5).replace('"quantity": 5', '"quantity": 1e3'), Decimal(1000)),  # a JSON number
        (usage(5).replace('"quantity": 5', '"quantity": 0.1'), Decimal("0.1")),
    ],
)
def test_json_numbers_and_decimal_strings_are_quantities(text: str, expected: Decimal) -> None:
    parsed, errors = parse(text)
    assert errors == []
    assert parsed is not None
    assert parsed.quantity == expected


@pytest.mark.parametrize(
    "spelling",
    [
        "1_000",  # Decimal("1_000") is 1000: Python's spelling, not JSON's
        "1e3",
        "1E+3",
        " 5",
        "5 ",
        "5\n",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "05",
        "+5",
        ".5",
        "5.",
        "1,000",
        "١٢",  # Arabic-Indic digits: Decimal() reads them as 12
        "５",  # a full-width digit
        "",
    ],
)
def test_other_spellings_of_a_quantity_are_refused(spelling: str) -> None:
    parsed, errors = parse(usage(spelling))
    assert parsed is None
    assert errors == [
        f"line 4: quantity: {spelling!r} is not a decimal number such as 5 or 2.5 (no exponent)"
    ]


def test_a_negative_decimal_string_is_refused_as_negative() -> None:
    assert parse(usage("-3"))[1] == ["line 4: quantity: must not be negative, got '-3'"]


def test_a_long_refused_value_is_cut_short_in_the_message() -> None:
    (error,) = parse(usage("9" * 500 + "x"))[1]
    assert error.startswith("line 4: quantity: '99999")
    assert len(error) < 150


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"id": "e\u0000"}, "id"), ({"id": "e\ud800"}, "id"), ({"org": "a\ud800cme"}, "org")],
)
def test_text_a_database_cannot_store_is_refused(fields: dict[str, str], field: str) -> None:
    parsed, errors = parse(usage(5, **fields))
    assert parsed is None
    assert [error.split(":")[1].strip() for error in errors] == [field]
    assert "must be text (no NUL, no lone surrogate)" in errors[0]


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_json_nested_too_deeply_is_a_line_error(depth: int) -> None:
    assert parse("[" * depth + "]" * depth)[1] == [
        "line 4: (json): not an event: JSON nested too deeply"
    ]


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_an_instant_that_leaves_the_datetime_range_in_utc_is_a_line_error(at: str) -> None:
    assert parse(usage(5, at=at))[1] == [
        f"line 4: at: {at!r} is outside the years 1 to 9999 in UTC"
    ]


@pytest.mark.parametrize("kind", [[], {"a": 1}, None, 5])
def test_a_type_that_is_not_a_string_is_an_unknown_type(kind: object) -> None:
    (error,) = parse(usage(5, type=kind))[1]
    assert error.startswith("line 4: type: unknown type ")


@pytest.mark.parametrize("meter", [[], {"a": 1}, 5, None])
def test_a_meter_that_is_not_a_string_is_a_line_error(meter: object) -> None:
    parsed, errors = parse(usage(5, meter=meter))
    assert parsed is None
    assert len(errors) == 1
    assert errors[0].startswith("line 4: meter: ")


@pytest.mark.parametrize(
    "text",
    [
        usage(5),
        f"  {usage(5)}  ",  # whitespace around the object takes the decoder's full path
        usage(5).replace("}", ', "extra": 1}'),
    ],
)
def test_a_line_parses_alike_on_the_fast_and_the_full_path(text: str) -> None:
    fast, fast_errors = parse(text)
    full_errors: list[LineError] = []
    full = parse_record(4, json.loads(text, parse_float=Decimal), full_errors)
    assert fast == full
    assert fast_errors == [str(error) for error in full_errors]


@pytest.mark.parametrize("text", ['{"type": "usage"} {', '{"a": 1}{}', "{]", "{"])
def test_json_errors_keep_the_decoders_message(text: str) -> None:
    _, errors = parse(text)
    with pytest.raises(json.JSONDecodeError) as raised:
        json.loads(text)
    assert errors == [f"line 4: (json): not valid JSON: {raised.value}"]
