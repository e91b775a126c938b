"""Exact sums of paid events (donations, bits, subs) over a time range, in O(minutes).

Every paid event is kept whole (``paid`` sorted set + ``paid_data`` hash) and is
also added to per-minute and per-hour totals (``paid_minutes``), by the same
script and only when its record is new, so each bucket's totals equal the sum of
its raw records. A sum over ``[lo_ms, hi_ms)`` then reads the totals of the whole
hours inside, of the whole minutes outside those hours, and, for the partial first
and last minutes, whichever is smaller: the raw records of the part inside, or the
minute's totals minus the raw records of the part outside (so a range ending at
the clock decodes no record of its last minute). The range is first narrowed to
the first and last paid ``ts`` on record, so an open bound costs nothing. Cost:
at most the range's hours plus 118 minutes of totals, plus half of two minutes'
records, instead of every paid record of the range; the result is the same
integers (amounts are integer cents; nothing is rounded).

:data:`PAID_SUMS_LUA` defines the Lua functions; every script needing such sums
(metrics' snapshot, the range reader of ``shared.readmodel.ranges``, :data:`RANGE`)
embeds it. :func:`contributions` is its Python twin for one record, used on the
write path and by tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from redis.asyncio import Redis

from shared.keys import AnalyticsKeys

MINUTE_MS = 60_000
FOREVER_MS = 2**53
"""An upper bound past any event (epoch ms); the scripts narrow it to the last paid ``ts``."""
SUB_TYPES = frozenset({"sub", "resub", "gift"})


@dataclass(frozen=True)
class PaidSums:
    """Totals of a set of paid events (cents are USD cents); names as in ``paid_minutes``."""

    events: int = 0
    donation_cents: int = 0
    bits_cents: int = 0
    sub_cents: int = 0
    bits: int = 0
    subs: int = 0

    @property
    def cents(self) -> int:
        """Every kind, USD cents."""
        return self.donation_cents + self.bits_cents + self.sub_cents

    @property
    def tips(self) -> int:
        """Donations and bits, USD cents."""
        return self.donation_cents + self.bits_cents

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> PaidSums:
        """From a Lua totals table (the order of :data:`TOTALS`)."""
        return cls(*(int(value) for value in reply))

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> PaidSums:
        """Sum of ``records`` (``paid_data`` JSON objects), the brute-force way."""
        totals = dict.fromkeys(TOTALS, 0)
        for record in records:
            for name, amount in contributions(record).items():
                totals[name] += amount
        return cls(**totals)


TOTALS = tuple(f.name for f in fields(PaidSums))
"""The per-minute totals, in the order the Lua tables hold them."""


def contributions(record: Mapping[str, Any]) -> dict[str, int]:
    """What one ``paid_data`` record adds to its minute: ``events`` and the non-zero totals.

    ``record`` as ``services.analytics.handler.paid_record`` writes it (cents are
    integer USD cents). Mirrors ``paid_record_totals`` in :data:`PAID_SUMS_LUA`.
    """
    kind, cents = record["type"], int(record.get("cents") or 0)
    totals = {"events": 1, "bits": int(record.get("bits") or 0)}
    if kind == "donation":
        totals["donation_cents"] = cents
    elif kind == "bits":
        totals["bits_cents"] = cents
    elif kind in SUB_TYPES:
        totals |= {"sub_cents": cents, "subs": int(record.get("count") or 0)}
    return {name: amount for name, amount in totals.items() if amount or name == "events"}


def bucket_increments(record: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``paid_minutes`` fields and amounts one new record adds: to its minute and its hour.

    Fields ``{epoch minute}:{total}`` and ``h{epoch hour}:{total}``.
    """
    minute = int(record["ts"]) // MINUTE_MS
    added = contributions(record).items()
    return [
        (f"{bucket}:{name}", amount)
        for bucket in (str(minute), f"h{minute // 60}")
        for name, amount in added
    ]


