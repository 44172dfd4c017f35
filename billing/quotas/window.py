"""The per-second sliding window's Redis value: one string of fixed-size binary records.

Layout (big-endian signed 64-bit integers): one record `(ends_ms, units)` (16 bytes) per 10 ms
bucket that admitted checks, oldest first, then a 24-byte trailer `(live_until_ms, units,
head)`. `ends_ms` is the end of the bucket on Redis's clock (`TIME`, milliseconds); a record
counts in the window until Redis's clock reaches `ends_ms + 1000`, so every admitted unit
counts for at least one second and at most 1.011 s (a check can be denied up to 11 ms longer
than an exact sliding window would deny it, never admitted earlier). The trailer's `units` is
the sum of the records from `head` (the offset, from 1, of the first record still counted);
`live_until_ms` is when the key expires (Redis's clock).

A check reads the string and skips the expired records from `head` on (each record is skipped
by the writes once); only an admitted, consuming check of at least one unit writes. It writes
its record (a new one, or the bucket's last one added to) and the trailer after it with one
`SETRANGE`, so a write costs the same whatever the window holds; once more than 16 expired
records lie before `head`, the write rewrites the string without them (`SET`). Bounds: at most
101 counted records (one per bucket of the window, soft limits included: the checks of one
bucket add to its record) and 16 expired ones, 1,896 bytes. The key expires: a write that would
let a record outlive it sets it to expire 3 s later (`PX` or `PEXPIRE`, about every 2 s while
the org is busy), so an abandoned window is gone 3 s after its last admission. If Redis's clock
steps back, a check adds to the last record instead of appending an older one, so the records
stay in order. The layout is named by the key (see `billing.quotas.service`): a new layout takes
a new key.

`WINDOW_CHECK_LUA` is the body of the window's script (`billing.quotas.counters` adds the
argument parsing, the gate and the reply); `read_window` decodes a stored value in Python.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

WINDOW_MILLISECONDS = 1_000
BUCKET_MILLISECONDS = 10
KEY_TTL_MILLISECONDS = 3_000
# A write keeps the key's expiry while it is this far past the new record's last instant.
TTL_MARGIN_MILLISECONDS = 100
TRAILER_BYTES = 24
RECORD_BYTES = 16
# Expired records stay before `head` until they are this many; then a write drops them.
DEAD_RECORDS = 16
MAX_RECORDS = WINDOW_MILLISECONDS // BUCKET_MILLISECONDS + 1 + DEAD_RECORDS
MAX_BYTES = MAX_RECORDS * RECORD_BYTES + TRAILER_BYTES

_TRAILER = struct.Struct(">qqq")
_RECORD = struct.Struct(">qq")

# In: KEYS[1] (the window), `limit` (-1 = unlimited), `hard`, `amount`, `consume` (booleans).
# Out: `used` (counting this check when it was admitted) and `allowed` (1/0). Offsets are
# Lua's (from 1): the records still counted are [head, tail), the trailer starts at `tail`.
WINDOW_CHECK_LUA = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('GET', KEYS[1])
local used, head, tail, live_until = 0, 1, 1, 0
if data then
  tail = #data - {TRAILER_BYTES - 1}
  live_until, used, head = struct.unpack('>i8i8i8', data, tail)
  local cutoff = now - {WINDOW_MILLISECONDS}
  while head < tail do
    local ends, units = struct.unpack('>i8i8', data, head)
    if ends > cutoff then break end
    used = used - units
    head = head + {RECORD_BYTES}
  end
end
local allowed = 1
if limit >= 0 and hard and used + amount > limit then
  allowed = 0
elseif consume and amount > 0 then
  used = used + amount
  local ends = (math.floor(now / {BUCKET_MILLISECONDS}) + 1) * {BUCKET_MILLISECONDS}
  local units, at = amount, tail
  if head < tail then
    local last_ends, last_units = struct.unpack('>i8i8', data, tail - {RECORD_BYTES})
    if last_ends >= ends then
      ends, units, at = last_ends, last_units + amount, tail - {RECORD_BYTES}
    end
  end
  local renew = live_until < ends + {WINDOW_MILLISECONDS + TTL_MARGIN_MILLISECONDS}
  if renew then live_until = now + {KEY_TTL_MILLISECONDS} end
  if head < tail and head <= {1 + DEAD_RECORDS * RECORD_BYTES} then
    redis.call('SETRANGE', KEYS[1], at - 1,
      struct.pack('>i8i8i8i8i8', ends, units, live_until, used, head))
    if renew then redis.call('PEXPIRE', KEYS[1], {KEY_TTL_MILLISECONDS}) end
  else
    local kept = ''
    if head < at then kept = string.sub(data, head, at - 1) end
    local value = kept .. struct.pack('>i8i8i8i8i8', ends, units, live_until, used, 1)
    if renew then
      redis.call('SET', KEYS[1], value, 'PX', {KEY_TTL_MILLISECONDS})
    else
      redis.call('SET', KEYS[1], value, 'KEEPTTL')
    end
  end
end
"""


@dataclass(frozen=True)
class WindowRecord:
    """The units admitted in one bucket, counted until `ends_ms` + the window (Redis's clock)."""

    ends_ms: int
    units: int


@dataclass(frozen=True)
class StoredWindow:
    """A decoded window value: its header and its records, oldest first (expired ones included
    until the next admitted check drops them)."""

    live_until_ms: int
    units: int
    records: tuple[WindowRecord, ...]
    size_bytes: int

    def units_at(self, now_ms: int) -> int:
        """The units that still count at `now_ms` (Redis's clock)."""
        cutoff = now_ms - WINDOW_MILLISECONDS
        return sum(record.units for record in self.records if record.ends_ms > cutoff)


def read_window(value: bytes) -> StoredWindow:
    """Decode a stored window (its records from `head`); ValueError when it is not one."""
    if len(value) < TRAILER_BYTES or (len(value) - TRAILER_BYTES) % RECORD_BYTES:
        raise ValueError(f"a quota window is 16-byte records and a 24-byte trailer: {len(value)}")
    tail = len(value) - TRAILER_BYTES
    live_until_ms, units, head = _TRAILER.unpack_from(value, tail)
    if not 1 <= head <= tail + 1 or (head - 1) % RECORD_BYTES:
        raise ValueError(f"a quota window's head is a record's offset, got {head}")
    records = tuple(
        WindowRecord(*_RECORD.unpack_from(value, offset))
        for offset in range(head - 1, tail, RECORD_BYTES)
    )
    return StoredWindow(live_until_ms, units, records, len(value))
