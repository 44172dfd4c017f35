"""Credit grants entering the ledger: `credit` lines checked against their org and earlier
copies, and the book's welcome credit of each new org, stored with the rest of an ingest batch.

A credit is keyed by (org, id), as usage events are: the same id with the same content (amount,
at, expires_at, reason) is a duplicate, stored once; with other content it is a conflict,
refused and named. A new credit must be dated between the org's first subscription and now
(give or take admission.FUTURE_TOLERANCE), and must not have expired already when it arrives.
A book's `welcome_credit` is granted once to each org the batch creates, with the id
`welcome:{org}` (billing.core.keys), from the org's first subscription on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from billing.core.keys import welcome_credit_id
from billing.core.periods import isoformat_z
from billing.ledger.admission import FUTURE_TOLERANCE
from billing.ledger.formats import CreditLine, LineError
from billing.pricing.credits import WelcomeCredit
from models.credits import CreditGrant
from models.ledger import insert_ignoring_duplicates

_Key = tuple[str, str]  # (org id, credit id)
_IN_CHUNK = 500


class _Content(NamedTuple):
    amount: int
    at: datetime
    expires_at: datetime | None
    reason: str


def grants_table() -> sa.Table:
    model: Any = CreditGrant
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


@dataclass
class CreditBatch:
    """The credit grants of one ingest batch: stored copies looked up, lines checked."""

    stored: dict[_Key, _Content] = field(default_factory=dict)
    given: dict[_Key, CreditLine] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # from credit lines
    welcome_rows: list[dict[str, Any]] = field(default_factory=list)

    def look_up(self, connection: sa.Connection, records: Sequence[object]) -> None:
        """Load the stored grants the batch's credit lines name (few: one query per chunk)."""
        keys = sorted({(r.org_id, r.credit_id) for r in records if isinstance(r, CreditLine)})
        table = grants_table()
        columns = (table.c.org_id, table.c.grant_id)
        for offset in range(0, len(keys), _IN_CHUNK):
            query = sa.select(
                *columns, table.c.amount, table.c.at, table.c.expires_at, table.c.reason
            ).where(sa.tuple_(*columns).in_(keys[offset : offset + _IN_CHUNK]))
            for org_id, grant_id, amount, at, expires_at, reason in connection.execute(query):
                self.stored[org_id, grant_id] = _Content(amount, at, expires_at, reason)

    def add(
        self, record: CreditLine, subscribed_at: datetime, now: datetime, conflicts: list[LineError]
    ) -> LineError | None:
        """Check a credit line of a known org; a row to store when it is new."""
        key = (record.org_id, record.credit_id)
        content = _Content(record.amount, record.at, record.expires_at, record.reason)
        earlier = self.stored.get(key)
        where = "was already stored"
        if earlier is None and key in self.given and self.given[key] is not record:
            first = self.given[key]
            earlier = _Content(first.amount, first.at, first.expires_at, first.reason)
            where = f"was already given on line {first.line}"
        if earlier is not None:
            conflict = _conflict(record, content, earlier, where)
            if conflict is not None:
                conflicts.append(conflict)
            return conflict
        error = _admission_error(record, subscribed_at, now)
        if error is not None:
            return error
        self.given[key] = record
        self.rows.append(_row(record.org_id, record.credit_id, content, now))
        return None

    def welcome(
        self, org_id: str, credit: WelcomeCredit | None, subscribed_at: datetime, now: datetime
    ) -> None:
        """The book's welcome credit of an org this batch creates (nothing if it has none)."""
        if credit is None:
            return
        content = _Content(
            credit.amount, subscribed_at, credit.expires_at(subscribed_at), credit.reason
        )
        self.welcome_rows.append(_row(org_id, welcome_credit_id(org_id), content, now))

    def store(self, connection: sa.Connection) -> int:
        """Insert the batch's grants; returns how many of the credit lines' were new."""
        insert_ignoring_duplicates(connection, grants_table(), self.welcome_rows)
        return insert_ignoring_duplicates(connection, grants_table(), self.rows)


def _row(org_id: str, grant_id: str, content: _Content, now: datetime) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "grant_id": grant_id,
        "amount": content.amount,
        "at": content.at,
        "expires_at": content.expires_at,
        "reason": content.reason,
        "recorded_at": now,
    }


def _conflict(
    record: CreditLine, content: _Content, earlier: _Content, where: str
) -> LineError | None:
    differences = [
        f"{name} {_show(old)}"
        for name, old, new in zip(_Content._fields, earlier, content, strict=True)
        if old != new
    ]
    if not differences:
        return None
    return LineError(
        record.line, "id", f"credit {record.credit_id!r} {where} with {', '.join(differences)}"
    )


def _show(value: object) -> str:
    if isinstance(value, datetime):
        return isoformat_z(value)
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def _admission_error(
    record: CreditLine, subscribed_at: datetime, now: datetime
) -> LineError | None:
    if record.at > now + FUTURE_TOLERANCE:
        return LineError(
            record.line,
            "at",
            f"{isoformat_z(record.at)} is in the future (now {isoformat_z(now)}): a credit "
            "is granted when it is given",
        )
    if record.at < subscribed_at:
        return LineError(
            record.line,
            "at",
            f"{isoformat_z(record.at)} is before the org's first subscription "
            f"({isoformat_z(subscribed_at)})",
        )
    if record.expires_at is not None and record.expires_at <= now:
        return LineError(
            record.line,
            "expires_at",
            f"{isoformat_z(record.expires_at)} has already passed (now {isoformat_z(now)}): "
            "the credit would lapse unused",
        )
    return None
