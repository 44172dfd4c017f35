"""Real Celery worker processes for the integration tests, and a client to send them tasks.

Every setting reaches the workers through the environment (as in production); each worker is
its own process group, so a test can SIGKILL a worker with its pool children at once, and the
fixture's teardown always stops whatever is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from worker.celery_app import make_celery
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WORKER_START_SECONDS = 60.0
# A task waits at most this long for its result; generous, because retries back off.
TASK_SECONDS = 240.0


class TaskFailedError(AssertionError):
    """A task ended in failure (or gave no result in time)."""


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children (one process group): no cleanup at all."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL the group if it does not go in time."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        # Pool children may outlive a dead parent for a moment; never leave any behind.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.alive():
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """The worker settings (as environment variables), the workers started, and a client."""

    settings: Settings
    env: Mapping[str, str]
    log_dir: Path
    concurrency: int = 2
    workers: list[WorkerProcess] = field(default_factory=list)
    _client: Celery | None = None

    @property
    def client(self) -> Celery:
        if self._client is None:
            self._client = make_celery(self.settings)
        return self._client

    # ------------------------------------------------------------------ workers

    def start_worker(self) -> WorkerProcess:
        name = f"it{len(self.workers) + 1}-{os.getpid()}@localhost"
        log_path = self.log_dir / f"worker-{len(self.workers) + 1}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker.celery_app",
                    "worker",
                    f"--concurrency={self.concurrency}",
                    "--loglevel=warning",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-Q",
                    self.settings.broker_queue,
                    "-n",
                    name,
                ],
                cwd=ROOT,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches the pool
            )
        worker = WorkerProcess(name, process, log_path)
        self.workers.append(worker)
        deadline = time.monotonic() + WORKER_START_SECONDS
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(
                    f"worker {name} exited with {process.returncode}:\n{worker.log_tail()}"
                )
            if self.client.control.ping(destination=[name], timeout=1.0):
                return worker
        worker.stop()
        raise RuntimeError(f"worker {name} did not answer a ping in time:\n{worker.log_tail()}")

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log_tail()}" for w in self.workers)

    # ------------------------------------------------------------------ tasks

    def send(self, name: str, *args: Any) -> AsyncResult:
        return self.client.send_task(name, args=list(args))

    def wait(self, results: Iterable[AsyncResult]) -> list[Any]:
        """Every result, in order; a failed task fails the test with the workers' logs."""
        values = []
        for result in results:
            try:
                values.append(result.get(timeout=TASK_SECONDS))
            except Exception as exc:
                raise TaskFailedError(
                    f"task {result.id} did not succeed: {exc!r}\n{self.logs()}"
                ) from exc
        return values

    def run(self, calls: Sequence[tuple[str, list[Any]]], *, copies: int = 1) -> list[Any]:
        """Send every call `copies` times (copies side by side, so they run concurrently)
        and wait for all of them; returns the first copy's results."""
        sent = [[self.send(name, *args) for _ in range(copies)] for name, args in calls]
        values = self.wait(result for copies_of in sent for result in copies_of)
        return values[::copies]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The workers' environment: this process's minus any BILLING_*/STRIPE_* setting, plus
    exactly the settings of this test."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BILLING_", "STRIPE_"))
    }
    env.update(
        {
            "BILLING_ENVIRONMENT": "test",
            "BILLING_DATABASE_URL": settings.database_url,
            "BILLING_REDIS_URL": settings.redis_url,
            "BILLING_BROKER_URL": settings.broker_url or settings.redis_url,
            "BILLING_BROKER_QUEUE": settings.broker_queue,
            "BILLING_ORG_LOCK_TIMEOUT_SECONDS": str(settings.org_lock_timeout_seconds),
            "BILLING_STRIPE_API_BASE": settings.stripe_api_base,
            "BILLING_STRIPE_BUDGET": "redis",
            "BILLING_STRIPE_REQUESTS_PER_SECOND": str(settings.stripe_requests_per_second),
            "BILLING_BROKER_VISIBILITY_TIMEOUT": str(settings.broker_visibility_timeout),
            "BILLING_TASK_SOFT_TIME_LIMIT": str(settings.task_soft_time_limit),
            "BILLING_TASK_TIME_LIMIT": str(settings.task_time_limit),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env
