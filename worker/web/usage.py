"""`POST /api/usage` (or `/api/events`): `billing ingest`'s event formats over HTTP, all or nothing.

A refused batch stores nothing and answers 409 when every error is a conflicting usage id (the
same id given before with other content), 422 otherwise, listing each error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.ledger.formats import LineError, parse_json_line
from billing.ledger.ingest import ConcurrentIngestError, Ingestor, IngestOutcome
from models.db import unit_of_work
from worker.web.auth import Role, bearer_role
from worker.web.bodies import BodyTooLarge, read_limited
from worker.web.common import json_error, services_of
from worker.web.services import SCHEDULE_SEATS, WebServices

MAX_BODY_BYTES = 20 * 1024 * 1024


def _records(raw: bytes) -> list[Any] | LineError:
    """A JSON array of events, or JSON Lines (one event per line, blank lines skipped)."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(raw[: exc.start].count(b"\n") + 1, "body", f"not UTF-8: {exc.reason}")
    stripped = body.lstrip()
    if stripped.startswith("["):
        try:
            # Exact decimals, as billing ingest reads its lines: a float would round quantities.
            parsed = parse_json_line(stripped)
        except json.JSONDecodeError as exc:
            return LineError(exc.lineno, "body", f"not a JSON array: {exc.msg}")
        except RecursionError:
            return LineError(1, "body", "not a JSON array of events: nested too deeply")
        except ValueError as exc:  # a number JSON allows but we do not (NaN, 5,000 digits)
            return LineError(1, "body", f"not a JSON array of events: {exc}")
        assert isinstance(parsed, list)
        return list(parsed)
    return body.splitlines()


def _refusal(status_code: int, message: str, errors: Iterable[LineError]) -> Response:
    """Nothing stored: each error as {"line", "field", "message"}."""
    listed = [{"line": e.line, "field": e.field, "message": e.problem} for e in errors]
    return json_error(status_code, message, errors=listed)


def _seat_orgs(records: list[Any]) -> list[str]:
    """The orgs of the (already validated) seat events of a batch."""
    orgs: set[str] = set()
    for record in records:
        event = json.loads(record) if isinstance(record, str) and record.strip() else record
        if isinstance(event, dict) and event.get("type") == "seats":
            orgs.add(str(event["org"]))
    return sorted(orgs)


def _ingest(services: WebServices, records: list[Any]) -> IngestOutcome:
    with unit_of_work(services.engine) as session:
        return Ingestor(session, default_book=services.default_book).ingest(
            records, services.clock()
        )


async def ingest_usage(request: Request) -> Response:
    services = services_of(request)
    role = bearer_role(request, services)
    if role is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    if role is not Role.ADMIN:
        return json_error(403, "ingestion writes to the ledger: an admin token is required")
    try:
        raw = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return json_error(413, f"{exc}; split the batch")
    records = _records(raw)
    if isinstance(records, LineError):
        return _refusal(422, "invalid body", [records])
    try:
        outcome = await run_in_threadpool(_ingest, services, records)
    except ConcurrentIngestError as exc:  # rolled back: sending it again is safe
        return json_error(503, str(exc))
    if outcome.only_conflicts:
        return _refusal(409, "conflicting usage ids; nothing stored", outcome.errors)
    if not outcome.ok:
        return _refusal(422, "nothing stored", outcome.errors)
    if outcome.stored.get("seats"):
        # After the commit: each org's seat sync runs once its coalescing window closes.
        await run_in_threadpool(services.dispatcher.send, SCHEDULE_SEATS, [_seat_orgs(records)])
    return JSONResponse(
        {"stored": dict(outcome.stored), "duplicates": dict(outcome.duplicates)}, status_code=200
    )


# `/api/events` is the same endpoint under the name of what it takes (not only usage).
routes = [
    Route("/api/usage", ingest_usage, methods=["POST"]),
    Route("/api/events", ingest_usage, methods=["POST"]),
]
