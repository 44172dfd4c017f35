"""Redis counters behind quotas, each one atomic Lua script shared by every process.

Two counters:

- `SecondWindow` — a sliding one-second window per org: a sorted set of the checks admitted in
  the last second (score = Redis time in µs, member = `seq:amount`) beside a hash holding their
  running sum. One script trims the expired entries, compares the sum with the limit and admits
  the check, so a burst from any number of processes is cut at exactly the limit. The window
  runs on Redis's own clock (`TIME`): a per-second limit needs one clock for all the machines
  that share it, and the caller's `now` (seconds apart between hosts) cannot provide that.
- `MonthCounter` — one integer per org and calendar month (UTC, chosen by the caller's `now`).
  A missing key answers "needs seed" instead of counting from zero; the caller then passes the
  count stored in the database and the script installs it (once: the script is atomic, so of
  several processes seeding at once the first wins and the others count on top of it).
  Keys live until a day after their month ends (at least an hour, by Redis's clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

WINDOW_MICROSECONDS = 1_000_000
MONTH_KEY_GRACE_SECONDS = 86_400
MIN_KEY_TTL_SECONDS = 3_600

# KEYS[1]: sorted set of admitted checks; KEYS[2]: hash {sum, seq}.
# ARGV: window µs, amount, limit (-1 = unlimited), hard (1/0), consume (1/0).
# Returns {allowed (1/0), used, Redis time µs}: `used` counts this check when it was admitted
# and consumed, and is the usage before it otherwise.
_SECOND_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cutoff = now - window
local used = tonumber(redis.call('HGET', KEYS[2], 'sum') or '0')
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for _, member in ipairs(expired) do
    freed = freed + tonumber(string.match(member, ':(%d+)$'))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  used = used - freed
  if used < 0 then used = 0 end
  redis.call('HSET', KEYS[2], 'sum', used)
end
local allowed = 1
if limit >= 0 and ARGV[4] == '1' and used + amount > limit then allowed = 0 end
if allowed == 1 and ARGV[5] == '1' then
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('ZADD', KEYS[1], now, seq .. ':' .. ARGV[2])
  used = redis.call('HINCRBY', KEYS[2], 'sum', amount)
  local ttl = math.floor(window / 1000) + 1000
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {allowed, used, now}
"""

# KEYS[1]: the month counter. ARGV: amount, limit (-1 = unlimited), hard (1/0), consume (1/0),
# expire-at (Unix seconds), seed ('' = none), minimum TTL (seconds). Returns {-1, 0} when the
# key is missing and no seed was given; else {allowed (1/0), used} as in _SECOND_WINDOW.
_MONTH_COUNTER = """
local value = redis.call('GET', KEYS[1])
if not value then
  if ARGV[6] == '' then return {-1, 0} end
  value = ARGV[6]
  local ttl = tonumber(ARGV[5]) - tonumber(redis.call('TIME')[1])
  if ttl < tonumber(ARGV[7]) then ttl = tonumber(ARGV[7]) end
  redis.call('SET', KEYS[1], value, 'EX', ttl)
end
local used = tonumber(value)
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local allowed = 1
if limit >= 0 and ARGV[3] == '1' and used + amount > limit then allowed = 0 end
if allowed == 1 and ARGV[4] == '1' then
  used = redis.call('INCRBY', KEYS[1], amount)
end
return {allowed, used}
"""


@dataclass(frozen=True)
class CounterOutcome:
    """What a counter said: admitted or not, and the usage it counted (see the scripts)."""

    allowed: bool
    used: int


def _limit_arg(limit: int | None) -> int:
    return -1 if limit is None else limit


class SecondWindow:
    """Sliding one-second windows of admitted units, one per key, on Redis's clock."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SECOND_WINDOW)

    def hit(
        self, key: str, amount: int, limit: int | None, *, hard: bool, consume: bool
    ) -> tuple[CounterOutcome, int]:
        """Count `amount` units in the window at `key`; returns the outcome and Redis's time (µs).

        A denied check (hard limit, over it) admits nothing.
        """
        reply = cast(
            list[int],
            self._script(
                keys=[key, f"{key}:sum"],
                args=[WINDOW_MICROSECONDS, amount, _limit_arg(limit), int(hard), int(consume)],
            ),
        )
        return CounterOutcome(bool(reply[0]), int(reply[1])), int(reply[2])


class MonthCounter:
    """Monthly counters that refuse to count from a missing key until seeded."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_MONTH_COUNTER)

    def hit(
        self,
        key: str,
        amount: int,
        limit: int | None,
        *,
        hard: bool,
        consume: bool,
        expire_at_unix: int,
        seed: int | None,
    ) -> CounterOutcome | None:
        """Count `amount` units; None when the key is missing and `seed` was not given."""
        reply = cast(
            list[int],
            self._script(
                keys=[key],
                args=[
                    amount,
                    _limit_arg(limit),
                    int(hard),
                    int(consume),
                    expire_at_unix + MONTH_KEY_GRACE_SECONDS,
                    "" if seed is None else seed,
                    MIN_KEY_TTL_SECONDS,
                ],
            ),
        )
        if int(reply[0]) == -1:
            return None
        return CounterOutcome(bool(reply[0]), int(reply[1]))
