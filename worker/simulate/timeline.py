"""The timeline file: `billing ingest` lines and `stripe_call` lines, each with its arrival time.

A line is one JSON object. Any line may carry `received_at`, when it reaches the worker (default:
its `at`); the rest of the line goes to the worker as it is. A line that cannot be placed in time
(not JSON, no valid `at` or `received_at`, a `stripe_call` without a method or path) is refused
here with its line number; the run goes on without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from billing.core.periods import PeriodError, parse_instant

RECEIVED_AT = "received_at"
STRIPE_CALL = "stripe_call"
STRIPE_METHODS = frozenset({"GET", "POST", "DELETE"})


class EntryKind(StrEnum):
    INGEST = "ingest"  # handed to the worker's ingestion, exactly as `billing ingest` does
    STRIPE_CALL = "stripe_call"  # a raw Stripe API call, as a person in the Dashboard makes


@dataclass(frozen=True)
class Entry:
    """One accepted line of the timeline."""

    line: int
    kind: EntryKind
    at: datetime
    arrives_at: datetime
    body: Mapping[str, Any]  # without `received_at`


@dataclass(frozen=True)
class Refusal:
    line: int
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error}


@dataclass
class Timeline:
    entries: list[Entry] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    @property
    def first_at(self) -> datetime | None:
        return min((e.arrives_at for e in self.entries), default=None)

    @property
    def last_at(self) -> datetime | None:
        return max((max(e.at, e.arrives_at) for e in self.entries), default=None)


def parse_timeline(lines: Iterable[str]) -> Timeline:
    """Every non-blank line, in file order, as an entry or a refusal."""
    timeline = Timeline()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            timeline.entries.append(_entry(number, raw))
        except ValueError as exc:
            timeline.refused.append(Refusal(number, str(exc)))
    timeline.entries.sort(key=lambda e: (e.arrives_at, e.line))
    return timeline


def _entry(number: int, raw: str) -> Entry:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON object: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    body = {k: v for k, v in record.items() if k != RECEIVED_AT}
    at = _instant(record, "at")
    arrives_at = _instant(record, RECEIVED_AT) if RECEIVED_AT in record else at
    if record.get("type") == STRIPE_CALL:
        _check_stripe_call(body)
        return Entry(number, EntryKind.STRIPE_CALL, at, arrives_at, body)
    return Entry(number, EntryKind.INGEST, at, arrives_at, body)


def _instant(record: Mapping[str, Any], name: str) -> datetime:
    value = record.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name}: required, an ISO 8601 instant with an offset")
    try:
        return parse_instant(value)
    except PeriodError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def _check_stripe_call(body: Mapping[str, Any]) -> None:
    method = body.get("method")
    if not isinstance(method, str) or method.upper() not in STRIPE_METHODS:
        raise ValueError(f"method: one of {', '.join(sorted(STRIPE_METHODS))}")
    path = body.get("path")
    if not isinstance(path, str) or not path.startswith("/v1/"):
        raise ValueError("path: a Stripe API path starting with /v1/")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ValueError("params: a JSON object")
    unknown = set(body) - {"type", "at", "method", "path", "params"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown field of a stripe_call line")
