"""Stream summaries on a real Redis, from streams published and consumed by the real runner.

Every figure below is worked out by hand from the events, in the comments beside it.
Times are seconds after ``START`` (2026-02-27T10:00:00Z) unless they say otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.readmodel.figures import engagement_score
from shared.readmodel.lifecycle import timeline
from shared.readmodel.summary import stream_summary
from tests.analytics.streams import STREAM, known_stream
from tests.readmodel.summary_streams import (
    TWO,
    extended_stream,
    ms,
    publish,
)


class TestSummary:
    async def test_an_ended_stream_figure_by_figure(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        s = await stream_summary(redis, settings.keys, "demo", STREAM)
        assert s.found and s.missing == [] and not s.is_live
        assert (s.started, s.ended, s.duration_s, s.untracked_s) == (
            "2026-02-27T10:00:00Z",
            "2026-02-27T10:15:00Z",
            900.0,
            0.0,
        )
        # Viewers: 40 for 300 s, 50 for 300 s, 60 for 60 s, 90 for 240 s (the 7 at
        # -60 s and the 5 at 930 s are outside) = 52,200 viewer-s: mean 58, 14.5 h.
        assert (s.avg_viewers, s.peak_viewers, s.hours_watched) == (58.0, 90, 14.5)
        # Chat 10 + 30 + 12 + 4 (the ghost at 905 s is after the end), over 15 min.
        assert (s.chat_messages, s.chat_velocity) == (56, 3.73)
        # early0, early1, user0..user5, gamer, late_talker.
        assert s.unique_chatters == 10
        # Whole minutes 0..14; non-zero: talk 51.2, 14.3 x 3; q_and_a 76.8; gaming
        # 45.9, 13.4; talk 27.2 -> 257.4 / 15 = 17.16.
        assert s.mean_engagement == 17.2
        # erin and frank (late at 950 s is after the end); one raid of 25.
        assert (s.follows, s.raids, s.raid_viewers) == (2, 1, 25)
        # dave's sub, erin's resub, carol's gift of 3; 500 + 100 bits; alice and zed.
        assert (s.new_subs, s.resubs, s.gifted_subs, s.bits, s.donations_count) == (
            1,
            1,
            3,
            600,
            2,
        )
        # 10 + 20 donations; 5 + 1 bits; 7.50 + 2.50 + 2.50 subs; ghost's 50 is outside.
        assert s.revenue.model_dump() == {
            "donations_usd": 30.0,
            "bits_usd": 6.0,
            "subs_usd": 12.5,
            "total_usd": 48.5,
        }

    async def test_each_segment_has_its_own_figures(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        s = await stream_summary(redis, settings.keys, "demo", STREAM)
        talk, qa, gaming, talk2 = (segment.stats for segment in s.segments)
        # talk [0, 300): early chat at 10..19 s from early0/early1; alice 10.00 at 100,
        # bob 500 bits at 200, carol's gift of 3 (7.50) at 250 -> 22.50, x 12 = 270/h.
        assert (talk.chat_messages, talk.chat_velocity, talk.unique_chatters) == (10, 2.0, 2)
        assert (talk.revenue_usd, talk.revenue_per_hour_usd) == (22.5, 270.0)
        assert (talk.donations_usd, talk.bits, talk.bits_usd, talk.subs, talk.subs_usd) == (
            10.0,
            500,
            5.0,
            3,
            7.5,
        )
        assert (talk.avg_viewers, talk.peak_viewers, talk.hours_watched) == (40.0, 40, 3.333)
        # Minutes 0..4: e(10 msgs, 40 viewers, 2 chatters, 0 paid) = 51.2, then minutes
        # 1, 3, 4 hold one paid event each: e(0, 40, 0, 1) = 14.3; minute 2 is 0.
        # (51.2 + 3 x 14.3) / 5 = 18.82.
        assert (talk.mean_engagement, talk.engagement_minutes) == (18.8, 5)
        assert engagement_score(10, 40, 2, 0) == 51.2 and engagement_score(0, 40, 0, 1) == 14.3
        # q_and_a [300, 600): 30 messages at 541..570 from user0..5; dave's 2.50 sub.
        assert (qa.chat_messages, qa.chat_velocity, qa.unique_chatters) == (30, 6.0, 6)
        assert (qa.revenue_usd, qa.revenue_per_hour_usd, qa.subs) == (2.5, 30.0, 1)
        assert (qa.avg_viewers, qa.peak_viewers, qa.hours_watched) == (50.0, 50, 4.167)
        # Minute 9: e(30, 50, 6, 1) = 76.8; minutes 5..8 are 0 -> 15.36.
        assert qa.mean_engagement == 15.4
        # gaming [600, 780): 12 messages from user0 and gamer over 3 min; zed 20 + 1.00
        # of bits = 21.00, x 20 = 420/h; 60 viewers for 60 s then 90 for 120 s
        # = 14,400 viewer-s: mean 80, 4 h.
        assert (gaming.chat_messages, gaming.chat_velocity, gaming.unique_chatters) == (12, 4.0, 2)
        assert (gaming.revenue_usd, gaming.revenue_per_hour_usd) == (21.0, 420.0)
        assert (gaming.avg_viewers, gaming.peak_viewers, gaming.hours_watched) == (80.0, 90, 4.0)
        # Minutes 10..12: e(12, 60, 2, 0) = 45.9, e(0, 90, 0, 2) = 13.4, 0 -> 19.77.
        assert gaming.mean_engagement == 19.8
        # talk [780, 900): 4 messages; erin's 2.50 resub, x 30 = 75/h; 90 viewers.
        assert (talk2.chat_messages, talk2.chat_velocity, talk2.unique_chatters) == (4, 2.0, 1)
        assert (talk2.revenue_usd, talk2.revenue_per_hour_usd) == (2.5, 75.0)
        assert (talk2.avg_viewers, talk2.hours_watched) == (90.0, 3.0)
        # Minutes 13, 14: e(4, 90, 1, 1) = 27.2, 0 -> 13.6.
        assert talk2.mean_engagement == 13.6
        # Segments partition the stream: their chat and revenue add up to its totals.
        assert sum(x.chat_messages for x in (talk, qa, gaming, talk2)) == s.chat_messages
        assert sum(x.revenue_usd for x in (talk, qa, gaming, talk2)) == s.revenue.total_usd

    # Long by design: one expected table per part of the summary, read top to bottom.
    async def test_activities_shares_top_lists_and_series(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        s = await stream_summary(redis, settings.keys, "demo", STREAM)
        assert [
            (a.activity, a.segments, a.on_air_s, a.share, a.chat_messages, a.chat_velocity)
            for a in s.activities
        ] == [
            # talk: 300 + 120 = 420 s of 900; 14 messages over 7 min.
            ("talk", 2, 420.0, 0.4667, 14, 2.0),
            ("q_and_a", 1, 300.0, 0.3333, 30, 6.0),
            ("gaming", 1, 180.0, 0.2, 12, 4.0),
        ]
        talk = s.activities[0]
        # 22.50 + 2.50 = 25.00 over 420 s = 214.29/h; viewers (40 x 300 + 90 x 120) / 420.
        assert (talk.revenue_usd, talk.revenue_per_hour_usd, talk.avg_viewers) == (
            25.0,
            214.29,
            54.29,
        )
        # Mean of its 7 whole minutes: (51.2 + 3 x 14.3 + 27.2) / 7 = 17.33.
        assert (talk.mean_engagement, talk.unique_chatters) == (17.3, 3)
        assert [(a.mean_engagement, a.unique_chatters) for a in s.activities[1:]] == [
            (15.4, 6),
            (19.8, 2),
        ]
        # user0: 5 late + 6 gaming; ties by name; ghost (after the end) is absent.
        assert [(t.user, t.messages) for t in s.top_chatters] == [
            ("user0", 11),
            ("gamer", 6),
            ("early0", 5),
            ("early1", 5),
            ("user1", 5),
            ("user2", 5),
            ("user3", 5),
            ("user4", 5),
            ("user5", 5),
            ("late_talker", 4),
        ]
        # Donations and bits only: bob 5.00 + 1.00; ghost's 50 is after the end.
        assert [(d.user, d.usd) for d in s.top_donors] == [
            ("zed", 20.0),
            ("alice", 10.0),
            ("bob", 6.0),
        ]
        assert [(p.ts_ms, p.count) for p in s.viewer_series] == [
            (ms(0), 40),
            (ms(300), 50),
            (ms(600), 60),
            (ms(660), 90),
        ]
        assert s.viewer_series[0].ts == "2026-02-27T10:00:00Z"
        assert [p.messages_per_min for p in s.chat_velocity_series] == [
            10, 0, 0, 0, 0, 0, 0, 0, 0, 30, 12, 0, 0, 4, 0,
        ]  # fmt: skip
        assert s.chat_velocity_series[9].ts == "2026-02-27T10:09:00Z"
        assert [(p.ts_ms, p.type, p.amount_usd, p.cumulative_usd) for p in s.revenue_series] == [
            (ms(100), "donation", 10.0, 10.0),
            (ms(200), "bits", 5.0, 15.0),
            (ms(250), "gift", 7.5, 22.5),
            (ms(560), "sub", 2.5, 25.0),
            (ms(700), "donation", 20.0, 45.0),
            (ms(710), "bits", 1.0, 46.0),
            (ms(790), "resub", 2.5, 48.5),
        ]

    async def test_a_live_stream_runs_to_the_channel_clock(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, known_stream())
        s = await stream_summary(redis, settings.keys, "demo")
        assert s.found and s.is_live and s.stream_id == STREAM and s.ended is None
        # The clock is 600 s, the last viewer sample (60): live, the stream runs through
        # it, so 60 is the peak; the mean is over 600 s, 40 then 50 viewers.
        assert (s.duration_s, s.avg_viewers, s.peak_viewers, s.hours_watched) == (
            600.0,
            45.0,
            60,
            7.5,
        )
        assert [p.count for p in s.viewer_series] == [40, 50, 60]
        assert [(x.activity, x.end_ms, x.on_air, x.duration_s) for x in s.segments] == [
            ("talk", ms(300), False, 300.0),
            ("q_and_a", None, True, 300.0),
        ]
        on_air = s.segments[1].stats
        assert (on_air.end_ms, on_air.duration_s, on_air.peak_viewers) == (ms(600), 300.0, 60)
        assert [(a.activity, a.share) for a in s.activities] == [("q_and_a", 0.5), ("talk", 0.5)]
        assert (s.chat_messages, s.unique_chatters, s.revenue.total_usd) == (40, 8, 25.0)
        assert s.missing == ["no raids"]

    async def test_the_second_stream_on_the_channel_is_apart(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, extended_stream())
        s = await stream_summary(redis, settings.keys, "demo")
        assert s.stream_id == TWO and s.is_live and s.duration_s == 60.0
        # [1200, 1260 s]: newbie's message; 10 viewers for 60 s, then 12 at the clock.
        assert (s.chat_messages, s.unique_chatters, s.avg_viewers, s.peak_viewers) == (
            1,
            1,
            10.0,
            12,
        )
        # Minute 20 is whole: e(1 msg, 10 viewers, 1 chatter, 0 paid) =
        # 100 x (0.45 x (1 - e^-1) + 0.35 x (1 - e^-(0.1 / 0.15))) = 45.48.
        assert s.mean_engagement == engagement_score(1, 10, 1, 0) == 45.5
        assert (s.follows, s.revenue.total_usd, s.top_donors) == (0, 0.0, [])
        assert s.missing == ["no donations", "no bits", "no subs", "no follows", "no raids"]

    async def test_unknown_stream_and_empty_channel_are_not_found(
        self, redis: Redis, settings: AnalyticsSettings
    ) -> None:
        await publish(redis, settings, known_stream())
        unknown = await stream_summary(redis, settings.keys, "demo", "nope")
        assert (unknown.found, unknown.stream_id, unknown.is_live) == (False, "nope", False)
        assert unknown.missing == [
            "no stream_started for stream nope",
            "no activity changes",
            "no viewer counts",
            "no chat",
            "no donations",
            "no bits",
            "no subs",
            "no follows",
            "no raids",
        ]
        assert (unknown.started, unknown.ended_ms, unknown.duration_s) == (None, None, 0.0)
        assert (unknown.chat_messages, unknown.avg_viewers, unknown.revenue.total_usd) == (
            0,
            0.0,
            0.0,
        )
        assert unknown.segments == [] and unknown.viewer_series == []
        empty = await stream_summary(redis, settings.keys, "nobody")
        assert (empty.found, empty.stream_id) == (False, "")
        assert empty.missing[0] == "no stream_started on channel nobody"
        assert empty.missing[1:] == unknown.missing[1:]
        nothing = await timeline(redis, settings.keys, "nobody")
        assert (nothing.found, nothing.is_live, nothing.segments) == (False, False, [])

    async def test_identical_whatever_order_and_batches_the_events_came_in(
        self,
        redis: Redis,
        settings: AnalyticsSettings,
        make_settings: Callable[..., Any],
        key_prefix: str,
    ) -> None:
        events = extended_stream()
        in_order = sorted(events, key=lambda e: e.ts)
        await publish(redis, settings, in_order)
        other: AnalyticsSettings = make_settings(
            AnalyticsSettings,
            consumer_name="a2",
            consumer_block_ms=20,
            redis_key_prefix=f"{key_prefix}shuffled:",
        )
        await publish(redis, other, random.Random(11).sample(events, len(events)), batch=7)
        for stream_id in (STREAM, TWO):
            first = await stream_summary(redis, settings.keys, "demo", stream_id)
            second = await stream_summary(redis, other.keys, "demo", stream_id)
            assert first.found and first == second
            assert await timeline(redis, settings.keys, "demo", stream_id) == await timeline(
                redis, other.keys, "demo", stream_id
            )
