"""Segment statistics over any range, and the recent-donations list, on a real Redis.

Every figure below is worked out by hand from the events, in the comments beside it.
Times are seconds after ``START`` (2026-02-27T10:00:00Z) unless they say otherwise.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.events import ChatEvent
from shared.readmodel.donations import recent_donations
from shared.readmodel.figures import segment_stats
from shared.readmodel.summary import stream_summary
from tests.analytics.streams import START, at, known_stream
from tests.readmodel.summary_streams import (
    extended_stream,
    ms,
    publish,
    publish_stream_around,
)


class TestSegmentStats:
    async def test_any_range_by_the_documented_rules(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, known_stream())
        got = await segment_stats(redis, settings.keys, "demo", ms(15), ms(125))
        # Messages at 15..19 s; 5 in 110 s = 2.73/min. Chatters by minute: minutes 0..2
        # overlap, early0 and early1 wrote in minute 0. alice's 10.00 at 100 s, x 3600/110.
        assert (got.duration_s, got.chat_messages, got.chat_velocity) == (110.0, 5, 2.73)
        assert (got.unique_chatters, got.revenue_usd, got.revenue_per_hour_usd) == (2, 10.0, 327.27)
        # The only whole minute inside is minute 1 (60..120 s): e(0, 40, 0, 1) = 14.3.
        assert (got.mean_engagement, got.engagement_minutes) == (14.3, 1)
        assert (got.start, got.end) == ("2026-02-27T10:00:15Z", "2026-02-27T10:02:05Z")

    async def test_before_the_first_sample_the_first_is_in_force(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, known_stream())
        got = await segment_stats(redis, settings.keys, "demo", ms(-120), ms(-90))
        assert (got.avg_viewers, got.peak_viewers, got.chat_messages, got.revenue_usd) == (
            40.0,
            40,
            0,
            0.0,
        )
        # 30 s hold no whole minute.
        assert (got.mean_engagement, got.engagement_minutes) == (None, 0)
        # Across the sample at 300 s: 40 for 50 s, 50 for 10 s; bounds in ms are kept.
        across = await segment_stats(redis, settings.keys, "demo", ms(250), ms(310))
        assert (across.avg_viewers, across.peak_viewers) == (41.67, 50)
        assert across.hours_watched == round((40 * 50 + 50 * 10) / 3600, 3)

    async def test_chatters_and_chat_match_a_brute_force_count(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        # chatter_minutes is scored by message count, so members of one minute have
        # many different scores: a lexicographic range read would miss some of them.
        rng = random.Random(5)
        c: dict[str, Any] = {"channel": "busy", "source": "sim"}
        chat: list[ChatEvent] = []
        for minute in range(12):
            for user in rng.sample([f"u{n}" for n in range(15)], 8):
                for _ in range(rng.choice([1, 1, 2, 3, 5, 8, 40])):
                    second = minute * 60 + rng.randrange(60)
                    chat.append(
                        ChatEvent(**c, id=f"c{len(chat)}", ts=at(second), user=user, text="x")
                    )
        await publish(redis, settings, list(chat))
        for start_s, end_s in [(0, 720), (90, 250), (125, 126), (300, 360), (700, 800)]:
            got = await segment_stats(redis, settings.keys, "busy", ms(start_s), ms(end_s))
            inside = [
                e for e in chat if ms(start_s) <= ms((e.ts - START).total_seconds()) < ms(end_s)
            ]
            minutes = range(start_s // 60, -(-end_s // 60))
            overlapping = {
                e.user for e in chat if int((e.ts - START).total_seconds()) // 60 in minutes
            }
            assert got.chat_messages == len(inside), (start_s, end_s)
            # Minute resolution, capped at one chatter per message (1 s holds few).
            assert got.unique_chatters == min(len(overlapping), len(inside)), (start_s, end_s)
        # Per-user totals over everything, through a stream summary's top chatters.
        await publish_stream_around(redis, settings, "busy", 720)
        summary = await stream_summary(redis, settings.keys, "busy")
        expected = sorted(Counter(e.user for e in chat).items(), key=lambda i: (-i[1], i[0]))
        assert [(t.user, t.messages) for t in summary.top_chatters] == expected[:10]


class TestRecentDonations:
    async def test_newest_first_donations_and_bits_only_in_the_dashboard_format(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        latest = await recent_donations(redis, settings.keys, "demo", 3)
        assert [d.model_dump() for d in latest] == [
            {
                "id": "x-d3",
                "username": "ghost",
                "amount": 50.0,
                "message": "",
                "timestamp": "2026-02-27T10:15:10Z",
                "type": "donation",
            },
            {
                "id": "x-b2",
                "username": "bob",
                "amount": 1.0,
                "message": "",
                "timestamp": "2026-02-27T10:11:50Z",
                "type": "bits",
            },
            {
                "id": "x-d2",
                "username": "zed",
                "amount": 20.0,
                "message": "gg",
                "timestamp": "2026-02-27T10:11:40Z",
                "type": "donation",
            },
        ]
        # All five (the four subs are skipped); none for a channel without any.
        everything = await recent_donations(redis, settings.keys, "demo", 100)
        assert [d.id for d in everything] == ["x-d3", "x-b2", "x-d2", "b1", "d1"]
        assert await recent_donations(redis, settings.keys, "nobody", 5) == []
        assert await recent_donations(redis, settings.keys, "demo", 0) == []
