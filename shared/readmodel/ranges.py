"""Raw state of any time range of a channel, read in one atomic Lua call.

:data:`READ_RANGE` reads what analytics wrote of ``[start_ms, end_ms)`` (chat per
second, chatters per minute, paid records or paid totals, viewer samples, follows
and raids) and :func:`parse_range` turns the reply into a :class:`RawRange`; the
viewer helpers (:func:`in_force`, :func:`viewer_ms`, :func:`peak_viewers`) read its
samples. What the figures of a range are is :mod:`shared.readmodel.figures`.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from shared.keys import AnalyticsKeys
from shared.readmodel.paid_sums import PAID_SUMS_LUA, PaidSums

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

READ_RANGE = (
    PAID_SUMS_LUA
    + """
-- Raw state of one channel over [ARGV[1], ARGV[2]) ms.
-- KEYS: chat_per_s, chatter_minutes, paid, paid_data, viewers, social, paid_minutes.
-- ARGV: start ms, end ms, first second, end second (exclusive),
--       first minute, last minute (inclusive), paid as records ('1') or as totals
--       ('0': the range's totals and the paid events of each whole minute, ARGV[8..9]).
local function chat_per_s(key, first, stop)
  local out = {}
  for from = first, stop - 1, 1000 do
    local seconds = {}
    for s = from, math.min(from + 999, stop - 1) do seconds[#seconds + 1] = s end
    local counts = redis.call('HMGET', key, unpack(seconds))
    for i = 1, #counts do
      if counts[i] then out[#out + 1] = seconds[i]; out[#out + 1] = counts[i] end
    end
  end
  return out
end

-- chatter_minutes is scored by message count, so ZRANGEBYLEX is undefined on it.
-- Members sharing a score are in lex order, i.e. by minute: each run of equal
-- scores is binary searched by rank for the wanted minutes.
local function minute_at(key, rank)
  return tonumber(string.sub(redis.call('ZRANGE', key, rank, rank)[1], 1, 10))
end
local function first_rank(key, lo, hi, minute)
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if minute_at(key, mid) < minute then lo = mid + 1 else hi = mid - 1 end
  end
  return lo
end
local function chatters(key, first, last)
  local out, rank, total = {}, 0, redis.call('ZCARD', key)
  while rank < total do
    local score = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')[2]
    local run_end = rank + redis.call('ZCOUNT', key, score, score) - 1
    local a = first_rank(key, rank, run_end, first)
    local b = first_rank(key, a, run_end, last + 1) - 1
    if a <= b then
      local found = redis.call('ZRANGE', key, a, b, 'WITHSCORES')
      for i = 1, #found do out[#out + 1] = found[i] end
    end
    rank = run_end + 1
  end
  return out
end

local function paid(key, data_key, from, to)
  local ids = redis.call('ZRANGEBYSCORE', key, from, '(' .. to)
  local out = {}
  for i = 1, #ids, 1000 do
    local values = redis.call('HMGET', data_key, unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #values do if values[j] then out[#out + 1] = values[j] end end
  end
  return out
end

-- Every sample at the score of the first entry of a WITHSCORES reply.
local function tied(key, reply)
  if #reply == 0 then return {} end
  return redis.call('ZRANGEBYSCORE', key, reply[2], reply[2])
end
local function viewers(key, from, to)
  local out = tied(key, redis.call('ZREVRANGEBYSCORE', key, from, '-inf',
    'WITHSCORES', 'LIMIT', 0, 1))
  if #out == 0 then
    out = tied(key, redis.call('ZRANGEBYSCORE', key, '(' .. from, '+inf',
      'WITHSCORES', 'LIMIT', 0, 1))
  end
  local within = redis.call('ZRANGEBYSCORE', key, '(' .. from, '(' .. to)
  for i = 1, #within do out[#out + 1] = within[i] end
  return out
end

local records, totals = {}, {}
if ARGV[7] == '1' then
  records = paid(KEYS[3], KEYS[4], ARGV[1], ARGV[2])
else
  totals = {
    paid_sum(KEYS[3], KEYS[4], KEYS[7], tonumber(ARGV[1]), tonumber(ARGV[2])),
    paid_minute_events(KEYS[7], tonumber(ARGV[8]), tonumber(ARGV[9])),
  }
end
return {
  chat_per_s(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4])),
  chatters(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6])),
  records,
  viewers(KEYS[5], ARGV[1], ARGV[2]),
  redis.call('ZRANGEBYSCORE', KEYS[6], ARGV[1], '(' .. ARGV[2], 'WITHSCORES'),
  totals,
}
"""
)


def ceil_div(a: int, b: int) -> int:
    """``a / b`` rounded up, in integers."""
    return -(-a // b)


@dataclass(frozen=True)
class Paid:
    """One paid event as ``paid_data`` keeps it (see ``services.analytics.handler.paid_record``)."""

    type: str
    id: str
    source: str
    user: str
    cents: int
    ts_ms: int
    bits: int
    count: int
    message: str

    @classmethod
    def parse(cls, raw: str) -> Paid:
        """The record from its JSON."""
        data = json.loads(raw)
        return cls(
            type=data["type"],
            id=data["id"],
            source=data["source"],
            user=data["user"],
            cents=int(data["cents"]),
            ts_ms=int(data["ts"]),
            bits=int(data.get("bits", 0)),
            count=int(data.get("count", 1)),
            message=str(data.get("message", "")),
        )


@dataclass(frozen=True)
class Social:
    """A follow or raid: time (ms), type, and viewers brought (1 for a follow)."""

    ts_ms: int
    type: str
    count: int

    @classmethod
    def parse(cls, member: str, score: float) -> Social:
        """From a ``{type}|{source}:{id}|{user}|{count}`` member (user may hold ``|``)."""
        return cls(int(score), member.partition("|")[0], int(member.rpartition("|")[2]))


@dataclass(frozen=True)
class ChatSeconds:
    """Chat per epoch second with running totals, to count any range by bisection."""

    seconds: list[int]
    running: list[int]

    @classmethod
    def of(cls, counts: dict[int, int]) -> ChatSeconds:
        """From epoch second -> messages."""
        seconds = sorted(counts)
        running = [0]
        for second in seconds:
            running.append(running[-1] + counts[second])
        return cls(seconds, running)

    def count(self, start_ms: int, end_ms: int) -> int:
        """Messages of the seconds whose start lies in ``[start_ms, end_ms)``."""
        lo = bisect_left(self.seconds, ceil_div(start_ms, SECOND_MS))
        hi = bisect_left(self.seconds, ceil_div(end_ms, SECOND_MS))
        return self.running[hi] - self.running[lo]


@dataclass(frozen=True)
class RawRange:
    """Raw state of one channel over ``[start_ms, end_ms)``, as :func:`read_range` reads it.

    ``viewers`` holds the samples in force at ``start_ms`` (or, if none is, the first
    ones after it) then every sample inside, as sorted ``(ts ms, count)``. Paid events
    are either every record (``paid``; ``paid_totals`` None) or, read without records,
    only the range's ``paid_totals`` (``paid`` empty); ``paid_per_min`` holds every
    whole minute's paid events either way (and, with records, the partial minutes').
    """

    start_ms: int
    end_ms: int
    chat: ChatSeconds
    chat_per_min: dict[int, int]
    chatters: dict[int, dict[str, int]]
    paid: list[Paid]
    paid_per_min: dict[int, int]
    viewers: list[tuple[int, int]]
    social: list[Social]
    paid_totals: PaidSums | None = None


async def read_range(
    redis: Redis, keys: AnalyticsKeys, start_ms: int, end_ms: int, *, records: bool = True
) -> RawRange:
    """Read the raw state of ``[start_ms, end_ms)`` in one atomic script call.

    ``records=False`` reads paid totals instead of every paid record: its cost follows
    the minutes of the range, not its paid events (see :class:`RawRange`).
    """
    if end_ms <= start_ms:
        return parse_range(start_ms, end_ms, [[], [], [], [], [], []])
    script = redis.register_script(READ_RANGE)
    seconds = (ceil_div(start_ms, SECOND_MS), ceil_div(end_ms, SECOND_MS))
    minutes = (start_ms // MINUTE_MS, (end_ms - 1) // MINUTE_MS)
    whole = (ceil_div(start_ms, MINUTE_MS), end_ms // MINUTE_MS - 1)
    args = [start_ms, end_ms, *seconds, *minutes, "1" if records else "0", *whole]
    names = [keys.chat_per_s, keys.chatter_minutes, keys.paid, keys.paid_data, keys.viewers]
    reply = await script(keys=[*names, keys.social, keys.paid_minutes], args=args)
    return parse_range(start_ms, end_ms, reply)


def parse_range(start_ms: int, end_ms: int, reply: Sequence[Sequence[Any]]) -> RawRange:
    """The :data:`READ_RANGE` reply as a :class:`RawRange`."""
    chat_raw, chatters_raw, paid_raw, viewers_raw, social_raw, totals_raw = reply
    chat = {int(s): int(n) for s, n in zip(chat_raw[::2], chat_raw[1::2], strict=True)}
    paid = sorted((Paid.parse(item) for item in paid_raw), key=lambda p: (p.ts_ms, p.source, p.id))
    totals, per_min = _paid_totals(totals_raw, paid)
    return RawRange(
        start_ms=start_ms,
        end_ms=end_ms,
        chat=ChatSeconds.of(chat),
        chat_per_min=_per_minute(chat),
        chatters=_chatter_minutes(chatters_raw),
        paid=paid,
        paid_per_min=per_min,
        viewers=sorted({(int(t), int(n)) for t, n in (m.split(":") for m in viewers_raw)}),
        social=[
            Social.parse(m, float(s))
            for m, s in zip(social_raw[::2], social_raw[1::2], strict=True)
        ],
        paid_totals=totals,
    )


def _paid_totals(
    totals_raw: Sequence[Any], paid: Sequence[Paid]
) -> tuple[PaidSums | None, dict[int, int]]:
    """Range totals (None when read as records) and paid events per epoch minute."""
    if not totals_raw:
        return None, dict(Counter(p.ts_ms // MINUTE_MS for p in paid))
    sums, flat = totals_raw
    return PaidSums.from_reply(sums), {
        int(m): int(n) for m, n in zip(flat[::2], flat[1::2], strict=True)
    }


def _per_minute(chat: dict[int, int]) -> dict[int, int]:
    """Epoch second -> messages, summed into epoch minute -> messages."""
    totals: Counter[int] = Counter()
    for second, count in chat.items():
        totals[second // 60] += count
    return dict(totals)


def _chatter_minutes(flat: Sequence[str]) -> dict[int, dict[str, int]]:
    """``[member, score, ...]`` of ``chatter_minutes`` as minute -> user -> messages."""
    minutes: dict[int, dict[str, int]] = defaultdict(dict)
    for member, score in zip(flat[::2], flat[1::2], strict=True):
        minute, _, user = member.partition("|")
        minutes[int(minute)][user] = int(float(score))
    return dict(minutes)


def without_stale_viewers(raw: RawRange) -> RawRange:
    """``raw`` with no viewer samples at all unless one falls inside its range.

    A stream with no sample of its own reports zeros rather than a count left
    over from before it started.
    """
    if any(raw.start_ms <= ts < raw.end_ms for ts, _ in raw.viewers):
        return raw
    return replace(raw, viewers=[])


# ---------------------------------------------------------------------- viewers


def in_force(samples: Sequence[tuple[int, int]], at_ms: int) -> int:
    """Viewer count at ``at_ms``: the latest sample at or before it, else the first; 0 if none.

    Samples at the same ms are ordered by count, so the largest of them wins.
    """
    if not samples:
        return 0
    index = bisect_right(samples, (at_ms, math.inf)) - 1
    return samples[max(index, 0)][1]


def viewer_ms(samples: Sequence[tuple[int, int]], start_ms: int, end_ms: int) -> int:
    """Integral of the viewer count in force over ``[start_ms, end_ms)``, viewer-ms."""
    total, since, count = 0, start_ms, in_force(samples, start_ms)
    for ts, value in samples:
        if start_ms < ts < end_ms:
            total += count * (ts - since)
            since, count = ts, value
    return total + count * (end_ms - since)


def peak_viewers(samples: Sequence[tuple[int, int]], start_ms: int, end_ms: int) -> int:
    """Highest count in force at any instant of ``[start_ms, end_ms)`` (0 for an empty range)."""
    if end_ms <= start_ms:
        return 0
    inside = [value for ts, value in samples if start_ms < ts < end_ms]
    return max([in_force(samples, start_ms), *inside])
