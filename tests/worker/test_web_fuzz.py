"""Fuzzing the two endpoints that take bodies from outside: generated `POST /api/usage` batches
and validly signed `/stripe/webhook` bodies never get a 5xx, and a refused one stores nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from models.ledger import Org, OrgPlanChange, ResourceReport, SeatChangeRecord, UsageEvent
from models.reconciliation import WebhookEvent
from stripe_emulator.webhooks import sign
from tests.worker.web_server import serving
from worker.web.app import create_app
from worker.web.services import WebServices

SECRET = "whsec_fuzz"
ADMIN = "admin-token-fuzz"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
NOW = datetime(2026, 2, 1, tzinfo=UTC)
ORG = {"type": "org", "org": "org_fuzz", "plan": "team", "interval": "year", "seats": 3}
TABLES = (Org, OrgPlanChange, SeatChangeRecord, UsageEvent, ResourceReport, WebhookEvent)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no examples saved between runs: a failure prints its own
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send(self, name: str, args: Sequence[Any]) -> str:
        self.sent.append((name, list(args)))
        return "ok"


@contextmanager
def site(engine: Engine) -> Iterator[httpx.Client]:
    services = WebServices(
        engine=engine,
        webhook_secret=SECRET,
        support_tokens=(),
        admin_tokens=(ADMIN,),
        dispatcher=Recorder(),
        clock=lambda: NOW,
    )
    with serving(create_app(services=services)) as url, httpx.Client(base_url=url) as client:
        yield client


def row_counts(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as session:
        return tuple(
            session.exec(select(func.count()).select_from(table)).one() for table in TABLES
        )


def assert_handled(response: httpx.Response, before: tuple[int, ...], engine: Engine) -> None:
    """A 4xx with a JSON error and nothing stored, or a 2xx."""
    event(f"status {response.status_code}")  # pytest --hypothesis-show-statistics counts them
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]
        assert row_counts(engine) == before


# --------------------------------------------------------------------------- values

# Raw JSON number literals, as written in a body: huge, tiny, negative, with exponents.
number_literals = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,6})?", fullmatch=True),
    st.sampled_from(["1" * 5000, "1e999999999", "1E-999999999", "-0", "0.0000000000001"]),
)
odd_strings = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", " ", "5", "2.5", "1_000", "1e3", " 5", "NaN", "Infinity", "0x10", "١٢", "-1"]
    ),
    st.sampled_from(["\u0000", "a\ud800b", "\udfff", "x" * 300, "org_fuzz", "copilot_messages"]),
)


def offset_timestamps() -> st.SearchStrategy[str]:
    """ISO 8601 instants anywhere in `datetime`'s range, at any offset a datetime can have."""
    moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))
    offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )
    return st.builds(lambda at, tz: at.replace(tzinfo=tz).isoformat(), moments, offsets)


# Instants the ledger takes for the fuzzed org (after its start, before NOW), so that batches
# also get past validation to duplicates, conflicts and the insert.
plausible_timestamps = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 31, 23, 59), timezones=st.just(UTC)
).map(lambda at: at.isoformat().replace("+00:00", "Z"))
timestamps = st.one_of(
    plausible_timestamps,
    plausible_timestamps,
    offset_timestamps(),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:30:00-01:00",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-01-15T00:00:00Z",
            "2026-01-15T00:00:00",
            "2026-13-01T00:00:00Z",
        ]
    ),
    odd_strings,
)
# A field's value as JSON text: a plain JSON value, a raw number literal, or a timestamp.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | odd_strings,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=8,
)
field_texts = st.one_of(json_values.map(json.dumps), number_literals, timestamps.map(json.dumps))


@st.composite
def event_texts(draw: st.DrawFn) -> str:
    """One record: mostly event-shaped (a known type, its fields, some of them odd)."""
    kind = draw(st.sampled_from(["usage", "usage", "org", "seats", "resources", "refund"]))
    plausible = {
        "type": json.dumps(kind),
        "id": json.dumps(f"u{draw(st.integers(0, 20))}"),
        "org": json.dumps("org_fuzz"),
        "meter": json.dumps(draw(st.sampled_from(["copilot_messages", "runner_minutes", "x"]))),
        "quantity": draw(number_literals | odd_strings.map(json.dumps)),
        "count": draw(number_literals),
        "stack": json.dumps("stack"),
        "plan": json.dumps(draw(st.sampled_from(["free", "team", "nope"]))),
        "at": json.dumps(draw(timestamps)),
    }
    return json_object(draw, plausible)


