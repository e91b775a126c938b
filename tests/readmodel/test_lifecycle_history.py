"""A channel's past streams change nothing of what is read about one stream.

The lifecycle is never trimmed, and readers read one stream's range of it (the
clock's ``started``, the index by stream). Each answer must be the one a read of
the whole lifecycle gives (``read_lifecycle``, the read every reader made before),
whatever the history: reconnects, a stream ended by the next one's start, events at
the same instant, state written before the index existed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from services.analytics.handler import apply_events
from services.analytics.metrics import MetricsComputer, Windows
from shared.events import (
    ActivityChangedEvent,
    DonationEvent,
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
    ViewerCountEvent,
)
from shared.keys import Keys
from shared.readmodel.lifecycle import (
    build_segments,
    find_span,
    parse_lifecycle,
    read_latest_lifecycle,
    read_lifecycle,
    stream_state,
    timeline,
)
from shared.readmodel.models import Timeline

START = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def old_streams(channel: str, count: int) -> list[EventBase]:
    """``count`` streams, each started, given an activity and ended, the days before."""
    c: dict[str, Any] = {"channel": channel, "source": "sim"}
    events: list[EventBase] = []
    for k in range(count):
        begin = START - timedelta(days=1, hours=k)
        sid = f"old{k}"
        events += [
            StreamStartedEvent(**c, id=f"os{k}", ts=begin, stream_id=sid),
            ActivityChangedEvent(**c, id=f"oa{k}", ts=begin, stream_id=sid, activity="talk"),
            StreamEndedEvent(**c, id=f"oe{k}", ts=begin + timedelta(minutes=30), stream_id=sid),
        ]
    return events


def current_stream(channel: str) -> list[EventBase]:
    """Today's live stream: two activities, viewers and a donation."""
    c: dict[str, Any] = {"channel": channel, "source": "sim"}
    return [
        StreamStartedEvent(**c, id="s", ts=at(0), stream_id="now"),
        ActivityChangedEvent(**c, id="a1", ts=at(0), stream_id="now", activity="talk"),
        ViewerCountEvent(**c, id="v1", ts=at(1), count=80),
        DonationEvent(**c, id="d1", ts=at(5), user="ann", amount=5, currency="USD"),
        ActivityChangedEvent(**c, id="a2", ts=at(10), stream_id="now", activity="music"),
        ViewerCountEvent(**c, id="v2", ts=at(12), count=90),
    ]


def comparable(line: Timeline) -> dict[str, Any]:
    return line.model_dump(exclude={"channel"})


async def whole_read(redis: Redis, keys: Keys, channel: str, stream_id: str) -> Any:
    """``(span, segments)`` of ``stream_id`` from the whole lifecycle, as readers did before."""
    now_ms, pairs = await read_lifecycle(redis, keys.analytics(channel))
    span = find_span(parse_lifecycle(pairs), stream_id, now_ms)
    return span, build_segments(parse_lifecycle(pairs), span) if span else []