PAID_SUMS_LUA = """
-- Paid sums (shared.readmodel.paid_sums): totals tables in the order of PAID_TOTALS.
local PAID_TOTALS = {'events', 'donation_cents', 'bits_cents', 'sub_cents', 'bits', 'subs'}
local PAID_MINUTE_MS = 60000
local function paid_ms(x) return string.format('%.0f', x) end

-- One paid_data record's totals (shared.readmodel.paid_sums.contributions).
local function paid_record_totals(raw)
  local r = cjson.decode(raw)
  local kind, cents = r['type'], tonumber(r['cents']) or 0
  local t = {1, 0, 0, 0, tonumber(r['bits']) or 0, 0}
  if kind == 'donation' then t[2] = cents
  elseif kind == 'bits' then t[3] = cents
  elseif kind == 'sub' or kind == 'resub' or kind == 'gift' then
    t[4] = cents
    t[6] = tonumber(r['count']) or 0
  end
  return t
end

local function paid_add(sums, t, sign)
  for i = 1, #PAID_TOTALS do sums[i] = sums[i] + sign * t[i] end
end

-- Adds sign x the raw records with ts in [lo, hi).
local function paid_add_records(sums, sign, zkey, hkey, lo, hi)
  local ids = redis.call('ZRANGEBYSCORE', zkey, paid_ms(lo), '(' .. paid_ms(hi))
  for first = 1, #ids, 1000 do  -- unpack() has a stack limit: read in chunks
    local raws = redis.call('HMGET', hkey, unpack(ids, first, math.min(first + 999, #ids)))
    for i = 1, #raws do
      if raws[i] then paid_add(sums, paid_record_totals(raws[i]), sign) end
    end
  end
end

-- Adds sign x the paid_minutes totals named {prefix}{n}:{total} for n in first..last
-- (prefix '' for minutes, 'h' for hours).
local function paid_add_buckets(sums, sign, mkey, prefix, first, last)
  local width = #PAID_TOTALS
  for from = first, last, 150 do
    local names = {}
    for n = from, math.min(from + 149, last) do
      local head = prefix .. paid_ms(n) .. ':'
      for k = 1, width do names[#names + 1] = head .. PAID_TOTALS[k] end
    end
    local values = redis.call('HMGET', mkey, unpack(names))
    for i = 1, #values do
      if values[i] then
        local k = (i - 1) % width + 1
        sums[k] = sums[k] + sign * tonumber(values[i])
      end
    end
  end
end

-- Adds sign x the totals of the whole minutes first..last: the whole hours among
-- them from the hourly totals, the other minutes from the minute totals.
local function paid_add_minutes(sums, sign, mkey, first, last)
  local h1, h2 = math.ceil(first / 60), math.floor((last + 1) / 60) - 1
  if h1 > h2 then return paid_add_buckets(sums, sign, mkey, '', first, last) end
  paid_add_buckets(sums, sign, mkey, '', first, h1 * 60 - 1)
  paid_add_buckets(sums, sign, mkey, 'h', h1, h2)
  paid_add_buckets(sums, sign, mkey, '', (h2 + 1) * 60, last)
end

-- Adds the records of [lo, hi), a part of minute m: those records, or when there are
-- fewer outside the part, the minute's totals minus the records outside.
local function paid_add_part(sums, zkey, hkey, mkey, m, lo, hi)
  local start, stop = m * PAID_MINUTE_MS, (m + 1) * PAID_MINUTE_MS
  local inside = redis.call('ZCOUNT', zkey, paid_ms(lo), '(' .. paid_ms(hi))
  if inside == 0 then return end
  local outside = redis.call('ZCOUNT', zkey, paid_ms(start), '(' .. paid_ms(stop)) - inside
  if inside <= outside then
    paid_add_records(sums, 1, zkey, hkey, lo, hi)
    return
  end
  paid_add_minutes(sums, 1, mkey, m, m)
  if start < lo then paid_add_records(sums, -1, zkey, hkey, start, lo) end
  if hi < stop then paid_add_records(sums, -1, zkey, hkey, hi, stop) end
end

local function paid_score(zkey, rank)
  local found = redis.call('ZRANGE', zkey, rank, rank, 'WITHSCORES')
  return found[2] and tonumber(found[2])
end

-- Totals of the paid events with ts in [lo, hi) ms (KEYS paid, paid_data, paid_minutes).
local function paid_sum(zkey, hkey, mkey, lo, hi)
  local sums = {0, 0, 0, 0, 0, 0}
  local first, last = paid_score(zkey, 0), paid_score(zkey, -1)
  if not first then return sums end
  lo, hi = math.max(lo, first), math.min(hi, last + 1)
  if hi <= lo then return sums end
  local a, b = math.floor(lo / PAID_MINUTE_MS), math.floor((hi - 1) / PAID_MINUTE_MS)
  if a == b then
    paid_add_part(sums, zkey, hkey, mkey, a, lo, hi)
    return sums
  end
  paid_add_part(sums, zkey, hkey, mkey, a, lo, (a + 1) * PAID_MINUTE_MS)
  if b > a + 1 then paid_add_minutes(sums, 1, mkey, a + 1, b - 1) end
  paid_add_part(sums, zkey, hkey, mkey, b, b * PAID_MINUTE_MS, hi)
  return sums
end

-- {minute, events, ...} of the minutes first..last that hold paid events.
local function paid_minute_events(mkey, first, last)
  local out = {}
  for from = first, last, 1000 do
    local names = {}
    for m = from, math.min(from + 999, last) do names[#names + 1] = paid_ms(m) .. ':events' end
    local values = redis.call('HMGET', mkey, unpack(names))
    for i = 1, #values do
      if values[i] then out[#out + 1] = from + i - 1; out[#out + 1] = tonumber(values[i]) end
    end
  end
  return out
end
"""

