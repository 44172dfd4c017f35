"""Per-org mutual exclusion: across every worker process and machine (Redis locks, renewed while
held), or within one process (`LocalLocks`, for runs that have no Redis: the in-process demo and
simulation).

A Redis lock carries a timeout so that a killed worker's orgs are free again soon after it died
(`BILLING_ORG_LOCK_TIMEOUT_SECONDS`, 60 s by default), not after the longest task could run. While
the block runs, a watchdog thread renews the lock every third of its timeout (redis-py's
`Lock.reacquire`: one atomic step that resets the expiry only if the key still holds our token),
so a slow block keeps its org for as long as it needs and a second holder waits or gets
LockBusyError. One watchdog thread per process renews every lock held in it (`_Renewer`: a block
holding a month-close chunk's 50 locks starts one thread, not 50); it stops renewing a lock, after
its renewal in flight, before the lock is released, and ends with the last lock.

A lock can still be lost: renewals that cannot reach Redis for a whole timeout, a key deleted by
hand, a Redis that restarted without its data and let another worker take the org. The holder
learns it before its next Stripe write: the gateway calls `confirm_held_locks()` before every
write it sends, which renews each Redis lock this thread holds, in the same atomic step that
checks it is still ours, and raises LockLostError (a LockBusyError: tasks retry it) otherwise,
or when Redis cannot answer; a renewal that already found the lock gone makes every later check
raise at once.
So no two pushes of one org overlap beyond the one request in flight when Redis itself lost the
key, and every write starts with a full timeout of lease ahead of it.

Why not a fencing token (an INCR counter stored with the lock, checked at write time): a fence
only protects a resource that compares tokens itself, and Stripe does not. Checking the counter
in Redis just before each call is the ownership check made here, with the same gap between the
check and Stripe receiving the request; renewal is what keeps a slow holder's lock from expiring
in the first place, and it needs no new key or schema. The idempotency keys and the `started`
rows around every write (billing.ledger.stripe_writes) make the call that was in flight safe to
resolve on the next run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

import redis
import structlog
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

log = structlog.get_logger(__name__)

# How long a lock outlives a holder that stopped renewing it (BILLING_ORG_LOCK_TIMEOUT_SECONDS).
DEFAULT_TIMEOUT_SECONDS = 60.0
RENEWALS_PER_TIMEOUT = 3


class LockBusyError(RuntimeError):
    """Another process holds the lock; the caller retries later."""


class LockLostError(LockBusyError):
    """A lock held by the running block was lost (expired, deleted or taken by another worker):
    the block stops before its next write, and, as for a busy lock, the job is retried later."""


class _Lease:
    """One held Redis lock, kept alive by the process's renewer (`_Renewer`) until `stop`."""

    def __init__(self, lock: Lock, name: str, timeout_seconds: float, org_id: str) -> None:
        self.name = name
        self.org_id = org_id
        self.lost: str | None = None  # why the lock is no longer ours, once it is known
        self.interval = timeout_seconds / RENEWALS_PER_TIMEOUT
        self._lock = lock
        self._timeout_seconds = timeout_seconds
        self._renewed_at = time.monotonic()

    def start(self) -> None:
        _RENEWER.add(self)

    def stop(self) -> None:
        """Stop renewing; waits for a renewal of this lease in flight."""
        _RENEWER.remove(self)

    def confirm(self) -> None:
        """Renew the lock now, or raise LockLostError if it is no longer ours."""
        if self.lost is not None:
            raise LockLostError(f"{self.name} was lost ({self.lost}): stopped before the write")
        sent_at = time.monotonic()
        try:
            self._lock.reacquire()
        except LockNotOwnedError as exc:
            self._lose("expired or taken by another worker")
            raise LockLostError(
                f"{self.name} was lost ({self.lost}): stopped before the write"
            ) from exc
        except redis.RedisError as exc:
            raise LockLostError(
                f"{self.name} could not be confirmed before the write: Redis did not answer"
            ) from exc
        self._renewed_at = sent_at

    def renew(self) -> bool:
        """One renewal (the renewer's); False once the lock is lost: no more renewals."""
        sent_at = time.monotonic()
        try:
            self._lock.reacquire()
        except LockNotOwnedError:
            self._lose("expired or taken by another worker")
            return False
        except redis.RedisError as exc:
            if sent_at - self._renewed_at >= self._timeout_seconds:
                self._lose(f"Redis did not answer for {self._timeout_seconds:g} s")
                return False
            log.warning("lock.renewal_failed", lock=self.name, error=str(exc))
            return True
        self._renewed_at = sent_at
        return True

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            log.error("lock.lost", lock=self.name, reason=reason)


