"""The Redis counters behind quotas: one atomic Lua script call, one round trip, per check.

Two scripts, each deciding a check and, in the same call, opening the gate that lets a denial
or a crossing be written to `quota_events` at most once a second:

- the sliding one-second window (`tasks_per_second`) per org: one string of binary records
  (`billing.quotas.window`) on Redis's own clock (`TIME`): a per-second limit needs one clock
  for all the machines that share it, and the caller's `now` (seconds apart between hosts)
  cannot provide that. The script drops the expired records, compares the sum with the limit
  and admits the check, so a burst from any number of processes is cut at exactly the limit.
- the month counter (`tasks_per_month`): one integer per org and calendar month (UTC, chosen by
  the caller's `now`). A missing key answers "needs seed" instead of counting from zero; the
  caller then passes the count stored in the database and the script installs it (once: the
  script is atomic, so of several processes seeding at once the first wins and the others count
  on top of it). Keys live until a day after their month ends (at least an hour, by Redis's
  clock).

A check's arguments are one binary string, `(limit, hard, amount, consume)` packed big-endian
as `>qBqB` (limit -1 = unlimited; unpacked in C by the script, cheaper than parsing text),
after the counter's key and the gate of the quota's one decision: a hard quota is only ever
denied, a soft one only ever crossed. `CheckCall` holds them encoded once per org, quota and
month, so the common check (one unit, consumed) sends a tuple built in advance. Scripts are
called by SHA (`EVALSHA`); a server that lost them (restart, `SCRIPT FLUSH`) answers NOSCRIPT,
and the counters load both scripts and send the check again. Amounts stay below 2**53 (Lua's
numbers are doubles).

The reply is one integer (an array costs the client a parse per element): `-1` when the month
key needs a seed, else `used * 4 + allowed * 2 + gate`, where `used` counts this check when it
was admitted and consumed (the usage before it otherwise), and `gate` says the check opened
its decision's one-second gate (consuming checks denied, or allowed past the limit, only).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import cast

import redis
from redis.exceptions import NoScriptError

from billing.quotas.window import WINDOW_CHECK_LUA

MONTH_KEY_GRACE_SECONDS = 86_400
MIN_KEY_TTL_SECONDS = 3_600
GATE_MILLISECONDS = 1_000
MAX_AMOUNT = 2**53 - 1

_HEAD = """
local limit, hard, amount, consume = struct.unpack('>i8Bi8B', ARGV[1])
hard, consume = hard == 1, consume == 1
"""
_STATIC = struct.Struct(">qB")  # limit, hard: encoded once
_DYNAMIC = struct.Struct(">qB")  # amount, consume: encoded per check but for the common one

# KEYS[2]: the gate of the quota's decision (denied when hard, exceeded when soft).
_TAIL = f"""
local gate = 0
if consume and limit >= 0 and (allowed == 0 or used > limit) then
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', {GATE_MILLISECONDS}) then gate = 1 end
end
return used * 4 + allowed * 2 + gate
"""

# KEYS[1]: the month's counter. A seeding call adds ARGV[2], the count stored in the database,
# and ARGV[3], when the key may expire (Unix seconds).
_MONTH_CHECK_LUA = f"""
local value = redis.call('GET', KEYS[1])
if not value then
  if not ARGV[2] then return -1 end
  value = ARGV[2]
  local ttl = tonumber(ARGV[3]) - tonumber(redis.call('TIME')[1])
  if ttl < {MIN_KEY_TTL_SECONDS} then ttl = {MIN_KEY_TTL_SECONDS} end
  redis.call('SET', KEYS[1], value, 'EX', ttl)
end
local used = tonumber(value)
local allowed = 1
if limit >= 0 and hard and used + amount > limit then
  allowed = 0
elseif consume and amount > 0 then
  used = redis.call('INCRBY', KEYS[1], amount)
end
"""

WINDOW_SCRIPT = _HEAD + WINDOW_CHECK_LUA + _TAIL
MONTH_SCRIPT = _HEAD + _MONTH_CHECK_LUA + _TAIL
_EVALSHA = "EVALSHA"


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class CheckCall:
    """The EVALSHA of one org's quota, encoded once: `hot` is the whole call for one unit,
    consumed; `args` builds the others."""

    head: tuple[str | bytes, ...]
    prefix: bytes
    hot: tuple[str | bytes, ...]

    def args(self, amount: int, consume: bool) -> tuple[str | bytes, ...]:
        return (*self.head, self.prefix + _DYNAMIC.pack(amount, consume))

    def seeding(
        self, amount: int, consume: bool, seed: int, expire_at_unix: int
    ) -> tuple[str | bytes, ...]:
        """The month's call that installs `seed` when the key is still missing."""
        return (
            *self.args(amount, consume),
            b"%d" % seed,
            b"%d" % (expire_at_unix + MONTH_KEY_GRACE_SECONDS),
        )


class QuotaCounters:
    """The sliding one-second windows and the month counters, each check one script call."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._sources = {_sha(WINDOW_SCRIPT): WINDOW_SCRIPT, _sha(MONTH_SCRIPT): MONTH_SCRIPT}
        self._window_sha = _sha(WINDOW_SCRIPT)
        self._month_sha = _sha(MONTH_SCRIPT)

    def window_call(self, key: str, gate: str, limit: int | None, *, hard: bool) -> CheckCall:
        """The call counting units in the one-second window at `key`."""
        return _call(self._window_sha, key, gate, limit, hard=hard)

    def month_call(self, key: str, gate: str, limit: int | None, *, hard: bool) -> CheckCall:
        """The call counting units of the month at `key` (-1 while the key needs a seed)."""
        return _call(self._month_sha, key, gate, limit, hard=hard)

    def run(self, args: tuple[str | bytes, ...]) -> int:
        """Send one check; after a NOSCRIPT, load the scripts and send it again."""
        try:
            return cast(int, self._client.execute_command(*args))  # type: ignore[no-untyped-call]
        except NoScriptError:
            for source in self._sources.values():
                self._client.script_load(source)
            return cast(int, self._client.execute_command(*args))  # type: ignore[no-untyped-call]


def _call(sha: str, key: str, gate: str, limit: int | None, *, hard: bool) -> CheckCall:
    head: tuple[str | bytes, ...] = (_EVALSHA, sha.encode(), b"2", key.encode(), gate.encode())
    prefix = _STATIC.pack(-1 if limit is None else limit, hard)
    return CheckCall(head, prefix, (*head, prefix + _DYNAMIC.pack(1, True)))
