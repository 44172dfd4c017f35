"""Credit events into the ledger on SQLite and PostgreSQL: stored once per (org, id), conflicts
and bad values refused with the line and field and nothing stored, the book's welcome credit
granted once to each new org, and the expected invoice's credit line from the balances."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.periods import Period
from billing.ledger.ingest import Ingestor, IngestOutcome
from billing.ledger.queries import expected_invoice
from billing.pricing.book import BOOKS_DIR
from billing.pricing.book_cache import BookCache
from models.credits import CreditAllocation, CreditApplication, CreditGrant
from models.db import unit_of_work

NOW = datetime(2027, 5, 20, 12, tzinfo=UTC)
MAY = Period(datetime(2027, 5, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC))
JUNE = Period(datetime(2027, 6, 1, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC))
ORG = {"type": "org", "org": "zen", "book": "zenaton", "plan": "payg", "at": "2027-05-01T00:00:00Z"}


def credit(**fields: Any) -> str:
    base = {
        "type": "credit",
        "id": "c-1",
        "org": "zen",
        "amount": 2000,
        "at": "2027-05-10T00:00:00Z",
        "reason": "sorry for the outage",
    }
    return json.dumps({**base, **fields})


def ingest(engine: Engine, lines: list[str], now: datetime = NOW) -> IngestOutcome:
    with unit_of_work(engine) as session:
        return Ingestor(session).ingest(lines, now)


def grants(engine: Engine) -> list[tuple[str, str, int]]:
    with Session(engine) as session:
        rows = session.exec(select(CreditGrant).order_by(CreditGrant.grant_id)).all()
        return [(row.org_id, row.grant_id, row.amount) for row in rows]


def test_a_credit_is_stored_once_and_a_repeat_is_a_duplicate(engine: Engine) -> None:
    first = ingest(engine, [json.dumps(ORG), credit(), credit()])
    assert (first.stored["credit"], first.duplicates["credit"]) == (1, 1)
    again = ingest(engine, [credit(expires_at="2027-08-01T00:00:00Z", id="c-2"), credit()])
    assert (again.stored["credit"], again.duplicates["credit"]) == (1, 1)
    assert grants(engine) == [("zen", "c-1", 2000), ("zen", "c-2", 2000)]


def test_the_same_id_with_other_content_is_a_conflict_naming_what_differs(
    engine: Engine,
) -> None:
    assert ingest(engine, [json.dumps(ORG), credit()]).ok
    refused = ingest(engine, [credit(amount=2500, reason="more")])
    assert [str(e) for e in refused.errors] == [
        "line 1: id: credit 'c-1' was already stored with amount 2000, "
        "reason 'sorry for the outage'"
    ]
    assert refused.only_conflicts
    in_batch = ingest(engine, [credit(id="c-9"), credit(id="c-9", at="2027-05-11T00:00:00Z")])
    assert [str(e) for e in in_batch.errors] == [
        "line 2: id: credit 'c-9' was already given on line 1 with at 2027-05-10T00:00:00Z"
    ]
    assert grants(engine) == [("zen", "c-1", 2000)]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"amount": 0}, "line 2: amount: must be a whole number of cents above 0, got 0"),
        ({"amount": -500}, "line 2: amount: must not be negative, got -500"),
        ({"amount": 12.5}, "line 2: amount: must be a whole number, got 12.5"),
        ({"reason": None}, "line 2: reason: is required"),
        (
            {"expires_at": "2027-05-09T00:00:00Z"},
            "line 2: expires_at: must be after at (2027-05-10T00:00:00+00:00)",
        ),
        (
            {"expires_at": "2027-05-15T00:00:00Z"},
            "line 2: expires_at: 2027-05-15T00:00:00Z has already passed "
            "(now 2027-05-20T12:00:00Z): the credit would lapse unused",
        ),
        (
            {"at": "2027-05-21T00:00:00Z"},
            "line 2: at: 2027-05-21T00:00:00Z is in the future (now 2027-05-20T12:00:00Z): "
            "a credit is granted when it is given",
        ),
        (
            {"at": "2027-04-30T00:00:00Z"},
            "line 2: at: 2027-04-30T00:00:00Z is before the org's first subscription "
            "(2027-05-01T00:00:00Z)",
        ),
        ({"org": "nobody"}, "line 2: org: unknown org 'nobody'"),
        ({"bonus": 1}, "line 2: bonus: unknown field for type 'credit'"),
    ],
)
def test_a_bad_credit_is_refused_and_nothing_is_stored(
    engine: Engine, fields: dict[str, Any], error: str
) -> None:
    outcome = ingest(engine, [json.dumps(ORG), credit(**fields)])
    assert not outcome.ok
    assert str(outcome.errors[0]).startswith(error)
    assert grants(engine) == []


def _welcome_book(tmp_path: Path) -> str:
    text = (
        (BOOKS_DIR / "zenaton.toml")
        .read_text()
        .replace(
            "# welcome_credit = { amount = 3_000, expires_after_days = 90 }",
            "welcome_credit = { amount = 3_000, expires_after_days = 90 }",
        )
    )
    path = tmp_path / "zenaton.toml"
    path.write_text(text)
    return str(path)


def test_the_books_welcome_credit_is_granted_once_to_each_new_org(
    engine: Engine, tmp_path: Path
) -> None:
    book = _welcome_book(tmp_path)
    new_org = json.dumps({**ORG, "book": book})
    assert ingest(engine, [new_org]).ok
    assert ingest(engine, [new_org]).ok  # the same org line again: no second welcome credit
    with Session(engine) as session:
        (row,) = session.exec(select(CreditGrant)).all()
    assert (row.grant_id, row.amount, row.at, row.expires_at, row.reason) == (
        "welcome:zen",
        3000,
        datetime(2027, 5, 1, tzinfo=UTC),
        datetime(2027, 7, 30, tzinfo=UTC),
        "welcome credit",
    )


def test_the_expected_invoice_applies_the_balance_left_by_earlier_periods(
    engine: Engine,
) -> None:
    usage = {"type": "usage", "org": "zen", "meter": "execution_time"}
    lines = [
        json.dumps(ORG),
        credit(amount=3000, at="2027-05-01T00:00:00Z"),
        json.dumps({**usage, "id": "u-1", "quantity": 360_000, "at": "2027-05-10T08:00:00Z"}),
        json.dumps({**usage, "id": "u-2", "quantity": 720_000, "at": "2027-06-10T08:00:00Z"}),
    ]
    assert ingest(engine, lines, now=datetime(2027, 6, 20, tzinfo=UTC)).ok
    books = BookCache()
    with Session(engine) as session:
        may = expected_invoice(session, "zen", MAY, books)
        assert [(line.code, line.amount) for line in may.lines] == [
            ("execution_time", 1300),
            ("credit", -1300),
        ]
        # May's credit item as the worker recorded it: June sees $17.00 left.
        application = CreditApplication(
            org_id="zen",
            period_start_at=MAY.period_start,
            period_end_at=MAY.period_end,
            sequence=1,
            charge_amount=1300,
            amount=1300,
            stripe_invoice_id="in_may",
            idempotency_key="credit:zen:may:1",
            status="done",
            created_at=MAY.period_end,
        )
        session.add(application)
        session.flush()
        assert application.id is not None
        session.add(
            CreditAllocation(
                application_id=application.id, org_id="zen", grant_id="c-1", amount=1300
            )
        )
        session.commit()
        june = expected_invoice(session, "zen", JUNE, books)
    assert [(line.code, line.amount) for line in june.lines] == [
        ("execution_time", 2600),
        ("credit", -1700),
    ]
    assert june.total_amount == 900
