"""A support console world built through the emulator: `support_world.jsonl` run by `billing
simulate` (the real worker, Stripe emulator, webhooks, reconciliation) into a database file,
then the web app served over that database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from models.db import make_engine
from tests.worker.web_server import serving
from worker.simulate.simulation import default_span, simulate
from worker.simulate.timeline import parse_timeline
from worker.web.app import create_app
from worker.web.auth import COOKIE
from worker.web.services import SYNC_SEATS, InlineDispatcher, WebServices
from worker.web.sessions import token_fingerprint

SUPPORT = "support-console-token"
ADMIN = "admin-console-token"
NOW = datetime(2027, 2, 10, 12, tzinfo=UTC)  # inside the second month: January is the last
END = datetime(2027, 3, 1, 2, tzinfo=UTC)
TIMELINE = Path(__file__).parent / "support_world.jsonl"


def build(workdir: Path) -> dict[str, Any]:
    """Runs the timeline into `workdir/world.db`; SPEC §11's result."""
    timeline = parse_timeline(TIMELINE.read_text().splitlines())
    span = default_span(timeline)
    assert span is not None
    url = f"sqlite:///{workdir / 'world.db'}"
    return simulate(timeline, start_at=span[0], end_at=END, database_url=url, workdir=workdir)


@dataclass
class Site:
    url: str
    engine: Engine
    services: WebServices
    result: dict[str, Any]
    resyncs: list[str]

    def api(self, path: str, token: str = SUPPORT) -> httpx.Response:
        return httpx.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def page(self, path: str, token: str = SUPPORT) -> httpx.Response:
        """A page as a logged-in browser gets it (a session opened with `token`)."""
        session = self.services.sessions.open(token_fingerprint(token))
        return httpx.get(f"{self.url}{path}", cookies={COOKIE: session.session_id}, timeout=30)

    def invoice_id(self, org: str, reason: str = "subscription_cycle", index: int = 0) -> str:
        found = [
            i["id"] for i in self.result["orgs"][org]["invoices"] if i["billing_reason"] == reason
        ]
        return str(found[index])


@contextmanager
def site(workdir: Path, result: dict[str, Any], dispatcher: Any = None) -> Iterator[Site]:
    engine = make_engine(f"sqlite:///{workdir / 'world.db'}")
    resyncs: list[str] = []
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_x",
        support_tokens=(SUPPORT,),
        admin_tokens=(ADMIN,),
        dispatcher=dispatcher or InlineDispatcher({SYNC_SEATS: resyncs.append}),
        clock=lambda: NOW,
    )
    try:
        with serving(create_app(services=services)) as url:
            yield Site(url, engine, services, result, resyncs)
    finally:
        engine.dispose()
