"""Per-org locks: a Redis lock renewed while a slow block holds it, a lost lock stopping its
holder before the next write, no renewal thread outliving its lock, and the in-process locks.

Against the tests' own redis-server; every test has a scope of its own, so keys never collide,
and timeouts of about a second keep the tests fast.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext

import pytest
import redis

from billing.core.locks import (
    LocalLocks,
    LockBusyError,
    LockLostError,
    confirm_held_locks,
    org_lock,
)
from tests.conftest import REDIS_TEST_URL

TIMEOUT_SECONDS = 1.0
ORG_ID = "org_1"
RENEWAL_THREAD = "billing-lock-renewal"


@pytest.fixture
def scope() -> str:
    return f"test-locks-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def worker_a() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    yield client
    client.close()


@pytest.fixture
def worker_b() -> Iterator[redis.Redis]:
    """A second worker: a client with connections of its own."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    yield client
    client.close()


def _key(scope: str) -> str:
    return f"billing:lock:{scope}:{ORG_ID}"


def _renewal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(RENEWAL_THREAD)]


def test_a_block_slower_than_the_timeout_keeps_its_org_from_a_second_holder(
    scope: str, worker_a: redis.Redis, worker_b: redis.Redis
) -> None:
    with org_lock(worker_a, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS):
        time.sleep(TIMEOUT_SECONDS * 1.5)  # past the timeout: without renewal the key is gone
        assert worker_b.pttl(_key(scope)) > 0
        with (
            pytest.raises(LockBusyError, match="held by another worker"),
            org_lock(worker_b, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS, wait_seconds=0.3),
        ):
            pytest.fail("a second worker took the org while the first still ran")
        confirm_held_locks()  # still the first worker's: its writes go ahead
    with org_lock(worker_b, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS, wait_seconds=0.3):
        pass  # released at the end of the block: the next holder gets it at once


def test_a_second_holder_waiting_for_a_slow_block_gets_the_org_only_after_it(
    scope: str, worker_a: redis.Redis, worker_b: redis.Redis
) -> None:
    spans: dict[str, tuple[float, float]] = {}

    def second() -> None:
        with org_lock(worker_b, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS, wait_seconds=5):
            spans["b"] = (time.monotonic(), time.monotonic())

    with org_lock(worker_a, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS):
        started_at = time.monotonic()
        waiter = threading.Thread(target=second, daemon=True)
        waiter.start()
        time.sleep(TIMEOUT_SECONDS * 1.5)
        spans["a"] = (started_at, time.monotonic())
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert spans["b"][0] >= spans["a"][1], "the two holders of one org overlapped"


def test_a_holder_whose_lock_was_taken_stops_before_its_next_write(
    scope: str, worker_a: redis.Redis, worker_b: redis.Redis
) -> None:
    other = worker_b.lock(_key(scope), timeout=10, thread_local=False)
    with org_lock(worker_a, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS):
        confirm_held_locks()
        worker_b.delete(_key(scope))  # Redis lost the key (a restart without its data) ...
        assert other.acquire(blocking=False)  # ... and another worker took the org
        with pytest.raises(LockLostError, match=f"{scope} lock for org 'org_1' was lost"):
            confirm_held_locks()
        with pytest.raises(LockLostError, match="lost"):
            confirm_held_locks()  # and every write after it
    assert other.owned(), "the first holder's release dropped the other worker's lock"
    other.release()


def test_a_renewal_that_finds_the_lock_gone_stops_renewing_and_refuses_the_next_write(
    scope: str, worker_a: redis.Redis, worker_b: redis.Redis
) -> None:
    with org_lock(worker_a, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS):
        worker_b.delete(_key(scope))
        time.sleep(TIMEOUT_SECONDS / 3 * 2)  # at least one renewal
        assert not _renewal_threads(), "the renewal kept running on a lock that is gone"
        assert not worker_b.exists(_key(scope)), "a renewal recreated a lock it had lost"
        with pytest.raises(LockLostError, match="expired or taken by another worker"):
            confirm_held_locks()


@pytest.mark.parametrize("ends", ["normally", "with an error", "after losing the lock"])
def test_the_renewal_thread_ends_with_the_block(
    scope: str, worker_a: redis.Redis, worker_b: redis.Redis, ends: str
) -> None:
    before = set(threading.enumerate())
    with (
        pytest.raises(ValueError, match="the block failed")
        if ends == "with an error"
        else nullcontext(),
        org_lock(worker_a, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS),
    ):
        assert len(_renewal_threads()) == 1
        if ends == "after losing the lock":
            worker_b.delete(_key(scope))
        time.sleep(TIMEOUT_SECONDS / 2)  # one renewal
        if ends == "with an error":
            raise ValueError("the block failed")
    assert not _renewal_threads()
    assert set(threading.enumerate()) <= before
    assert not worker_b.exists(_key(scope))


def test_confirming_checks_only_the_locks_of_the_thread_that_holds_them(
    scope: str, worker_a: redis.Redis, worker_b: redis.Redis
) -> None:
    outside: list[BaseException | None] = []

    def write_elsewhere() -> None:
        try:
            confirm_held_locks()
            outside.append(None)
        except LockLostError as exc:
            outside.append(exc)

    with org_lock(worker_a, scope, ORG_ID, timeout_seconds=TIMEOUT_SECONDS):
        worker_b.delete(_key(scope))
        other = threading.Thread(target=write_elsewhere)
        other.start()
        other.join()
        with pytest.raises(LockLostError):
            confirm_held_locks()
    assert outside == [None]
    confirm_held_locks()  # no lock held any more: nothing to check


def test_local_locks_exclude_the_threads_of_one_process() -> None:
    locks = LocalLocks(wait_seconds=0.1)
    busy: list[bool] = []

    def second() -> None:
        try:
            with locks("usage", ORG_ID):
                busy.append(False)
        except LockBusyError:
            busy.append(True)

    with locks("usage", ORG_ID):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        confirm_held_locks()  # local locks never expire: nothing to confirm
    with locks("usage", ORG_ID):
        pass
    assert busy == [True]
