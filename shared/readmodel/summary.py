"""Stream summaries: timelines, figures of any time range, and post-stream reports.

Everything here is derived from analytics' raw, order-independent channel state
(:class:`shared.keys.AnalyticsKeys`), so a summary is the same whatever order or
batches the events arrived in. Three services read it (the analytics REST API,
the orchestrator for bandit rewards, the retro worker), hence it lives in ``shared``.

Conventions:

* Time is event time: epoch milliseconds (``*_ms``) or RFC 3339 UTC ``Z`` strings.
  Ranges are half-open, ``[start, end)``, except that a live stream and its
  on-air segment run through the channel clock ("now", the largest ``ts`` seen),
  ``[start, now]``: the latest events count, the length is ``now - start``.
* A stream runs from its ``stream_started`` to its ``stream_ended``, or to the
  next ``stream_started`` of another stream, whichever comes first.
* A stream's boundaries belong to it: an event at the very instant of its
  ``stream_started`` or of its own ``stream_ended`` counts in its figures (an
  instant where another stream starts is that stream's).
* Resolution of the raw state: chat is counted per second (a second belongs to
  the range its start falls in, except that a stream's first second is the
  stream's, so counts are exact when bounds are whole seconds and a message at
  the start instant always counts); chatters per minute (a chatter counts in
  every range overlapping a minute they wrote in); paid events, viewer samples
  and lifecycle to the ms.
* Money is summed in integer cents and reported in USD rounded to cents.

Reads: a timeline is one MULTI (clock + lifecycle); the figures of a range are one
Lua script call (:data:`READ_RANGE`), so a whole summary costs two round trips.
A summary reads every paid record of its stream (top donors, the revenue series);
:func:`segment_stats` reads only paid totals (``shared.paid_sums``).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from statistics import fmean
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from shared.clock import format_ts
from shared.keys import AnalyticsKeys, Keys
from shared.paid_sums import PAID_SUMS_LUA, PaidSums

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
TOP_N = 10
SUB_TYPES = frozenset({"sub", "resub", "gift"})
DONATION_TYPES = frozenset({"donation", "bits"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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

RECENT_DONATIONS = """
-- The latest ARGV[1] donations and bits cheers, newest first, as their JSON records.
local out, rank, limit = {}, 0, tonumber(ARGV[1])
while #out < limit do
  local ids = redis.call('ZREVRANGE', KEYS[1], rank, rank + 99)
  if #ids == 0 then break end
  local records = redis.call('HMGET', KEYS[2], unpack(ids))
  for i = 1, #records do
    if records[i] and #out < limit then
      local kind = cjson.decode(records[i])['type']
      if kind == 'donation' or kind == 'bits' then out[#out + 1] = records[i] end
    end
  end
  rank = rank + 100
end
return out
"""


# --------------------------------------------------------------- shared with metrics


@dataclass(frozen=True)
class StreamState:
    """Where the channel's broadcast stands, from its lifecycle events."""

    is_live: bool = False
    stream_id: str = ""
    started_ms: int | None = None
    ended_ms: int | None = None
    activity: str = ""
    activity_since_ms: int | None = None


TYPE_ORDER = {"stream_ended": 0, "stream_started": 1}
"""At one instant a stream ends before the next starts, and starts before its first activity."""


def lifecycle_order(pair: tuple[str, float]) -> tuple[float, int, str]:
    """Sort key of a lifecycle ``(JSON, ts ms)`` pair: time, then type, then the JSON."""
    raw, at = pair
    kind = next((k for k in TYPE_ORDER if f'"type": "{k}"' in raw), "")
    return at, TYPE_ORDER.get(kind, 2), raw


def stream_state(lifecycle: Iterable[tuple[str, float]]) -> StreamState:
    """Fold lifecycle entries (JSON member, ts ms) in time order into the current state.

    Only the current stream's own activity changes count: a stream that ran ahead of
    the wall clock leaves changes dated inside the next stream's time.
    """
    state = StreamState()
    for raw, at in sorted(lifecycle, key=lifecycle_order):
        event = json.loads(raw)
        if event["type"] == "stream_started":
            state = StreamState(True, event["stream_id"], int(at))
        elif event["type"] == "stream_ended" and event["stream_id"] == state.stream_id:
            state = replace(state, is_live=False, ended_ms=int(at))
        elif event["type"] == "activity_changed" and event.get("stream_id") == state.stream_id:
            state = replace(state, activity=event["activity"], activity_since_ms=int(at))
    return state


def engagement_score(chat_velocity: float, viewers: int, chatters: int, paid: int) -> float:
    """0-100 from chat per viewer, share of viewers chatting, and paid events per 100 viewers.

    Each part saturates smoothly (1 - e^-x/k) so no single signal can exceed its weight:
    45 % chat messages per viewer per minute (k = 0.1), 35 % unique chatters of the
    window per viewer (k = 0.15), 20 % paid events of the window per 100 viewers (k = 2).
    """
    audience = max(viewers, chatters, 1)
    chat = 1 - math.exp(-(chat_velocity / audience) / 0.1)
    chatting = 1 - math.exp(-(chatters / audience) / 0.15)
    paying = 1 - math.exp(-(paid * 100 / audience) / 2)
    return round(100 * (0.45 * chat + 0.35 * chatting + 0.20 * paying), 1)


# ------------------------------------------------------------------------ models


class Segment(BaseModel):
    """One stretch of a stream with one activity on air, from one ``activity_changed``."""

    segment_id: str = Field(
        description="Stable id `{stream_id}:{start_ms}:{activity}`; bandit rewards key on it."
    )
    activity: str = Field(description="The activity on air.")
    previous: str = Field(description="The activity before it, as the change named it.")
    decided_by: str = Field(description="Who chose the activity (sim, bandit, operator...).")
    reason: str = Field(description="Why it was chosen, as the change event said.")
    start: str = Field(description="Start, RFC 3339 UTC.")
    end: str | None = Field(description="End, RFC 3339 UTC; null while on air.")
    start_ms: int = Field(description="Start, epoch ms.")
    end_ms: int | None = Field(description="End, epoch ms; null while on air.")
    on_air: bool = Field(description="True for the last segment of a live stream.")
    duration_s: float = Field(description="Seconds on air (to the channel clock while on air).")


class Timeline(BaseModel):
    """The activity segments of one stream, in time order."""

    channel: str = Field(description="Channel login.")
    stream_id: str = Field(description="The stream ('' when the channel never started one).")
    found: bool = Field(description="False when no stream_started exists for the stream.")
    is_live: bool = Field(description="True while the stream has not ended.")
    started: str | None = Field(description="Stream start, RFC 3339 UTC.")
    started_ms: int | None = Field(description="Stream start, epoch ms.")
    ended: str | None = Field(description="Stream end, RFC 3339 UTC; null while live.")
    ended_ms: int | None = Field(description="Stream end, epoch ms; null while live.")
    segments: list[Segment] = Field(description="Activity segments, in time order.")


class SegmentStats(BaseModel):
    """Figures of one time range ``[start, end)``; see :func:`segment_stats` for each rule."""

    start: str = Field(description="Range start, RFC 3339 UTC.")
    end: str = Field(description="Range end (exclusive), RFC 3339 UTC.")
    start_ms: int = Field(description="Range start, epoch ms.")
    end_ms: int = Field(description="Range end (exclusive), epoch ms.")
    duration_s: float = Field(description="Length of the range, seconds.")
    chat_messages: int = Field(description="Chat messages (per-second resolution).")
    chat_velocity: float = Field(description="Chat messages per minute over the range.")
    unique_chatters: int = Field(description="Distinct chatters (minute resolution).")
    revenue_usd: float = Field(description="Donations + bits + subs, USD.")
    revenue_per_hour_usd: float = Field(description="revenue_usd per hour of the range.")
    donations_usd: float = Field(description="Donations, USD.")
    bits: int = Field(description="Bits cheered.")
    bits_usd: float = Field(description="Bits, USD (one cent a bit).")
    subs: int = Field(description="Subs of every kind (gifts count each sub given).")
    subs_usd: float = Field(description="Estimated sub revenue, USD.")
    paid_events: int = Field(description="Donations, cheers and sub events.")
    avg_viewers: float = Field(description="Time-weighted mean of the viewer count.")
    peak_viewers: int = Field(description="Highest viewer count in force.")
    hours_watched: float = Field(description="Viewer-hours: integral of viewers over time.")
    mean_engagement: float | None = Field(
        description="Mean 0-100 engagement of the whole minutes of the range; null if none."
    )
    engagement_minutes: int = Field(description="Whole minutes mean_engagement is over.")


class SegmentReport(Segment):
    """A segment with its figures."""

    stats: SegmentStats = Field(description="Figures of the segment's time range.")


class ActivityReport(BaseModel):
    """One activity over all its segments of a stream."""

    activity: str = Field(description="The activity.")
    segments: int = Field(description="Segments it was on air.")
    on_air_s: float = Field(description="Seconds on air in total.")
    share: float = Field(description="on_air_s / stream duration_s, 0-1.")
    chat_messages: int = Field(description="Chat messages while on air.")
    chat_velocity: float = Field(description="Chat messages per minute on air.")
    unique_chatters: int = Field(description="Distinct chatters while on air (minute resolution).")
    revenue_usd: float = Field(description="Revenue while on air, USD.")
    revenue_per_hour_usd: float = Field(description="revenue_usd per hour on air.")
    avg_viewers: float = Field(description="Time-weighted mean viewers while on air.")
    mean_engagement: float | None = Field(
        description="Mean engagement of the whole minutes of its segments (time-weighted)."
    )


class Revenue(BaseModel):
    """Revenue of a stream by kind, USD."""

    donations_usd: float = Field(description="Donations, USD.")
    bits_usd: float = Field(description="Bits, USD.")
    subs_usd: float = Field(description="Subs, resubs and gifts (estimated), USD.")
    total_usd: float = Field(description="Sum of the three, USD.")


class TopChatter(BaseModel):
    """A chatter and their message count."""

    user: str = Field(description="User name.")
    messages: int = Field(description="Chat messages in the stream (minute resolution).")


class TopDonor(BaseModel):
    """A donor and what they gave in donations and bits."""

    user: str = Field(description="User name.")
    usd: float = Field(description="Donations + bits, USD.")


class ViewerPoint(BaseModel):
    """One viewer-count sample."""

    ts: str = Field(description="Sample time, RFC 3339 UTC.")
    ts_ms: int = Field(description="Sample time, epoch ms.")
    count: int = Field(description="Concurrent viewers.")


class ChatPoint(BaseModel):
    """Chat messages in one clock minute."""

    ts: str = Field(description="Start of the minute, RFC 3339 UTC.")
    ts_ms: int = Field(description="Start of the minute, epoch ms.")
    messages_per_min: int = Field(description="Messages in that minute (within the stream).")


class RevenuePoint(BaseModel):
    """One paid event and the stream's running total."""

    ts: str = Field(description="Event time, RFC 3339 UTC.")
    ts_ms: int = Field(description="Event time, epoch ms.")
    type: str = Field(description="donation, bits, sub, resub or gift.")
    amount_usd: float = Field(description="This event, USD.")
    cumulative_usd: float = Field(description="Stream revenue so far, USD.")


class StreamSummary(BaseModel):
    """Everything a post-stream report needs about one stream."""

    channel: str = Field(description="Channel login.")
    stream_id: str = Field(description="The stream ('' when the channel never started one).")
    found: bool = Field(description="False when no stream_started exists for the stream.")
    missing: list[str] = Field(description="What is absent (figures for it are zeros).")
    started: str | None = Field(description="Stream start, RFC 3339 UTC.")
    started_ms: int | None = Field(description="Stream start, epoch ms.")
    ended: str | None = Field(description="Stream end, RFC 3339 UTC; null while live.")
    ended_ms: int | None = Field(description="Stream end, epoch ms; null while live.")
    is_live: bool = Field(description="True while the stream has not ended.")
    duration_s: float = Field(description="Seconds from start to end (or to the clock).")
    untracked_s: float = Field(description="Seconds before the first activity change.")
    avg_viewers: float = Field(description="Time-weighted mean viewers.")
    peak_viewers: int = Field(description="Highest viewer count in force.")
    hours_watched: float = Field(description="Viewer-hours.")
    chat_messages: int = Field(description="Chat messages.")
    chat_velocity: float = Field(description="Chat messages per minute.")
    unique_chatters: int = Field(description="Distinct chatters (minute resolution).")
    mean_engagement: float | None = Field(description="Mean engagement of its whole minutes.")
    follows: int = Field(description="New followers.")
    raids: int = Field(description="Incoming raids.")
    raid_viewers: int = Field(description="Viewers the raids brought.")
    new_subs: int = Field(description="New subs (type sub).")
    resubs: int = Field(description="Resubs.")
    gifted_subs: int = Field(description="Subs given in gifts.")
    bits: int = Field(description="Bits cheered.")
    donations_count: int = Field(description="Donations (not cheers).")
    revenue: Revenue = Field(description="Revenue by kind, USD.")
    segments: list[SegmentReport] = Field(description="Activity segments with their figures.")
    activities: list[ActivityReport] = Field(description="Per activity, most time on air first.")
    top_chatters: list[TopChatter] = Field(description="Top 10 by messages.")
    top_donors: list[TopDonor] = Field(description="Top 10 by donations + bits, USD.")
    viewer_series: list[ViewerPoint] = Field(description="Viewer samples within the stream.")
    chat_velocity_series: list[ChatPoint] = Field(description="Messages per clock minute.")
    revenue_series: list[RevenuePoint] = Field(description="Each paid event, running total.")


class PaidEvent(BaseModel):
    """A donation or cheer as the dashboard's ``donation`` message carries it."""

    id: str = Field(description="Event id from its source.")
    username: str = Field(description="Who gave it.")
    amount: float = Field(description="USD.")
    message: str = Field(description="Message sent with it.")
    timestamp: str = Field(description="Event time, RFC 3339 UTC.")
    type: Literal["donation", "bits"] = Field(description="donation or bits.")


# -------------------------------------------------------------------- raw state


@dataclass(frozen=True)
class Paid:
    """One paid event as ``paid_data`` keeps it (see consumer ``paid_record``)."""

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
        lo = bisect_left(self.seconds, _ceil_div(start_ms, SECOND_MS))
        hi = bisect_left(self.seconds, _ceil_div(end_ms, SECOND_MS))
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
    seconds = (_ceil_div(start_ms, SECOND_MS), _ceil_div(end_ms, SECOND_MS))
    minutes = (start_ms // MINUTE_MS, (end_ms - 1) // MINUTE_MS)
    whole = (_ceil_div(start_ms, MINUTE_MS), end_ms // MINUTE_MS - 1)
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


# ---------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Window:
    """A time range: ``[start_ms, end_ms)``, or ``[start_ms, end_ms]`` when ``closed``.

    A live stream and its on-air segment are closed at the clock, so the latest
    events (those at "now") count; their length is still ``end_ms - start_ms``.
    """

    start_ms: int
    end_ms: int
    closed: bool = False
    whole_first_second: bool = False
    """Count chat from the start of the second ``start_ms`` falls in: a stream's first
    second belongs to it, so a message at the very instant it starts counts."""

    @property
    def chat_start_ms(self) -> int:
        """Where chat (kept per second) is counted from."""
        if self.whole_first_second:
            return self.start_ms // SECOND_MS * SECOND_MS
        return self.start_ms

    @property
    def stop_ms(self) -> int:
        """Exclusive bound for the events in the window."""
        return self.end_ms + 1 if self.closed else self.end_ms

    @property
    def chatter_stop_ms(self) -> int:
        """Exclusive bound of the minutes whose chatters count: a window closed at a whole
        minute does not take in the next minute (its chatters are after the end)."""
        if self.closed and self.end_ms % MINUTE_MS == 0 and self.end_ms > self.start_ms:
            return self.end_ms
        return self.stop_ms

    @property
    def length_ms(self) -> int:
        """Duration, ms."""
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class Figures:
    """Raw totals over a set of disjoint windows (one segment, or all of an activity's)."""

    duration_ms: int
    chat: int
    chatters: Counter[str]
    paid: list[Paid]
    viewer_ms: int
    peak_viewers: int
    scores: list[float]

    @property
    def unique_chatters(self) -> int:
        """Distinct chatters, at most one per message (minute resolution can over-count)."""
        return min(len(self.chatters), self.chat)


def figures(raw: RawRange, windows: Sequence[Window]) -> Figures:
    """Totals of ``raw`` over ``windows`` (each inside ``raw``'s range).

    Events count up to each window's ``stop_ms``; durations, the viewer integral and
    whole minutes run to its ``end_ms``.
    """
    minutes = {m for w in windows for m in overlapping_minutes(w.start_ms, w.chatter_stop_ms)}
    chat = sum(raw.chat.count(w.chat_start_ms, w.stop_ms) for w in windows)
    return Figures(
        duration_ms=sum(w.length_ms for w in windows),
        chat=chat,
        chatters=_sum_users(raw.chatters.get(m, {}) for m in minutes) if chat else Counter(),
        paid=[p for p in raw.paid if any(w.start_ms <= p.ts_ms < w.stop_ms for w in windows)],
        viewer_ms=sum(viewer_ms(raw.viewers, w.start_ms, w.end_ms) for w in windows),
        peak_viewers=max(
            (peak_viewers(raw.viewers, w.start_ms, w.stop_ms) for w in windows), default=0
        ),
        scores=[score for w in windows for score in minute_scores(raw, w.start_ms, w.end_ms)],
    )


def _sum_users(per_minute: Iterable[dict[str, int]]) -> Counter[str]:
    """user -> messages summed over minutes."""
    total: Counter[str] = Counter()
    for users in per_minute:
        total.update(users)
    return total


def overlapping_minutes(start_ms: int, end_ms: int) -> range:
    """Epoch minutes that overlap ``[start_ms, end_ms)``."""
    return range(start_ms // MINUTE_MS, _ceil_div(end_ms, MINUTE_MS))


def minute_scores(raw: RawRange, start_ms: int, end_ms: int) -> list[float]:
    """Engagement of each whole clock minute inside ``[start_ms, end_ms)``.

    For minute m: ``engagement_score(chat messages in m, viewers in force at m's start,
    distinct chatters in m, paid events in m)``.
    """
    whole = range(_ceil_div(start_ms, MINUTE_MS), end_ms // MINUTE_MS)
    return [
        engagement_score(
            raw.chat_per_min.get(minute, 0),
            in_force(raw.viewers, minute * MINUTE_MS),
            len(raw.chatters.get(minute, {})),
            raw.paid_per_min.get(minute, 0),
        )
        for minute in whole
    ]


@dataclass(frozen=True)
class Cents:
    """Paid amounts by kind, integer USD cents."""

    donations: int
    bits: int
    subs: int

    @classmethod
    def of(cls, paid: Iterable[Paid]) -> Cents:
        """Sum ``paid`` by kind."""
        totals: Counter[str] = Counter()
        for p in paid:
            totals["subs" if p.type in SUB_TYPES else p.type] += p.cents
        return cls(totals["donation"], totals["bits"], totals["subs"])

    @property
    def total(self) -> int:
        """All kinds."""
        return self.donations + self.bits + self.subs


def stats_of(raw: RawRange, window: Window) -> SegmentStats:
    """:class:`SegmentStats` of ``window`` from ``raw`` (which covers it)."""
    fig = figures(raw, [window])
    paid = window_paid(raw, window, fig)
    return SegmentStats(
        start=iso(window.start_ms),
        end=iso(window.end_ms),
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        duration_s=fig.duration_ms / SECOND_MS,
        chat_messages=fig.chat,
        chat_velocity=per_minute(fig.chat, fig.duration_ms),
        unique_chatters=fig.unique_chatters,
        revenue_usd=usd(paid.cents),
        revenue_per_hour_usd=usd_per_hour(paid.cents, fig.duration_ms),
        donations_usd=usd(paid.donation_cents),
        bits=paid.bits,
        bits_usd=usd(paid.bits_cents),
        subs=paid.subs,
        subs_usd=usd(paid.sub_cents),
        paid_events=paid.events,
        **viewer_figures(fig),
        mean_engagement=mean_score(fig.scores),
        engagement_minutes=len(fig.scores),
    )


def window_paid(raw: RawRange, window: Window, fig: Figures) -> PaidSums:
    """Paid totals of ``window``: ``raw``'s totals when read without records, else ``fig``'s."""
    if raw.paid_totals is None:
        return PaidSums.of(paid_record(p) for p in fig.paid)
    if (window.start_ms, window.stop_ms) != (raw.start_ms, raw.end_ms):
        raise ValueError("paid totals cover the range read, not a part of it")
    return raw.paid_totals


def paid_record(p: Paid) -> dict[str, Any]:
    """The fields of ``p``'s ``paid_data`` record that its totals depend on."""
    return {"type": p.type, "cents": p.cents, "bits": p.bits, "count": p.count}


def viewer_figures(fig: Figures) -> dict[str, Any]:
    """``avg_viewers``, ``peak_viewers`` and ``hours_watched`` of ``fig``."""
    return {
        "avg_viewers": round(fig.viewer_ms / fig.duration_ms, 2) if fig.duration_ms else 0.0,
        "peak_viewers": fig.peak_viewers,
        "hours_watched": round(fig.viewer_ms / HOUR_MS, 3),
    }


def mean_score(scores: Sequence[float]) -> float | None:
    """Mean of per-minute engagement scores, one decimal; None without any minute."""
    return round(fmean(scores), 1) if scores else None


def per_minute(count: int, duration_ms: int) -> float:
    """``count`` per minute of ``duration_ms`` (0 for an empty range), two decimals."""
    return round(count * MINUTE_MS / duration_ms, 2) if duration_ms else 0.0


def usd(cents: int) -> float:
    """Cents as USD."""
    return round(cents / 100, 2)


def usd_per_hour(cents: int, duration_ms: int) -> float:
    """``cents`` per hour of ``duration_ms``, USD (0 for an empty range)."""
    return round(cents / 100 * HOUR_MS / duration_ms, 2) if duration_ms else 0.0


def iso(at_ms: int) -> str:
    """Epoch ms as RFC 3339 UTC (exact: no float seconds on the way)."""
    return format_ts(EPOCH + timedelta(milliseconds=at_ms))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


async def segment_stats(
    redis: Redis, keys: Keys, channel: str, start_ms: int, end_ms: int
) -> SegmentStats:
    """Figures of ``channel`` over ``[start_ms, end_ms)`` (epoch ms, event time).

    * ``chat_messages``: exact, from the per-second chat counts; a second belongs to
      the range its start falls in (exact when the bounds are whole seconds).
      ``chat_velocity`` = messages per minute of the range.
    * ``unique_chatters``: minute resolution; everyone who wrote in a clock minute
      overlapping the range (a partly covered minute counts whole), capped at
      ``chat_messages`` (so a range without messages has no chatters).
    * ``revenue_usd`` (donations + bits + subs), ``donations_usd``, ``bits``, ``subs``
      (sum of sub counts, a gift of 5 is 5): exact, paid events with ``ts`` in range;
      ``revenue_per_hour_usd`` = revenue_usd x 3600 / duration_s. Read as totals
      (``shared.paid_sums``), so the cost follows the range's minutes, not its paid
      events: the orchestrator's reward baseline spans the whole stream so far.
    * ``avg_viewers``: time-weighted; the count in force at an instant is the latest
      sample at or before it (before the first sample, the first).
      ``peak_viewers``: the highest count in force; ``hours_watched``: viewer-hours.
    * ``mean_engagement``: the mean over each whole clock minute inside the range of
      ``engagement_score(messages that minute, viewers in force at its start,
      distinct chatters that minute, paid events that minute)``; null when the range
      holds no whole minute (``engagement_minutes`` says how many it is over).
    """
    raw = await read_range(redis, keys.analytics(channel), start_ms, end_ms, records=False)
    return stats_of(raw, Window(start_ms, end_ms))


# --------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class Span:
    """Where one stream lies in time (``ended_ms`` None while live; ``now_ms`` the clock)."""

    stream_id: str
    started_ms: int
    ended_ms: int | None
    now_ms: int
    ended_by_next: bool = False
    """True when another stream's start ended it (that instant is the next stream's)."""

    @property
    def window(self) -> Window:
        """The stream's time: to its end, or through the clock while live.

        Events at the very instant of its ``stream_started`` or its own ``stream_ended``
        belong to it (the window is closed at its end, and counts chat from the
        start of its first second).
        """
        if self.ended_ms is not None:
            closed = not self.ended_by_next
            return Window(self.started_ms, self.ended_ms, closed, whole_first_second=True)
        now = max(self.now_ms, self.started_ms)
        return Window(self.started_ms, now, closed=True, whole_first_second=True)


Entry = tuple[int, dict[str, Any]]
"""A lifecycle event: (ts ms, its JSON record)."""


async def read_lifecycle(redis: Redis, keys: AnalyticsKeys) -> tuple[int, list[tuple[str, float]]]:
    """The channel clock (ms, 0 before any event) and its lifecycle ``(JSON, ts ms)`` pairs."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zscore(keys.clock, "now")
        pipe.zrange(keys.lifecycle, 0, -1, withscores=True)
        now, pairs = await pipe.execute()
    return int(now or 0), [(str(raw), float(at)) for raw, at in pairs]


LATEST_PAGE = 64
STARTED_MARK = '"type": "stream_started"'


async def read_latest_lifecycle(
    redis: Redis, keys: AnalyticsKeys
) -> tuple[int, list[tuple[str, float]]]:
    """Like :func:`read_lifecycle`, but only back to the latest ``stream_started``.

    Reads newest first, a page at a time, so the cost follows the latest stream's
    length, not the channel's whole history (the orchestrator calls this every tick).
    """
    now = await redis.zscore(keys.clock, "now")
    pairs: list[tuple[str, float]] = []
    while True:
        page: list[tuple[str, float]] = await redis.zrevrange(  # type: ignore[assignment]
            keys.lifecycle, len(pairs), len(pairs) + LATEST_PAGE - 1, withscores=True
        )
        pairs += [(str(raw), float(at)) for raw, at in page]
        if len(page) < LATEST_PAGE or any(STARTED_MARK in str(raw) for raw, _ in page):
            return int(now or 0), pairs


def parse_lifecycle(pairs: Iterable[tuple[str, float]]) -> list[Entry]:
    """Lifecycle pairs as entries in time order (ties as :func:`lifecycle_order`)."""
    ordered = sorted(pairs, key=lifecycle_order)
    return [(int(at), json.loads(raw)) for raw, at in ordered]


def find_span(entries: Sequence[Entry], stream_id: str, now_ms: int) -> Span | None:
    """The span of ``stream_id``, or None when it never started.

    It starts at its first ``stream_started`` and ends at its ``stream_ended`` or at
    the next ``stream_started`` of another stream; a later start of the same id (a
    reconnect) makes it live again.
    """
    started: int | None = None
    ended: int | None = None
    by_next = False
    for at, event in entries:
        kind, sid = event["type"], event.get("stream_id")
        if kind == "stream_started" and sid == stream_id:
            started, ended = (at if started is None else started), None
        elif started is not None and ended is None and _ends(kind, sid, stream_id):
            ended, by_next = at, kind == "stream_started"
    return None if started is None else Span(stream_id, started, ended, now_ms, by_next)


def _ends(kind: str, sid: str | None, stream_id: str) -> bool:
    """True for a lifecycle event that ends ``stream_id`` while it is live."""
    return (kind == "stream_ended" and sid == stream_id) or (
        kind == "stream_started" and sid != stream_id
    )


def build_segments(entries: Sequence[Entry], span: Span) -> list[Segment]:
    """One segment per activity change of the span's stream inside the span (changes
    before its start, at or after its end, or of another stream are outside it); a
    change superseded in the same ms is dropped."""
    changes = [
        (at, event)
        for at, event in entries
        if event["type"] == "activity_changed"
        and event.get("stream_id") == span.stream_id
        and span.started_ms <= at < _limit(span)
    ]
    kept = [c for n, c in enumerate(changes, 1) if n == len(changes) or changes[n][0] != c[0]]
    ends = [at for at, _ in kept[1:]] + [span.ended_ms]
    return [
        make_segment(span, at, end, event) for (at, event), end in zip(kept, ends, strict=False)
    ]


def _limit(span: Span) -> float:
    return span.ended_ms if span.ended_ms is not None else math.inf


def make_segment(span: Span, start_ms: int, end_ms: int | None, event: dict[str, Any]) -> Segment:
    """A segment from its change event; ``end_ms`` None while it is on air."""
    activity = event["activity"]
    stop = end_ms if end_ms is not None else max(span.now_ms, start_ms)
    return Segment(
        segment_id=f"{span.stream_id}:{start_ms}:{activity}",
        activity=activity,
        previous=event.get("previous", ""),
        decided_by=event.get("decided_by", ""),
        reason=event.get("reason", ""),
        start=iso(start_ms),
        end=iso(end_ms) if end_ms is not None else None,
        start_ms=start_ms,
        end_ms=end_ms,
        on_air=end_ms is None,
        duration_s=(stop - start_ms) / SECOND_MS,
    )


def segment_window(segment: Segment, span: Span) -> Window:
    """A segment's time: to its end, or through the clock while on air.

    A segment at the stream's start or end shares the stream's boundary rules, so
    the activities add up to the stream's figures.
    """
    first = segment.start_ms == span.started_ms
    if segment.end_ms is not None:
        last = segment.end_ms == span.ended_ms and not span.ended_by_next
        return Window(segment.start_ms, segment.end_ms, last, whole_first_second=first)
    return Window(segment.start_ms, span.window.end_ms, closed=True, whole_first_second=first)


async def load_stream(
    redis: Redis, keys: AnalyticsKeys, stream_id: str | None
) -> tuple[str, Span | None, list[Segment]]:
    """The stream id (latest started by default), its span and its segments."""
    reader = read_lifecycle if stream_id else read_latest_lifecycle
    now_ms, pairs = await reader(redis, keys)
    entries = parse_lifecycle(pairs)
    if stream_id is None:
        stream_id = stream_state(pairs).stream_id
    span = find_span(entries, stream_id, now_ms) if stream_id else None
    return stream_id, span, build_segments(entries, span) if span else []


async def timeline(
    redis: Redis, keys: Keys, channel: str, stream_id: str | None = None
) -> Timeline:
    """Activity segments of ``stream_id`` on ``channel`` (the latest started by default).

    A segment runs from its ``activity_changed`` to the next change or the stream's
    end; the last segment of a live stream is on air (``end`` null) and its
    ``duration_s`` runs to the channel clock. ``found`` is false (no segments) when
    the stream never started.
    """
    stream_id, span, segments = await load_stream(redis, keys.analytics(channel), stream_id)
    return Timeline(
        channel=channel,
        stream_id=stream_id or "",
        found=span is not None,
        is_live=span is not None and span.ended_ms is None,
        started=iso(span.started_ms) if span else None,
        started_ms=span.started_ms if span else None,
        ended=iso(span.ended_ms) if span and span.ended_ms is not None else None,
        ended_ms=span.ended_ms if span else None,
        segments=segments,
    )


# ---------------------------------------------------------------------- summary


async def stream_summary(
    redis: Redis, keys: Keys, channel: str, stream_id: str | None = None
) -> StreamSummary:
    """Post-stream report of ``stream_id`` on ``channel`` (the latest started by default).

    Per-range rules are those of :func:`segment_stats`; the stream runs as in the
    module doc. Never raises for missing data: a stream that never started gives
    ``found`` false, and whatever is absent is listed in ``missing`` with zeros.
    Two round trips: the lifecycle, then one script reading the stream's range.
    """
    analytics = keys.analytics(channel)
    stream_id, span, segments = await load_stream(redis, analytics, stream_id)
    if span is None:
        return not_found(channel, stream_id)
    window = span.window
    raw = await read_range(redis, analytics, window.chat_start_ms, window.stop_ms)
    return summarise(channel, span, segments, without_stale_viewers(raw))


def not_found(channel: str, stream_id: str | None) -> StreamSummary:
    """The summary of a stream that never started: ``found`` false, zeros, all missing."""
    reason = f"no stream_started for stream {stream_id}" if stream_id else None
    reason = reason or f"no stream_started on channel {channel}"
    empty = parse_range(0, 0, [[], [], [], [], [], []])
    span = Span(stream_id or "", 0, 0, 0)
    summary = summarise(channel, span, [], empty)
    return summary.model_copy(
        update={
            "found": False,
            "missing": [reason, *summary.missing],
            **dict.fromkeys(("started", "started_ms", "ended", "ended_ms")),
        }
    )


def summarise(
    channel: str, span: Span, segments: Sequence[Segment], raw: RawRange
) -> StreamSummary:
    """The summary of a found stream from its span, segments and raw state."""
    fig = figures(raw, [span.window])
    reports = [
        SegmentReport(**s.model_dump(), stats=stats_of(raw, segment_window(s, span)))
        for s in segments
    ]
    return StreamSummary(
        channel=channel,
        stream_id=span.stream_id,
        found=True,
        missing=missing(raw, fig, segments),
        **span_fields(span, segments),
        **viewer_figures(fig),
        chat_messages=fig.chat,
        chat_velocity=per_minute(fig.chat, fig.duration_ms),
        unique_chatters=fig.unique_chatters,
        mean_engagement=mean_score(fig.scores),
        **social_counts(raw.social),
        **paid_counts(fig.paid),
        segments=reports,
        activities=activity_reports(raw, span, segments),
        top_chatters=top_chatters(fig.chatters),
        top_donors=top_donors(fig.paid),
        viewer_series=viewer_series(raw),
        chat_velocity_series=chat_series(raw, span.window),
        revenue_series=revenue_series(fig.paid),
    )


def span_fields(span: Span, segments: Sequence[Segment]) -> dict[str, Any]:
    """Start, end, liveness and durations of the stream."""
    first = segments[0].start_ms if segments else span.window.end_ms
    return {
        "started": iso(span.started_ms),
        "started_ms": span.started_ms,
        "ended": iso(span.ended_ms) if span.ended_ms is not None else None,
        "ended_ms": span.ended_ms,
        "is_live": span.ended_ms is None,
        "duration_s": span.window.length_ms / SECOND_MS,
        "untracked_s": (first - span.started_ms) / SECOND_MS,
    }


def missing(raw: RawRange, fig: Figures, segments: Sequence[Segment]) -> list[str]:
    """What the stream has none of (its figures are zeros)."""
    kinds = {p.type for p in fig.paid} | {s.type for s in raw.social}
    absent = {
        "no activity changes": not segments,
        "no viewer counts": not raw.viewers,
        "no chat": fig.chat == 0,
        "no donations": "donation" not in kinds,
        "no bits": "bits" not in kinds,
        "no subs": not kinds & SUB_TYPES,
        "no follows": "follow" not in kinds,
        "no raids": "raid" not in kinds,
    }
    return [item for item, is_absent in absent.items() if is_absent]


def social_counts(social: Sequence[Social]) -> dict[str, int]:
    """``follows``, ``raids`` and ``raid_viewers`` (``social`` is already in range)."""
    raids = [s for s in social if s.type == "raid"]
    return {
        "follows": sum(1 for s in social if s.type == "follow"),
        "raids": len(raids),
        "raid_viewers": sum(s.count for s in raids),
    }


def paid_counts(paid: Sequence[Paid]) -> dict[str, Any]:
    """Sub, bits and donation counts, and revenue by kind."""
    cents = Cents.of(paid)
    return {
        "new_subs": sum(p.count for p in paid if p.type == "sub"),
        "resubs": sum(p.count for p in paid if p.type == "resub"),
        "gifted_subs": sum(p.count for p in paid if p.type == "gift"),
        "bits": sum(p.bits for p in paid),
        "donations_count": sum(1 for p in paid if p.type == "donation"),
        "revenue": Revenue(
            donations_usd=usd(cents.donations),
            bits_usd=usd(cents.bits),
            subs_usd=usd(cents.subs),
            total_usd=usd(cents.total),
        ),
    }


def activity_reports(
    raw: RawRange, span: Span, segments: Sequence[Segment]
) -> list[ActivityReport]:
    """One report per activity, most time on air first (then by name)."""
    windows: dict[str, list[Window]] = defaultdict(list)
    for s in segments:
        windows[s.activity].append(segment_window(s, span))
    stream_ms = span.window.length_ms
    reports = [activity_report(raw, name, w, stream_ms) for name, w in windows.items()]
    return sorted(reports, key=lambda report: (-report.on_air_s, report.activity))


def activity_report(
    raw: RawRange, activity: str, windows: Sequence[Window], stream_ms: int
) -> ActivityReport:
    """Figures of one activity over its segments' ``windows``.

    ``mean_engagement`` is the mean over every whole minute of its segments, i.e. the
    segments' means weighted by their whole minutes.
    """
    fig = figures(raw, windows)
    cents = Cents.of(fig.paid).total
    return ActivityReport(
        activity=activity,
        segments=len(windows),
        on_air_s=fig.duration_ms / SECOND_MS,
        share=round(fig.duration_ms / stream_ms, 4) if stream_ms else 0.0,
        chat_messages=fig.chat,
        chat_velocity=per_minute(fig.chat, fig.duration_ms),
        unique_chatters=fig.unique_chatters,
        revenue_usd=usd(cents),
        revenue_per_hour_usd=usd_per_hour(cents, fig.duration_ms),
        avg_viewers=viewer_figures(fig)["avg_viewers"],
        mean_engagement=mean_score(fig.scores),
    )


def top_chatters(chatters: Counter[str]) -> list[TopChatter]:
    """The 10 chatters with most messages (ties by name)."""
    ranked = sorted(chatters.items(), key=lambda item: (-item[1], item[0]))[:TOP_N]
    return [TopChatter(user=user, messages=count) for user, count in ranked]


def top_donors(paid: Sequence[Paid]) -> list[TopDonor]:
    """The 10 users who gave most in donations and bits (ties by name)."""
    cents: Counter[str] = Counter()
    for p in paid:
        if p.type in DONATION_TYPES:
            cents[p.user] += p.cents
    ranked = sorted(cents.items(), key=lambda item: (-item[1], item[0]))[:TOP_N]
    return [TopDonor(user=user, usd=usd(total)) for user, total in ranked]


def viewer_series(raw: RawRange) -> list[ViewerPoint]:
    """Viewer samples inside the range (none before it), in time order."""
    return [
        ViewerPoint(ts=iso(ts), ts_ms=ts, count=count)
        for ts, count in raw.viewers
        if raw.start_ms <= ts < raw.end_ms
    ]


def chat_series(raw: RawRange, window: Window | None = None) -> list[ChatPoint]:
    """Messages in each clock minute overlapping the range, zeros included.

    The first and last minutes count only the seconds inside the range; with a
    ``window``, the minutes are those of its chatters (see :attr:`Window.chatter_stop_ms`).
    """
    stop = window.chatter_stop_ms if window is not None else raw.end_ms
    return [
        ChatPoint(
            ts=iso(minute * MINUTE_MS),
            ts_ms=minute * MINUTE_MS,
            messages_per_min=raw.chat_per_min.get(minute, 0),
        )
        for minute in overlapping_minutes(raw.start_ms, stop)
    ]


def revenue_series(paid: Sequence[Paid]) -> list[RevenuePoint]:
    """Each paid event in time order with the running total, USD."""
    points, total = [], 0
    for p in paid:
        total += p.cents
        points.append(
            RevenuePoint(
                ts=iso(p.ts_ms),
                ts_ms=p.ts_ms,
                type=p.type,
                amount_usd=usd(p.cents),
                cumulative_usd=usd(total),
            )
        )
    return points


# ------------------------------------------------------------- recent donations


async def recent_donations(redis: Redis, keys: Keys, channel: str, limit: int) -> list[PaidEvent]:
    """The latest ``limit`` donations and bits cheers, newest first (one script call).

    Each is shaped like the ``data`` of the dashboard's ``donation`` message
    (amount in USD, timestamp RFC 3339 UTC). Subs in between are skipped on the
    server, 100 paid events at a time.
    """
    if limit <= 0:
        return []
    analytics = keys.analytics(channel)
    script = redis.register_script(RECENT_DONATIONS)
    records = await script(keys=[analytics.paid, analytics.paid_data], args=[limit])
    return [paid_event(Paid.parse(record)) for record in records]


def paid_event(p: Paid) -> PaidEvent:
    """A donation or cheer record as a :class:`PaidEvent`."""
    return PaidEvent(
        id=p.id,
        username=p.user,
        amount=usd(p.cents),
        message=p.message,
        timestamp=iso(p.ts_ms),
        type="bits" if p.type == "bits" else "donation",
    )
