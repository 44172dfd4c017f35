"""The per-second sliding window's Redis value: one string of fixed-size binary records.

Layout (big-endian signed 64-bit integers, 16 bytes a slot): a header slot `(live_until_ms,
units)`, then one record `(ends_ms, units)` per 10 ms bucket that admitted checks, oldest first.
`ends_ms` is the end of the bucket on Redis's clock (`TIME`, milliseconds); a record counts in
the window until Redis's clock reaches `ends_ms + 1000`, so every admitted unit counts for at
least one second and at most 1.011 s (a check can be denied up to 11 ms longer than an exact
sliding window would deny it, never admitted earlier). The header's `units` is the sum of the
records' units; `live_until_ms` is when the key expires (Redis's clock).

Bounds: the string holds at most 101 records (1,632 bytes) whatever the load, soft limits
included, because the checks of one bucket add to its record; a check reads the string and
drops the expired records from its front (each record is dropped once), and only an admitted,
consuming check of at least one unit writes it. The key expires: a write that would let a
record outlive it sets it to expire 3 s later (`PX`, about every 2 s while the org is busy),
the others keep its expiry (`KEEPTTL`, cheaper), so an abandoned window is gone 3 s after its
last admission. If Redis's clock steps back, a check adds to the last record instead of
appending an older one, so the records stay in order. The layout is named by the key (see
`billing.quotas.service`): a new layout takes a new key.

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
HEADER_BYTES = 24
RECORD_BYTES = 16
# Records dropped from the front stay in the string until they are this many, then a write
# rewrites it without them.
DEAD_RECORDS = 16
MAX_RECORDS = WINDOW_MILLISECONDS // BUCKET_MILLISECONDS + 1 + DEAD_RECORDS
MAX_BYTES = HEADER_BYTES + MAX_RECORDS * RECORD_BYTES

_HEADER = struct.Struct(">qqq")
_RECORD = struct.Struct(">qq")

# In: KEYS[1] (the window), `limit` (-1 = unlimited), `hard`, `amount`, `consume` (booleans).
# Out: `used` (counting this check when it was admitted) and `allowed` (1/0). Offsets are
# Lua's (from 1): `head` is the first record still counted.
WINDOW_CHECK_LUA = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('GET', KEYS[1])
local used, head, size, live_until = 0, {HEADER_BYTES + 1}, 0, 0
if data then
  live_until, used, head = struct.unpack('>i8i8i8', data)
  size = #data
  local cutoff = now - {WINDOW_MILLISECONDS}
  while head < size do
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
  local last_ends, last_units = 0, 0
  if head < size then
    last_ends, last_units = struct.unpack('>i8i8', data, size - {RECORD_BYTES - 1})
    if last_ends >= ends then ends = last_ends end
  end
  local renew = live_until < ends + {WINDOW_MILLISECONDS + TTL_MARGIN_MILLISECONDS}
  if renew then live_until = now + {KEY_TTL_MILLISECONDS} end
  if head < size and head <= {HEADER_BYTES + 1 + DEAD_RECORDS * RECORD_BYTES} then
    if last_ends == ends then
      redis.call('SETRANGE', KEYS[1], size - {RECORD_BYTES},
        struct.pack('>i8i8', ends, last_units + amount))
    else
      redis.call('APPEND', KEYS[1], struct.pack('>i8i8', ends, amount))
    end
    redis.call('SETRANGE', KEYS[1], 0, struct.pack('>i8i8i8', live_until, used, head))
    if renew then redis.call('PEXPIRE', KEYS[1], {KEY_TTL_MILLISECONDS}) end
  else
    local records
    if head >= size then
      records = struct.pack('>i8i8', ends, amount)
    elseif last_ends == ends then
      records = string.sub(data, head, size - {RECORD_BYTES})
        .. struct.pack('>i8i8', ends, last_units + amount)
    else
      records = string.sub(data, head) .. struct.pack('>i8i8', ends, amount)
    end
    local value = struct.pack('>i8i8i8', live_until, used, {HEADER_BYTES + 1}) .. records
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
    """Decode a stored window (the records from its head); ValueError when it is not one."""
    if len(value) < HEADER_BYTES or (len(value) - HEADER_BYTES) % RECORD_BYTES:
        raise ValueError(
            f"a quota window is a 24-byte header and 16-byte records, got {len(value)}"
        )
    live_until_ms, units, head = _HEADER.unpack_from(value)
    if head < HEADER_BYTES + 1 or (head - 1 - HEADER_BYTES) % RECORD_BYTES:
        raise ValueError(f"a quota window's head is a record's offset, got {head}")
    records = tuple(
        WindowRecord(*_RECORD.unpack_from(value, offset))
        for offset in range(head - 1, len(value), RECORD_BYTES)
    )
    return StoredWindow(live_until_ms, units, records, len(value))
