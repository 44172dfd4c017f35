"""`simulate(...)`: a timeline in, SPEC §11's result out — the world, the loop and the report.

Without a Redis URL every job runs in this process (the web process answers webhooks inline, in
its thread). With one, the jobs run on real Celery worker processes started here on that Redis;
they read the simulated instant from Redis (`BILLING_SIMULATED_CLOCK_KEY`), which this process
writes before each step. Either way the worker's code is production's; only the clock differs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from billing.core.periods import add_months, isoformat_z
from worker import clock, composition
from worker.settings import Settings, get_settings
from worker.simulate.beat_jobs import BeatRunner, CeleryBeat, InProcessBeat
from worker.simulate.report import simulation_json
from worker.simulate.runner import Simulator
from worker.simulate.timeline import Timeline
from worker.simulate.world import World, build_world

TAIL = timedelta(hours=2)  # SPEC §11: the default end is the last event + a month + 2 hours


def default_span(timeline: Timeline) -> tuple[datetime, datetime] | None:
    """SPEC §11's defaults: the first event floored to the hour, the last + a month + 2 h."""
    first, last = timeline.first_at, timeline.last_at
    if first is None or last is None:
        return None
    return first.replace(minute=0, second=0, microsecond=0), add_months(last, 1) + TAIL


def simulate(
    timeline: Timeline,
    *,
    start_at: datetime,
    end_at: datetime,
    database_url: str | None = None,
    redis_url: str | None = None,
    workers: int = 2,
    on_step: Callable[[datetime], None] = lambda _at: None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the timeline from `start_at` to `end_at`; the result object of SPEC §11."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="billing-simulate-"))
    overrides: dict[str, Any] = {}
    if redis_url:
        overrides = {
            "redis_url": redis_url,
            # The Redis broker whatever BILLING_BROKER_URL says: a step settles once the
            # broker's Redis queue is empty (beat_jobs.CeleryBeat.settle).
            "broker_url": redis_url,
            "web_inline_tasks": False,
            "stripe_budget": "redis",
            "org_locks": "redis",
            "simulated_clock_key": f"billing:simulate:{uuid.uuid4().hex}:now",
        }
    current = [start_at]
    with (
        build_world(
            start_at=start_at,
            workdir=workdir,
            books=_books(timeline, get_settings().book),
            database_url=database_url,
            overrides=overrides,
        ) as world,
        _runner(world, workers) as beat,
        clock.installed(lambda: current[0]),
    ):

        def set_now(at: datetime) -> None:
            current[0] = at
            if world.settings.simulated_clock_key:
                composition.redis_client(world.settings).set(
                    world.settings.simulated_clock_key, isoformat_z(at), ex=86_400
                )

        simulator = Simulator(
            world, timeline, beat, start_at, end_at, on_step=on_step, set_now=set_now
        )
        simulator.run()
        stats = world.emulator.state.stats()
        with Session(composition.database(world.settings)) as session:
            return simulation_json(
                session=session,
                gateway=composition.stripe_gateway(world.settings),
                start_at=start_at,
                end_at=end_at,
                refused=[*timeline.refused, *simulator.refused],
                stripe_requests=int(stats["requests_total"]),
                meter_events_sent=int(stats["meter_events_total"]),
            )


def _books(timeline: Timeline, default_book: str) -> list[str]:
    """The price books the timeline's orgs use: their catalog is synced before anything runs."""
    named = {e.body.get("book") for e in timeline.entries if e.body.get("type") == "org"}
    return sorted({str(name) for name in named if isinstance(name, str)} | {default_book})


@contextmanager
def _runner(world: World, workers: int) -> Iterator[BeatRunner]:
    if not world.settings.simulated_clock_key:
        yield InProcessBeat(world.settings, world.clocks)
        return
    from worker.celery_app import make_celery  # noqa: PLC0415 - only with a broker

    celery = make_celery(world.settings)
    process = _start_workers(world.settings, workers, celery)
    try:
        yield CeleryBeat(world.settings, world.clocks, celery)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _start_workers(settings: Settings, count: int, celery: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": settings.database_url,
        "BILLING_REDIS_URL": settings.redis_url,
        "BILLING_BROKER_URL": settings.redis_url,
        "BILLING_BROKER_QUEUE": settings.broker_queue,
        "BILLING_STRIPE_API_BASE": settings.stripe_api_base,
        "BILLING_STRIPE_BUDGET": "redis",
        "BILLING_SIMULATED_CLOCK_KEY": settings.simulated_clock_key or "",
    }
    env.pop("STRIPE_API_KEY", None)
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "worker.cli", "worker", f"--concurrency={count}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if celery.control.ping(timeout=1.0):
            return process
    process.terminate()
    raise RuntimeError("the simulation's Celery worker did not start within 60 s")
