"""Per-org mutual exclusion: across every worker process and machine (Redis locks), or within
one process (`LocalLocks`, for runs that have no Redis: the in-process demo and simulation)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis
from redis.exceptions import LockNotOwnedError


class LockBusyError(RuntimeError):
    """Another process holds the lock; the caller retries later."""


@contextmanager
def org_lock(
    client: redis.Redis,
    scope: str,
    org_id: str,
    *,
    timeout_seconds: float = 120,
    wait_seconds: float = 10,
) -> Iterator[None]:
    """Hold `billing:lock:{scope}:{org_id}` while the block runs.

    The lock expires after `timeout_seconds` so a killed worker cannot hold it forever; that
    must exceed the longest critical section (a few Stripe calls). Raises LockBusyError when
    it cannot be had within `wait_seconds`.
    """
    lock = client.lock(
        f"billing:lock:{scope}:{org_id}",
        timeout=timeout_seconds,
        blocking_timeout=wait_seconds,
        thread_local=False,
    )
    if not lock.acquire():
        raise LockBusyError(f"{scope} lock for org {org_id!r} is held by another worker")
    try:
        yield
    finally:
        # Expired and possibly taken by another worker: then nothing of ours to release.
        with suppress(LockNotOwnedError):
            lock.release()


class LocalLocks:
    """The same per-(scope, org) exclusion between the threads of one process."""

    def __init__(self, *, wait_seconds: float = 10) -> None:
        self.wait_seconds = wait_seconds
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def __call__(self, scope: str, org_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((scope, org_id), threading.Lock())
        if not lock.acquire(timeout=self.wait_seconds):
            raise LockBusyError(f"{scope} lock for org {org_id!r} is held by another thread")
        try:
            yield
        finally:
            lock.release()
