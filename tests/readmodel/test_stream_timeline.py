"""Stream timelines on a real Redis: which segments belong to which stream, and where it ends.

Every figure below is worked out by hand from the events, in the comments beside it.
Times are seconds after ``START`` (2026-02-27T10:00:00Z) unless they say otherwise.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.events import (
    ActivityChangedEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
    ViewerCountEvent,
)
from shared.publisher import Publisher
from shared.readmodel.figures import segment_stats
from shared.readmodel.lifecycle import timeline
from shared.readmodel.summary import stream_summary
from tests.analytics.streams import STREAM, at
from tests.analytics.test_metrics import consume_all
from tests.readmodel.summary_streams import (
    START_MS,
    TWO,
    extended_stream,
    ms,
    publish,
)


class TestTimeline:
    async def test_an_ended_stream_has_its_segments_and_nothing_outside_it(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        got = await timeline(redis, settings.keys, "demo", STREAM)
        assert got.found and not got.is_live and got.stream_id == STREAM
        assert (got.started, got.started_ms) == ("2026-02-27T10:00:00Z", START_MS)
        assert (got.ended, got.ended_ms) == ("2026-02-27T10:15:00Z", ms(900))
        # preshow (-30 s) and afterparty (920 s) lie outside [0, 900 s).
        assert [
            (s.activity, s.start_ms, s.end_ms, s.duration_s, s.decided_by, s.reason)
            for s in got.segments
        ] == [
            ("talk", ms(0), ms(300), 300.0, "sim", "stream start"),
            ("q_and_a", ms(300), ms(600), 300.0, "bandit", "chat asks"),
            ("gaming", ms(600), ms(780), 180.0, "bandit", "energy dip"),
            ("talk", ms(780), ms(900), 120.0, "bandit", "wind down"),
        ]
        assert [s.segment_id for s in got.segments] == [
            "s-known:1772186400000:talk",
            "s-known:1772186700000:q_and_a",
            "s-known:1772187000000:gaming",
            "s-known:1772187180000:talk",
        ]
        assert [(s.start, s.end) for s in got.segments][2] == (
            "2026-02-27T10:10:00Z",
            "2026-02-27T10:13:00Z",
        )
        assert not any(s.on_air for s in got.segments)

    async def test_by_default_the_latest_stream_whose_last_segment_is_on_air(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        got = await timeline(redis, settings.keys, "demo")
        assert got.found and got.is_live and got.stream_id == TWO
        assert got.ended is None and got.ended_ms is None
        [segment] = got.segments
        # On air from 1200 s; the clock is the last viewer sample, 1260 s.
        assert segment.segment_id == f"{TWO}:{ms(1200)}:talk"
        assert (segment.end, segment.end_ms, segment.on_air) == (None, None, True)
        assert segment.duration_s == 60.0

    async def test_segment_ids_do_not_change_as_the_stream_goes_on(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        events = extended_stream()
        ended_at = next(n for n, e in enumerate(events) if e.id == "x-a4")
        await publish(redis, settings, events[: ended_at + 1])
        before = await timeline(redis, settings.keys, "demo", STREAM)
        await Publisher(redis, settings).publish_many(events[ended_at + 1 :])
        await consume_all(redis, settings, len(events) - ended_at - 1)
        after = await timeline(redis, settings.keys, "demo", STREAM)
        assert [s.segment_id for s in before.segments] == [s.segment_id for s in after.segments]
        # Before the end arrived, the last talk segment was on air up to the clock.
        assert before.is_live and before.segments[-1].on_air
        assert not after.is_live and after.segments[-1].end_ms == ms(900)

    async def test_a_stream_ends_when_another_starts_and_same_ms_changes_keep_the_last(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        c: dict[str, Any] = {"channel": "solo", "source": "sim"}
        events: list[EventBase] = [
            StreamStartedEvent(**c, id="A", ts=at(0), stream_id="a"),
            ActivityChangedEvent(**c, id="A1", ts=at(10), stream_id="a", activity="x"),
            ActivityChangedEvent(**c, id="A2", ts=at(10), stream_id="a", activity="y"),
            StreamStartedEvent(**c, id="B", ts=at(100), stream_id="b"),
            ViewerCountEvent(**c, id="V0", ts=at(-50), count=33),
            ViewerCountEvent(**c, id="V1", ts=at(120), count=44),
            ChatEvent(**c, id="C1", ts=at(150), user="zoe", text="hi"),
        ]
        await publish(redis, settings, events)
        got = await timeline(redis, settings.keys, "solo", "a")
        # a never ended: b's start at 100 s ends it. The two changes at 10 s are ordered
        # by their JSON members ("activity": "x" < "y"), so y supersedes x.
        assert (got.is_live, got.ended_ms) == (False, ms(100))
        assert [(s.activity, s.start_ms, s.end_ms) for s in got.segments] == [
            ("y", ms(10), ms(100))
        ]
        summary = await stream_summary(redis, settings.keys, "solo", "a")
        assert summary.found and summary.untracked_s == 10.0 and summary.duration_s == 100.0
        assert summary.missing == [
            "no viewer counts",
            "no chat",
            "no donations",
            "no bits",
            "no subs",
            "no follows",
            "no raids",
        ]
        assert summary.activities[0].share == 0.9  # 90 s of 100 s
        # a has no viewer sample of its own: zeros, not the 33 left from before it.
        assert (summary.avg_viewers, summary.peak_viewers, summary.viewer_series) == (0.0, 0, [])
        # b has one (120 s), so the 33 in force at its start counts: [100, 150 s] is
        # 33 for 20 s and 44 for 30 s = 1,980 viewer-s over 50 s. Live, it runs through
        # the clock (150 s, zoe's message), which therefore counts.
        b = await stream_summary(redis, settings.keys, "solo")
        assert (b.stream_id, b.is_live, b.duration_s, b.untracked_s) == ("b", True, 50.0, 50.0)
        assert (b.avg_viewers, b.peak_viewers, b.chat_messages, b.unique_chatters) == (
            39.6,
            44,
            1,
            1,
        )
        assert b.missing == ["no activity changes", "no donations", "no bits", "no subs",
                             "no follows", "no raids"]  # fmt: skip
        # The same range as a plain half-open range leaves the message at 150 s out.
        plain = await segment_stats(redis, settings.keys, "solo", ms(100), ms(150))
        assert (plain.chat_messages, plain.unique_chatters) == (0, 0)


class TestBoundaries:
    async def test_events_at_the_start_and_end_instants_belong_to_the_stream(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        """Twitch starts streams mid-second: a message at that very instant counts, and so
        does everything at the instant of the stream's own stream_ended."""
        c = {"channel": "edge", "source": "twitch"}
        start, end = at(0.5), at(120.25)
        events: list[EventBase] = [
            StreamStartedEvent(**c, id="on", ts=start, stream_id="s-edge"),
            ActivityChangedEvent(**c, id="a", ts=start, stream_id="s-edge", activity="talk"),
            ChatEvent(**c, id="first", ts=start, user="early", text="first!"),
            ChatEvent(**c, id="mid", ts=at(60), user="mid", text="hi"),
            ChatEvent(**c, id="last", ts=end, user="late", text="bye"),
            DonationEvent(**c, id="tip", ts=end, user="late", amount="5.00"),
            StreamEndedEvent(**c, id="off", ts=end, stream_id="s-edge"),
            ChatEvent(**c, id="after", ts=at(121.5), user="after", text="missed it"),
        ]
        await publish(redis, settings, events)
        s = await stream_summary(redis, settings.keys, "edge", "s-edge")
        assert (s.chat_messages, s.unique_chatters) == (3, 3)
        assert (s.donations_count, s.revenue.total_usd) == (1, 5.0)
        [talk] = s.activities
        assert talk.chat_messages == 3, "the activities add up to the stream"