RANGE = (
    PAID_SUMS_LUA
    + """
-- KEYS: paid, paid_data, paid_minutes. ARGV: lo ms, hi ms (exclusive), a member to
-- leave out ('' for none), how many of the newest records in range to return.
local lo, hi, own = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local sums = paid_sum(KEYS[1], KEYS[2], KEYS[3], lo, hi)
local at = own ~= '' and redis.call('ZSCORE', KEYS[1], own)
if at and lo <= tonumber(at) and tonumber(at) < hi then
  local raw = redis.call('HGET', KEYS[2], own)
  if raw then paid_add(sums, paid_record_totals(raw), -1) end
end
local newest = {}
if tonumber(ARGV[4]) > 0 then
  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. paid_ms(hi), paid_ms(lo),
    'LIMIT', 0, ARGV[4])
  for first = 1, #ids, 1000 do
    local raws = redis.call('HMGET', KEYS[2], unpack(ids, first, math.min(first + 999, #ids)))
    for i = 1, #raws do if raws[i] then newest[#newest + 1] = raws[i] end end
  end
end
return {sums, newest}
"""
)

REBUILD = (
    PAID_SUMS_LUA
    + """
-- KEYS: paid, paid_data, paid_minutes. Recounts paid_minutes from the raw records
-- (state written before paid_minutes existed); keeps paid's TTL. Returns records read.
local totals, count = {}, 0
local size = redis.call('ZCARD', KEYS[1])
for rank = 0, size - 1, 1000 do
  local page = redis.call('ZRANGE', KEYS[1], rank, rank + 999, 'WITHSCORES')
  local ids = {}
  for i = 1, #page, 2 do ids[#ids + 1] = page[i] end
  local raws = redis.call('HMGET', KEYS[2], unpack(ids))
  for i = 1, #raws do
    if raws[i] then
      count = count + 1
      local minute = math.floor(tonumber(page[2 * i]) / PAID_MINUTE_MS)
      local heads = {paid_ms(minute) .. ':', 'h' .. paid_ms(math.floor(minute / 60)) .. ':'}
      local t = paid_record_totals(raws[i])
      for k, name in ipairs(PAID_TOTALS) do
        for _, head in ipairs(heads) do
          local field = head .. name
          if t[k] ~= 0 or k == 1 then totals[field] = (totals[field] or 0) + t[k] end
        end
      end
    end
  end
end
redis.call('DEL', KEYS[3])
local flat = {}
for field, amount in pairs(totals) do
  flat[#flat + 1] = field
  flat[#flat + 1] = paid_ms(amount)
  if #flat >= 1000 then redis.call('HSET', KEYS[3], unpack(flat)); flat = {} end
end
if #flat > 0 then redis.call('HSET', KEYS[3], unpack(flat)) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and count > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
return count
"""
)


def _keys(keys: AnalyticsKeys) -> list[str]:
    return [keys.paid, keys.paid_data, keys.paid_minutes]


async def paid_sums(
    redis: Redis, keys: AnalyticsKeys, lo_ms: int, hi_ms: int, *, exclude: str = ""
) -> PaidSums:
    """Totals of the channel's paid events with ``ts`` in ``[lo_ms, hi_ms)`` (epoch ms).

    ``exclude``: a ``{source}:{id}`` member left out of the totals (if it is in range).
    """
    sums, _ = await paid_sums_and_newest(redis, keys, lo_ms, hi_ms, 0, exclude=exclude)
    return sums


async def paid_sums_and_newest(
    redis: Redis, keys: AnalyticsKeys, lo_ms: int, hi_ms: int, newest: int, *, exclude: str = ""
) -> tuple[PaidSums, list[str]]:
    """:func:`paid_sums` and the JSON of the ``newest`` latest records in range, oldest first.

    One script call, so the records are part of the totals (same order as
    ZRANGEBYSCORE: by ``ts``, then member).
    """
    script = redis.register_script(RANGE)
    reply: Any = await script(keys=_keys(keys), args=[lo_ms, hi_ms, exclude, newest])
    return PaidSums.from_reply(reply[0]), [str(raw) for raw in reversed(reply[1])]


async def rebuild_minutes(redis: Redis, keys: AnalyticsKeys) -> int:
    """Recount ``paid_minutes`` from the raw records (one atomic script); records counted.

    For raw state written before ``paid_minutes`` existed: its sums are only exact
    once this has run. O(paid records), so it is a one-off, not a read path.
    """
    script = redis.register_script(REBUILD)
    return int(await script(keys=_keys(keys)))