def json_object(draw: st.DrawFn, plausible: dict[str, str]) -> str:
    """An object of most of the `plausible` fields (key: JSON text), a few of them replaced by
    arbitrary values."""
    fields = {key: text for key, text in plausible.items() if draw(MOSTLY)}
    keys = sorted(plausible)
    fields.update(draw(st.dictionaries(st.sampled_from(keys), field_texts, max_size=2)))
    return "{" + ", ".join(f"{json.dumps(key)}: {text}" for key, text in fields.items()) + "}"


MOSTLY = st.sampled_from([True, True, True, True, False])
# Clean usage events, their ids sometimes repeated with other content: stored, duplicates,
# conflicts.
clean_usage = st.builds(
    lambda event_id, meter, quantity, at: json.dumps(
        {"type": "usage", "id": event_id, "org": "org_fuzz", "meter": meter, "quantity": quantity}
        | {"at": at}
    ),
    st.integers(0, 300).map(lambda number: f"c{number}"),
    st.sampled_from(["copilot_messages", "runner_minutes"]),
    st.one_of(st.integers(0, 3), st.sampled_from(["1", "1.0", "2.5"])),
    plausible_timestamps,
)
records = st.lists(st.one_of(event_texts(), event_texts(), event_texts(), field_texts), max_size=6)
clean_records = st.lists(clean_usage, min_size=1, max_size=4)
usage_bodies = st.one_of(
    records.map(lambda items: "[" + ", ".join(items) + "]"),
    records.map("\n".join),
    clean_records.map(lambda items: "[" + ", ".join(items) + "]"),
    clean_records.map("\n".join),
    st.text(max_size=200),
    st.integers(min_value=1, max_value=3000).map(lambda depth: "[" * depth + "]" * depth),
    st.just("[" * 20_000 + "]" * 20_000),
).map(lambda text: text.encode("utf-8", "surrogatepass"))


def test_usage_ingestion_never_answers_5xx_and_a_refusal_stores_nothing(engine: Engine) -> None:
    with site(engine) as client:
        first = {**ORG, "at": "2026-01-01T00:00:00Z"}
        assert client.post("/api/usage", json=[first], headers=AUTH).status_code == 200

        @FUZZ
        @given(body=usage_bodies)
        def post(body: bytes) -> None:
            before = row_counts(engine)
            assert_handled(client.post("/api/usage", content=body, headers=AUTH), before, engine)

        post()


# --------------------------------------------------------------------------- webhooks


@st.composite
def webhook_bodies(draw: st.DrawFn) -> bytes:
    shaped = {
        "id": json.dumps(f"evt_{draw(st.integers(0, 10**9))}"),
        "object": json.dumps("event"),
        "type": json.dumps(draw(st.sampled_from(["invoice.created", "invoice.paid", ""]))),
        "created": draw(number_literals),
        "livemode": json.dumps(draw(st.sampled_from([False, False, True]))),
        "data": json.dumps({"object": {"id": "in_fuzz", "object": "invoice"}}),
    }
    event = json_object(draw, shaped)
    text = draw(st.one_of(st.just(event), st.just(event), field_texts, st.text(max_size=100)))
    return text.encode("utf-8", "surrogatepass")


def test_signed_webhooks_never_get_5xx_and_a_refusal_stores_nothing(engine: Engine) -> None:
    with site(engine) as client:

        @FUZZ
        @given(body=webhook_bodies(), skew=st.integers(min_value=-400, max_value=400))
        def post(body: bytes, skew: int) -> None:
            before = row_counts(engine)
            signature = sign(body, SECRET, int(time.time()) + skew)
            response = client.post(
                "/stripe/webhook", content=body, headers={"Stripe-Signature": signature}
            )
            assert_handled(response, before, engine)

        post()