async def test_figures_and_timeline_of_the_live_stream_ignore_a_thousand_old_entries(
    redis: Redis, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    await apply_events(redis, keys, current_stream("fresh"))
    await apply_events(redis, keys, old_streams("veteran", 333) + current_stream("veteran"))
    assert await redis.zcard(keys.analytics("veteran").lifecycle) == 1_002
    figures = MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC"))

    fresh, veteran = await figures.recompute("fresh"), await figures.recompute("veteran")

    assert fresh.pop("version") != veteran.pop("version")  # 999 more events applied
    assert veteran == fresh and veteran["stream_id"] == "now"
    assert (veteran["current_activity"], veteran["revenue_stream"]) == ("music", "5.00")
    assert comparable(await timeline(redis, keys, "veteran")) == comparable(
        await timeline(redis, keys, "fresh")
    )
    _, latest = await read_latest_lifecycle(redis, keys.analytics("veteran"))
    _, whole = await read_lifecycle(redis, keys.analytics("veteran"))
    today = [pair for pair in whole if pair[1] >= START.timestamp() * 1000]
    assert sorted(latest) == sorted(today) and len(latest) == 3  # no old stream read


def tangled(channel: str) -> list[EventBase]:
    """Streams whose spans only a careful range read gets right.

    a: started, then b starts (ending a), then a starts again (a reconnect: live
    again, back to its first start), then a ends. c starts at the very ms a ends,
    with a change at that ms; d starts at the same ms as c ends; e is started twice
    in a row and is live.
    """
    c: dict[str, Any] = {"channel": channel, "source": "sim"}

    def start(n: str, m: float, sid: str) -> EventBase:
        return StreamStartedEvent(**c, id=n, ts=at(m), stream_id=sid)

    def change(n: str, m: float, sid: str, activity: str) -> EventBase:
        return ActivityChangedEvent(**c, id=n, ts=at(m), stream_id=sid, activity=activity)

    def end(n: str, m: float, sid: str) -> EventBase:
        return StreamEndedEvent(**c, id=n, ts=at(m), stream_id=sid)

    return [
        start("1", 0, "a"), change("2", 1, "a", "talk"),
        start("3", 10, "b"), change("4", 11, "b", "music"), change("4b", 12, "a", "late"),
        start("5", 20, "a"), change("6", 21, "a", "gaming"), end("7", 30, "a"),
        start("8", 30, "c"), change("9", 30, "c", "talk"), change("10", 35, "c", "q_and_a"),
        end("11", 40, "c"), start("12", 40, "d"), change("13", 40, "d", "music"),
        change("14", 45, "c", "after"), end("15", 50, "d"),
        start("16", 60, "e"), change("17", 61, "e", "talk"), start("18", 62, "e"),
        change("19", 63, "e", "music"), ViewerCountEvent(**c, id="v", ts=at(70), count=5),
    ]  # fmt: skip


async def test_every_stream_reads_as_from_the_whole_lifecycle(
    redis: Redis, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    events = old_streams("tangle", 40) + tangled("tangle")
    random.Random(5).shuffle(events)  # the writes commute: any order, any batches
    for first in range(0, len(events), 7):
        await apply_events(redis, keys, events[first : first + 7])

    for stream_id in ["a", "b", "c", "d", "e", "old0", "old39", "never"]:
        span, segments = await whole_read(redis, keys, "tangle", stream_id)
        line = await timeline(redis, keys, "tangle", stream_id)
        assert line.found == (span is not None), stream_id
        assert (line.started_ms, line.ended_ms) == (
            (span.started_ms, span.ended_ms) if span else (None, None)
        ), stream_id
        assert line.segments == segments, stream_id
    latest = await timeline(redis, keys, "tangle")
    assert comparable(latest) == comparable(await timeline(redis, keys, "tangle", "e"))
    assert latest.started_ms == int(at(60).timestamp() * 1000)  # e's first start
    _, pairs = await read_latest_lifecycle(redis, keys.analytics("tangle"))
    _, whole = await read_lifecycle(redis, keys.analytics("tangle"))
    assert stream_state(pairs) == stream_state(whole)
    assert [s.activity for s in latest.segments] == ["talk", "music"]


async def test_state_written_before_the_index_is_still_read_whole(
    redis: Redis, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    await apply_events(redis, keys, old_streams("early", 3) + tangled("early"))
    raw = keys.analytics("early")
    await redis.delete(raw.stream_first_starts, raw.stream_last_starts)

    for stream_id in ["a", "c", "old2"]:
        span, segments = await whole_read(redis, keys, "early", stream_id)
        line = await timeline(redis, keys, "early", stream_id)
        assert span is not None and line.found, stream_id
        assert (line.started_ms, line.ended_ms, line.segments) == (
            span.started_ms,
            span.ended_ms,
            segments,
        ), stream_id
    assert not (await timeline(redis, keys, "early", "never")).found
