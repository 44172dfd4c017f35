"""`POST /api/usage`: the `billing ingest` event formats over HTTP, validated, all or nothing."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.ledger.ingest import Ingestor, IngestOutcome
from models.db import unit_of_work
from worker.web.auth import Role, bearer_role
from worker.web.common import json_error, services_of
from worker.web.services import SCHEDULE_SEATS, WebServices

MAX_BODY_BYTES = 20 * 1024 * 1024


def _records(body: str) -> list[Any]:
    """A JSON array of events, or JSON Lines (one event per line, blank lines skipped)."""
    stripped = body.lstrip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno}: body: not a JSON array: {exc.msg}") from None
        return [json.dumps(item) if not isinstance(item, str) else item for item in parsed]
    return body.splitlines()


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
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return json_error(413, f"body over {MAX_BODY_BYTES} bytes; split the batch")
    try:
        records = _records(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return json_error(422, "invalid body", errors=[str(exc)])
    outcome = await run_in_threadpool(_ingest, services, records)
    if not outcome.ok:
        return json_error(422, "nothing stored", errors=[str(error) for error in outcome.errors])
    if outcome.stored.get("seats"):
        # After the commit: each org's seat sync runs once its coalescing window closes.
        await run_in_threadpool(services.dispatcher.send, SCHEDULE_SEATS, [_seat_orgs(records)])
    return JSONResponse(
        {"stored": dict(outcome.stored), "duplicates": dict(outcome.duplicates)}, status_code=200
    )


routes = [Route("/api/usage", ingest_usage, methods=["POST"])]
