"""A channel's lifecycle: where each stream lies in time and its activity segments.

Analytics keeps every ``stream_started``, ``stream_ended`` and ``activity_changed``
as one member of ``analytics:{channel}:lifecycle`` (score: its ``ts`` in ms),
encoded by :func:`lifecycle_member`, the one encoding writer and readers share.
Readers parse members (:func:`lifecycle_type`), never match their text.
:func:`stream_state` folds them into where the broadcast stands (analytics'
metrics, the orchestrator's loop); :func:`timeline` gives one stream's segments.
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
        if len(page) < LATEST_PAGE or any(
            lifecycle_type(str(raw)) == STREAM_STARTED for raw, _ in page
        ):
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
        started=format_ms(span.started_ms) if span else None,
        started_ms=span.started_ms if span else None,
        ended=format_ms(span.ended_ms) if span and span.ended_ms is not None else None,
        ended_ms=span.ended_ms if span else None,
        segments=segments,
    )
