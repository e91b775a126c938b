"""A channel's lifecycle: where each stream lies in time and its activity segments.

Analytics keeps every ``stream_started``, ``stream_ended`` and ``activity_changed``
as one member of ``analytics:{channel}:lifecycle`` (score: its ``ts`` in ms),
encoded by :func:`lifecycle_member`, the one encoding writer and readers share.
Readers parse members (:func:`lifecycle_type`), never match their text.
:func:`stream_state` folds them into where the broadcast stands (analytics'
metrics, the orchestrator's loop); :func:`timeline` gives one stream's segments.

The set is never trimmed, so it is never read whole in service: one script,
:data:`READ_STREAM`, reads one stream's range of it, found through the clock's
``started`` (the latest stream) or the index by stream the writer keeps beside it
(``stream_first_starts``, ``stream_last_starts``), so a read costs the stream's
entries, not the channel's history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from shared.clock import format_ms
from shared.keys import AnalyticsKeys, Keys
from shared.readmodel.figures import Window
from shared.readmodel.models import Segment, Timeline
from shared.readmodel.ranges import SECOND_MS

STREAM_STARTED = "stream_started"
STREAM_ENDED = "stream_ended"


def lifecycle_member(record: Mapping[str, Any]) -> str:
    """The sorted-set member of one lifecycle record: JSON with sorted keys.

    Analytics writes every member through this, so the same event always encodes
    to the same member and the set holds it once however often it is delivered.
    """
    return json.dumps(record, sort_keys=True)


def lifecycle_type(raw: str) -> str:
    """The ``type`` of a lifecycle member, parsed (whatever the key order of its JSON)."""
    return str(json.loads(raw).get("type", ""))


@dataclass(frozen=True)
class StreamState:
    """Where the channel's broadcast stands, from its lifecycle events."""

    is_live: bool = False
    stream_id: str = ""
    started_ms: int | None = None
    ended_ms: int | None = None
    activity: str = ""
    activity_since_ms: int | None = None


TYPE_ORDER = {STREAM_ENDED: 0, STREAM_STARTED: 1}
"""At one instant a stream ends before the next starts, and starts before its first activity."""


def lifecycle_order(pair: tuple[str, float]) -> tuple[float, int, str]:
    """Sort key of a lifecycle ``(JSON, ts ms)`` pair: time, then type, then the JSON."""
    raw, at = pair
    return at, TYPE_ORDER.get(lifecycle_type(raw), 2), raw


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
"""Entries a lifecycle script reads at a time when it walks the set entry by entry."""

LIFECYCLE_LUA = """
-- Reads of one stream's lifecycle (shared/readmodel/lifecycle.py): a range of the set
-- from the stream's start, never its whole history.
local function lifecycle_event(raw)
  local ok, event = pcall(cjson.decode, raw)
  if ok and type(event) == 'table' then return event end
  return {}
end
local function latest_start_ms(clock, lifecycle, page)
  -- the clock's start is the latest stream_started's ts (both written by one script);
  -- state without it (written by hand, or before it existed) is walked back to one
  local started = redis.call('ZSCORE', clock, 'started')
  if started then return started end
  local offset = 0
  while true do
    local entries = redis.call('ZREVRANGE', lifecycle, offset, offset + page - 1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      if lifecycle_event(entries[i]).type == 'stream_started' then return entries[i + 1] end
    end
    if #entries < 2 * page then return nil end
    offset = offset + page
  end
end
local function latest_lifecycle(clock, lifecycle, page)
  -- every entry from the latest stream_started's instant on (all of them without one)
  local started = latest_start_ms(clock, lifecycle, page)
  if not started then return redis.call('ZRANGE', lifecycle, 0, -1, 'WITHSCORES') end
  return redis.call('ZRANGEBYSCORE', lifecycle, started, '+inf', 'WITHSCORES')
end
"""