class _Renewer:
    """The process's renewal thread: it renews every lease held in the process, each every
    third of its timeout, and runs only while there is one (a block holding a month-close
    chunk's 50 locks starts one thread, not 50). A lease found lost is renewed no more."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[_Lease, float] = {}  # lease -> when its next renewal is due (monotonic)
        self._renewing: _Lease | None = None
        self._thread: threading.Thread | None = None

    def add(self, lease: _Lease) -> None:
        with self._cond:
            self._due[lease] = time.monotonic() + lease.interval
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="billing-lock-renewal", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def remove(self, lease: _Lease) -> None:
        """Renew `lease` no more (after its renewal in flight); the last one ends the thread."""
        ending: threading.Thread | None = None
        with self._cond:
            self._due.pop(lease, None)
            while self._renewing is lease:
                self._cond.wait()
            if not self._due and self._thread is not None:
                ending, self._thread = self._thread, None
                self._cond.notify_all()
        if ending is not None and ending is not threading.current_thread():
            ending.join()

    def _run(self) -> None:
        me = threading.current_thread()
        with self._cond:
            while self._thread is me:
                if not self._due:
                    self._thread = None  # every lease was lost: the next add starts anew
                    return
                lease = min(self._due, key=self._due.__getitem__)
                delay = self._due[lease] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                self._due[lease] = time.monotonic() + lease.interval
                self._renewing = lease
                self._cond.release()
                try:
                    kept = lease.renew()
                finally:
                    self._cond.acquire()
                    self._renewing = None
                    self._cond.notify_all()
                if not kept:
                    self._due.pop(lease, None)


_RENEWER = _Renewer()


def _new_renewer_after_fork() -> None:
    """A forked child (a prefork worker) holds none of its parent's leases nor its thread."""
    global _RENEWER  # noqa: PLW0603 - one renewer per process
    _RENEWER = _Renewer()


os.register_at_fork(after_in_child=_new_renewer_after_fork)


# The Redis locks the running block holds (a stack: locks may nest), per thread and task.
_HELD: ContextVar[tuple[_Lease, ...]] = ContextVar("billing_held_org_locks", default=())


def confirm_held_locks() -> None:
    """Before a write the per-org locks protect: renew every Redis lock this thread holds, or
    raise LockLostError when one of them is no longer ours (or Redis cannot say)."""
    for lease in _HELD.get():
        lease.confirm()


@contextmanager
def confirming_only(org_ids: Collection[str]) -> Iterator[None]:
    """Within the block, writes confirm only the held locks of `org_ids`: a block holding many
    orgs' locks (a month-close chunk) writes for one org, or one request's orgs, at a time."""
    wanted = set(org_ids)
    narrowed = _HELD.set(tuple(lease for lease in _HELD.get() if lease.org_id in wanted))
    try:
        yield
    finally:
        _HELD.reset(narrowed)


@contextmanager
def org_lock(
    client: redis.Redis,
    scope: str,
    org_id: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    wait_seconds: float = 10,
) -> Iterator[None]:
    """Hold `billing:lock:{scope}:{org_id}` while the block runs, renewed every third of
    `timeout_seconds` (how long it outlives a holder that died).

    Raises LockBusyError when it cannot be had within `wait_seconds`. Writes inside the block
    call `confirm_held_locks()` first, which raises LockLostError once the lock was lost.
    """
    lock = client.lock(
        f"billing:lock:{scope}:{org_id}",
        timeout=timeout_seconds,
        blocking_timeout=wait_seconds,
        thread_local=False,  # the renewal thread extends the token this thread acquired
    )
    if not lock.acquire():
        raise LockBusyError(f"{scope} lock for org {org_id!r} is held by another worker")
    lease = _Lease(lock, f"{scope} lock for org {org_id!r}", timeout_seconds, org_id)
    held = _HELD.set((*_HELD.get(), lease))
    lease.start()
    try:
        yield
    finally:
        _HELD.reset(held)
        lease.stop()
        # Lost, and possibly taken by another worker: then nothing of ours to release.
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
