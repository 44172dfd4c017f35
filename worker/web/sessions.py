"""Login sessions kept server-side, in Redis or in one process's memory, until they expire."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

DEFAULT_TTL_SECONDS = 8 * 3600
# Redis keys hold a hash of the session id: whoever can list the keys cannot use them.
REDIS_KEY_PREFIX = "billing:web_session:"


def new_secret() -> str:
    """A random, URL-safe value of 256 bits: session ids and CSRF tokens."""
    return secrets.token_urlsafe(32)


def token_fingerprint(token: str) -> str:
    """What a session keeps of the token it was opened with: a hash, never the token. The role
    is looked up through it at each request, so a token removed from the settings (or moved
    from admin to support) takes its sessions with it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class LoginSession:
    session_id: str  # the cookie's value
    token_fingerprint: str
    csrf_token: str  # every form of the session posts it back


class SessionStore(Protocol):
    """Opens, finds and closes login sessions; a session lives `ttl_seconds` from its opening."""

    @property
    def ttl_seconds(self) -> int: ...

    def open(self, token_fingerprint: str) -> LoginSession: ...

    def find(self, session_id: str) -> LoginSession | None: ...

    def close(self, session_id: str) -> None: ...


class MemorySessionStore:
    """Sessions in this process's memory: tests, and a web process without Redis."""

    def __init__(
        self,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[LoginSession, float]] = {}

    @property
    def ttl_seconds(self) -> int:
        return self._ttl_seconds

    def open(self, token_fingerprint: str) -> LoginSession:
        session = LoginSession(new_secret(), token_fingerprint, new_secret())
        now = self._clock()
        with self._lock:
            expired = [key for key, (_, until) in self._sessions.items() if until <= now]
            for key in expired:
                del self._sessions[key]
            self._sessions[session.session_id] = (session, now + self._ttl_seconds)
        return session

    def find(self, session_id: str) -> LoginSession | None:
        with self._lock:
            found = self._sessions.get(session_id)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


class RedisSessionStore:
    """Sessions in Redis, shared by every web process; Redis expires them."""

    def __init__(self, client: redis.Redis, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self._ttl_seconds = ttl_seconds

    @property
    def ttl_seconds(self) -> int:
        return self._ttl_seconds

    @staticmethod
    def key(session_id: str) -> str:
        return REDIS_KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()

    def open(self, token_fingerprint: str) -> LoginSession:
        session = LoginSession(new_secret(), token_fingerprint, new_secret())
        value = json.dumps({"token": session.token_fingerprint, "csrf": session.csrf_token})
        self.client.set(self.key(session.session_id), value, ex=self._ttl_seconds)
        return session

    def find(self, session_id: str) -> LoginSession | None:
        if not session_id:
            return None
        raw = self.client.get(self.key(session_id))
        if not isinstance(raw, bytes | str):
            return None
        value = json.loads(raw)
        return LoginSession(session_id, str(value["token"]), str(value["csrf"]))

    def close(self, session_id: str) -> None:
        if session_id:
            self.client.delete(self.key(session_id))