READ_STREAM = (
    LIFECYCLE_LUA
    + """
-- KEYS: clock, lifecycle, stream_first_starts, stream_last_starts.
-- ARGV: stream id ('' for the latest started), page.
-- Returns {clock now, flat member/score pairs}: every entry from the stream's first
-- start through the event that ends it (through the newest entry while it is live).
local clock, lifecycle, firsts, lasts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = redis.call('ZSCORE', clock, 'now') or '0'
local page = tonumber(ARGV[2])
local function range(lo, hi)
  return redis.call('ZRANGEBYSCORE', lifecycle, lo, hi, 'WITHSCORES')
end
local id = ARGV[1]
if id == '' then
  local entries = latest_lifecycle(clock, lifecycle, page)
  if #entries == 0 then return {now, entries} end
  -- a stream started again (a reconnect) began at its first start: read back to it
  local from = entries[2]
  local lo = tonumber(from)
  for i = 1, #entries, 2 do
    if entries[i + 1] ~= from then break end
    local event = lifecycle_event(entries[i])
    if event.type == 'stream_started' and type(event.stream_id) == 'string' then
      local first = tonumber(redis.call('ZSCORE', firsts, event.stream_id) or from)
      if first < lo then lo = first end
    end
  end
  if lo < tonumber(from) then
    local before = range(string.format('%d', lo), '(' .. from)
    for i = 1, #entries do before[#before + 1] = entries[i] end
    entries = before
  end
  return {now, entries}
end
local first = redis.call('ZSCORE', firsts, id)
if not first then
  -- not indexed: no such stream, or state from before the index (read it all then)
  local oldest = redis.call('ZRANGE', lifecycle, 0, 0, 'WITHSCORES')
  local indexed = redis.call('ZRANGE', firsts, 0, 0, 'WITHSCORES')
  if #oldest > 0 and (#indexed == 0 or tonumber(oldest[2]) < tonumber(indexed[2])) then
    return {now, redis.call('ZRANGE', lifecycle, 0, -1, 'WITHSCORES')}
  end
  return {now, {}}
end
-- past its latest start it ends at its own stream_ended or at another stream's start
local last = redis.call('ZSCORE', lasts, id) or first
local offset = 0
while true do
  local entries = redis.call(
    'ZRANGEBYSCORE', lifecycle, '(' .. last, '+inf', 'WITHSCORES', 'LIMIT', offset, page)
  for i = 1, #entries, 2 do
    local event = lifecycle_event(entries[i])
    if (event.type == 'stream_ended' and event.stream_id == id)
        or (event.type == 'stream_started' and event.stream_id ~= id) then
      return {now, range(first, entries[i + 1])}
    end
  end
  if #entries < 2 * page then return {now, range(first, '+inf')} end
  offset = offset + page
end
"""
)


async def read_latest_lifecycle(
    redis: Redis, keys: AnalyticsKeys
) -> tuple[int, list[tuple[str, float]]]:
    """Like :func:`read_lifecycle`, but only the latest started stream's entries, newest first.

    Every entry from the latest ``stream_started``'s instant on (from the stream's first
    start, if it was started again), so the cost follows the latest stream's length, not
    the channel's history (the orchestrator calls this every tick).
    """
    return await _read_stream(redis, keys, "", newest_first=True)


async def read_stream_lifecycle(
    redis: Redis, keys: AnalyticsKeys, stream_id: str
) -> tuple[int, list[tuple[str, float]]]:
    """The channel clock and the entries :func:`find_span` needs for ``stream_id``, in time
    order: from its first start through the event that ends it, one range of the set.

    A stream the index (``stream_first_starts``) lacks gives no entries, unless the
    lifecycle holds entries older than the index (state written before it): then all.
    """
    return await _read_stream(redis, keys, stream_id, newest_first=False)


async def _read_stream(
    redis: Redis, keys: AnalyticsKeys, stream_id: str, *, newest_first: bool
) -> tuple[int, list[tuple[str, float]]]:
    """One run of :data:`READ_STREAM` (atomic, one round trip)."""
    script = redis.register_script(READ_STREAM)
    now, flat = await script(
        keys=[keys.clock, keys.lifecycle, keys.stream_first_starts, keys.stream_last_starts],
        args=[stream_id, LATEST_PAGE],
    )
    pairs = [(_text(raw), float(at)) for raw, at in zip(flat[::2], flat[1::2], strict=True)]
    if newest_first:
        pairs.reverse()
    return int(float(now)), pairs


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        start=format_ms(start_ms),
        end=format_ms(end_ms) if end_ms is not None else None,
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
    if stream_id:
        now_ms, pairs = await read_stream_lifecycle(redis, keys, stream_id)
    else:
        now_ms, pairs = await read_latest_lifecycle(redis, keys)
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
        started=format_ms(span.started_ms) if span else None,
        started_ms=span.started_ms if span else None,
        ended=format_ms(span.ended_ms) if span and span.ended_ms is not None else None,
        ended_ms=span.ended_ms if span else None,
        segments=segments,
    )
