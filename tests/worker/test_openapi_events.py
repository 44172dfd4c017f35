"""The event models of the OpenAPI document and billing/ledger/formats.py, the parser, describe the
same event types with the same fields, required alike: adding a type or a field to one without
the other fails here."""

from __future__ import annotations

import pytest

from billing.ledger import formats
from billing.ledger.formats import LineError, parse_record
from worker.web.openapi import build_document
from worker.web.schemas.events import EventModel, event_models

MODELS = {model.event_type(): model for model in event_models()}


def example(model: type[EventModel]) -> dict[str, object]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict), f"{model.__name__} has no example"
    examples = extra["examples"]
    assert isinstance(examples, list)
    found = examples[0]
    assert isinstance(found, dict)
    return found


def test_the_models_are_the_parsers_event_types() -> None:
    assert set(MODELS) == set(formats._FIELDS) == set(formats.EVENT_TYPES)


@pytest.mark.parametrize("kind", sorted(formats._FIELDS))
def test_each_models_fields_are_the_parsers(kind: str) -> None:
    model = MODELS[kind]
    names = {info.alias or name for name, info in model.model_fields.items()}
    assert names == formats._FIELDS[kind]


@pytest.mark.parametrize("kind", sorted(formats._FIELDS))
def test_the_example_is_an_event_the_parser_takes(kind: str) -> None:
    record = example(MODELS[kind])
    assert set(record) == formats._FIELDS[kind]  # every field shown, optional ones too
    MODELS[kind].model_validate(record)
    errors: list[LineError] = []
    assert parse_record(1, record, errors) is not None, errors


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind in sorted(formats._FIELDS) for name in sorted(formats._FIELDS[kind])],
)
def test_a_field_is_required_by_both_or_by_neither(kind: str, name: str) -> None:
    model = MODELS[kind]
    record = {key: value for key, value in example(model).items() if key != name}
    errors: list[LineError] = []
    parsed = parse_record(1, record, errors)
    field = model.model_fields[name]
    if field.is_required():
        assert parsed is None
        assert [error.field for error in errors] == [name]
    else:
        assert parsed is not None, errors


def test_the_document_describes_every_event_type() -> None:
    document = build_document()
    items = document["paths"]["/api/usage"]["post"]["requestBody"]["content"]["application/json"]
    mapping = items["schema"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(formats._FIELDS)
    for kind, ref in mapping.items():
        name = ref.rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
        assert set(schema["properties"]) == formats._FIELDS[kind]
        assert schema["additionalProperties"] is False
