"""The Redis counters behind quotas: one atomic Lua script, one round trip per check.

The script (`QuotaCounters`) keeps two kinds of counter and, in the same call, the gate that
lets a denial or a crossing be written to `quota_events` at most once a second:

- the sliding one-second window (`tasks_per_second`) per org: a sorted set of the checks
  admitted in the last second (score = Redis time in µs, member = `seq:amount`) beside a hash
  holding their running sum. The script trims the expired entries, compares the sum with the
  limit and admits the check, so a burst from any number of processes is cut at exactly the
  limit. The window runs on Redis's own clock (`TIME`): a per-second limit needs one clock for
  all the machines that share it, and the caller's `now` (seconds apart between hosts) cannot
  provide that.
- the month counter (`tasks_per_month`): one integer per org and calendar month (UTC, chosen by
  the caller's `now`). A missing key answers "needs seed" instead of counting from zero; the
  caller then passes the count stored in the database and the script installs it (once: the
  script is atomic, so of several processes seeding at once the first wins and the others count
  on top of it). Keys live until a day after their month ends (at least an hour, by Redis's
  clock).

The reply is one integer (an array costs the client a parse per element): `-1` when the month
key needs a seed, else `used * 4 + allowed * 2 + gate`, where `used` counts this check when it
was admitted and consumed (the usage before it otherwise), and `gate` says the check opened
its decision's one-second gate (consuming checks denied, or allowed past the limit, only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

WINDOW_MICROSECONDS = 1_000_000
MONTH_KEY_GRACE_SECONDS = 86_400
MIN_KEY_TTL_SECONDS = 3_600
GATE_MILLISECONDS = 1_000

# KEYS[1]: the counter (the window's sorted set, or the month's integer); KEYS[2]: the window's
# hash {sum, seq} (unused by a month); KEYS[3], KEYS[4]: the gates of a denial and of a crossing.
# ARGV[1]: 'w' (window) or 'm' (month); ARGV[2]: amount; ARGV[3]: limit (-1 = unlimited);
# ARGV[4]: hard (1/0); ARGV[5]: consume (1/0); for a month, ARGV[6]: expire-at (Unix seconds)
# and ARGV[7]: seed ('' = none).
_QUOTA_CHECK = f"""
local amount = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local consume = ARGV[5] == '1'
local used
if ARGV[1] == 'w' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cutoff = now - {WINDOW_MICROSECONDS}
  local state = redis.call('HMGET', KEYS[2], 'sum', 'seq')
  used = tonumber(state[1] or '0')
  local seq = tonumber(state[2] or '0')
  local trimmed = false
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do
      freed = freed + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
    used = used - freed
    if used < 0 then used = 0 end
    trimmed = true
  end
  if (limit < 0 or ARGV[4] ~= '1' or used + amount <= limit) and consume then
    seq = seq + 1
    used = used + amount
    redis.call('ZADD', KEYS[1], now, seq .. ':' .. ARGV[2])
    redis.call('HSET', KEYS[2], 'sum', used, 'seq', seq)
    local ttl = {WINDOW_MICROSECONDS // 1000 + 1000}
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
    amount = 0
  elseif trimmed then
    redis.call('HSET', KEYS[2], 'sum', used)
  end
else
  local value = redis.call('GET', KEYS[1])
  if not value then
    if ARGV[7] == '' then return -1 end
    value = ARGV[7]
    local ttl = tonumber(ARGV[6]) - tonumber(redis.call('TIME')[1])
    if ttl < {MIN_KEY_TTL_SECONDS} then ttl = {MIN_KEY_TTL_SECONDS} end
    redis.call('SET', KEYS[1], value, 'EX', ttl)
  end
  used = tonumber(value)
  if (limit < 0 or ARGV[4] ~= '1' or used + amount <= limit) and consume then
    used = redis.call('INCRBY', KEYS[1], amount)
    amount = 0
  end
end
local allowed = 1
if amount > 0 and limit >= 0 and ARGV[4] == '1' and used + amount > limit then allowed = 0 end
local gate = 0
if consume and limit >= 0 then
  local key = nil
  if allowed == 0 then key = KEYS[3] elseif used > limit then key = KEYS[4] end
  if key and redis.call('SET', key, '1', 'NX', 'PX', {GATE_MILLISECONDS}) then gate = 1 end
end
return used * 4 + allowed * 2 + gate
"""


@dataclass(frozen=True)
class CounterOutcome:
    """What a counter said: admitted or not, the usage it counted (see the module), and
    whether this check opened its decision's gate."""

    allowed: bool
    used: int
    gate_opened: bool = False


def _limit_arg(limit: int | None) -> int:
    return -1 if limit is None else limit


class QuotaCounters:
    """The sliding one-second windows and the month counters, each check one script call."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_QUOTA_CHECK)

    def window(
        self,
        key: str,
        gates: tuple[str, str],
        amount: int,
        limit: int | None,
        *,
        hard: bool,
        consume: bool,
    ) -> CounterOutcome:
        """Count `amount` units in the one-second window at `key` (a denied check, of a hard
        limit, admits nothing); `gates` are the denial's and the crossing's gate keys."""
        reply = self._script(
            keys=[key, f"{key}:sum", *gates],
            args=["w", amount, _limit_arg(limit), int(hard), int(consume)],
        )
        return _outcome(cast(int, reply))

    def month(
        self,
        key: str,
        gates: tuple[str, str],
        amount: int,
        limit: int | None,
        *,
        hard: bool,
        consume: bool,
        expire_at_unix: int,
        seed: int | None,
    ) -> CounterOutcome | None:
        """Count `amount` units of the month at `key`; None when the key is missing and `seed`
        was not given."""
        reply = cast(
            int,
            self._script(
                keys=[key, key, *gates],
                args=[
                    "m",
                    amount,
                    _limit_arg(limit),
                    int(hard),
                    int(consume),
                    expire_at_unix + MONTH_KEY_GRACE_SECONDS,
                    "" if seed is None else seed,
                ],
            ),
        )
        return None if reply == -1 else _outcome(reply)


def _outcome(reply: int) -> CounterOutcome:
    used, flags = divmod(int(reply), 4)
    return CounterOutcome(allowed=bool(flags & 2), used=used, gate_opened=bool(flags & 1))
