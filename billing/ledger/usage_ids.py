"""Usage event ids against their earlier copies: an identical repeat is a duplicate, a repeat
with other content is a conflict.

An event is keyed by (org, id), as `usage_events` is. Its content is its meter, quantity
(compared as a number: 3 is 3.0) and instant. The earlier copy is the stored row when there is
one, else the first line of the batch with that key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, NamedTuple, Self

import sqlalchemy as sa
from psycopg import Connection as PgConnection
from psycopg import Cursor as PgCursor
from psycopg import sql

from billing.core.money import format_decimal
from billing.core.periods import isoformat_z
from billing.ledger.formats import LineError, UsageLine
from models.ledger import UsageEvent

_Key = tuple[str, str]  # (org id, event id)
_IN_CHUNK = 500  # keys per `IN` list (SQLite)


class _Content(NamedTuple):
    meter: str
    quantity: Decimal
    at: datetime


def _usage_table() -> sa.Table:
    model: type[Any] = UsageEvent
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


class StoredUsageLookup:
    """Finds the stored copies of a batch's usage events, set-based, while the batch is parsed.

    Inside the context, `feed` it the growing list of parsed lines from time to time: on
    PostgreSQL the usage keys not fed yet go out as one query on a JSON array of keys,
    pipelined, so the database searches while Python parses on; elsewhere they are looked up
    at once in `IN` lists of `_IN_CHUNK` keys. `stored` is complete after the context.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.stored: dict[_Key, _Content] = {}
        self._fed = 0
        self._stack = ExitStack()
        self._raw: PgConnection[Any] | None = None
        self._cursors: list[PgCursor[Any]] = []

    def __enter__(self) -> Self:
        if self.connection.dialect.name == "postgresql":
            raw = self.connection.connection.driver_connection
            assert isinstance(raw, PgConnection)
            self._raw = raw
            self._stack.enter_context(raw.pipeline())
        return self

    def feed(self, records: Sequence[object]) -> None:
        """Look up the usage lines among `records[fed so far:]`."""
        keys = [
            (record.org_id, record.event_id)
            for record in records[self._fed :]
            if isinstance(record, UsageLine)
        ]
        self._fed = len(records)
        if not keys:
            return
        if self._raw is None:
            self._select_in_lists(keys)
            return
        query = sql.SQL(
            "SELECT u.org_id, u.event_id, u.meter, u.quantity, u.at "
            "FROM json_array_elements(%s::json) AS k(pair) "
            "JOIN {} AS u ON u.org_id = k.pair ->> 0 AND u.event_id = k.pair ->> 1"
        ).format(sql.Identifier(_usage_table().name))
        cursor = self._raw.cursor()
        cursor.execute(query, (json.dumps(keys),))
        self._cursors.append(cursor)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stack.close()  # leaving the pipeline waits for every result
        for cursor in self._cursors:
            if kind is None:
                for org_id, event_id, meter, quantity, at in cursor:
                    self.stored[org_id, event_id] = _Content(meter, quantity, at)
            cursor.close()

    def _select_in_lists(self, keys: list[_Key]) -> None:
        table = _usage_table()
        columns = (table.c.org_id, table.c.event_id, table.c.meter, table.c.quantity, table.c.at)
        unique = list(dict.fromkeys(keys))
        for offset in range(0, len(unique), _IN_CHUNK):
            part = unique[offset : offset + _IN_CHUNK]
            query = sa.select(*columns).where(sa.tuple_(*columns[:2]).in_(part))
            for org_id, event_id, meter, quantity, at in self.connection.execute(query):
                self.stored[org_id, event_id] = _Content(meter, quantity, at)


class UsageIds:
    """The earlier copies of one batch's usage events: stored rows, then earlier lines."""

    def __init__(self, stored: dict[_Key, _Content]) -> None:
        self.stored = stored
        self.given: dict[_Key, UsageLine] = {}

    def check(self, record: UsageLine) -> bool | LineError:
        """True when `record` is new (to be stored), False when it repeats its earlier copy
        exactly, a LineError on `id` naming what differs when it conflicts with it."""
        key = (record.org_id, record.event_id)
        stored = self.stored.get(key)
        if stored is not None:
            return _compare(record, stored, "was already stored")
        earlier = self.given.setdefault(key, record)
        if earlier is record:
            return True
        content = _Content(earlier.meter.value, earlier.quantity, earlier.at)
        return _compare(record, content, f"was already given on line {earlier.line}")


def _compare(record: UsageLine, earlier: _Content, where: str) -> bool | LineError:
    differences = []
    if record.meter != earlier.meter:
        differences.append(f"meter {earlier.meter!r}")
    if record.quantity != earlier.quantity:
        differences.append(f"quantity {format_decimal(earlier.quantity)}")
    if record.at != earlier.at:
        differences.append(f"at {isoformat_z(earlier.at)}")
    if not differences:
        return False
    return LineError(
        record.line, "id", f"{record.event_id!r} {where} with {', '.join(differences)}"
    )
