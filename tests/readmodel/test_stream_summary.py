"""Stream summaries on a real Redis, from streams published and consumed by the real runner.

Every figure below is worked out by hand from the events, in the comments beside it.
Times are seconds after ``START`` (2026-02-27T10:00:00Z) unless they say otherwise.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)
from shared.publisher import Publisher
from shared.readmodel.donations import recent_donations
from shared.readmodel.figures import engagement_score, segment_stats
from shared.readmodel.lifecycle import timeline
from shared.readmodel.summary import stream_summary
from tests.analytics.streams import START, STREAM, at, known_stream
from tests.analytics.test_metrics import consume_all

START_MS = round(START.timestamp() * 1000)
TWO = "s-two"


def ms(seconds: float) -> int:
    """Epoch ms of ``seconds`` after START."""
    return START_MS + round(seconds * 1000)


# Long by design: the event list is the fixture; its docstring is the timeline it encodes.
def extended_stream(channel: str = "demo") -> list[EventBase]:
    """The known stream, then gaming, talk again, an end at 900 s, and a second stream.

    Lifecycle of s-known: preshow at -30 (before the start: outside), start 0,
    talk 0, q_and_a 300, gaming 600, talk 780, end 900, afterparty 920 (after the
    end: outside). Then s-two starts at 1200 with talk and is still live; the
    channel clock ends at 1260 (the last viewer sample).
    """
    c: dict[str, Any] = {"channel": channel, "source": "sim"}
    change = {**c, "stream_id": STREAM}
    events: list[EventBase] = [
        *known_stream(channel),
        ViewerCountEvent(**c, id="x-v0", ts=at(-60), count=7),
        ActivityChangedEvent(**change, id="x-a0", ts=at(-30), activity="preshow"),
        ActivityChangedEvent(
            **change,
            id="x-a3",
            ts=at(600),
            activity="gaming",
            previous="q_and_a",
            reason="energy dip",
            decided_by="bandit",
        ),
        FollowEvent(**change, id="x-f2", ts=at(640), user="frank"),
        RaidEvent(**change, id="x-r1", ts=at(650), user="raider", count=25),
        ViewerCountEvent(**c, id="x-v4", ts=at(660), count=90),
        DonationEvent(**c, id="x-d2", ts=at(700), user="zed", amount="20.00", message="gg"),
        BitsEvent(**c, id="x-b2", ts=at(710), user="bob", bits=100),
        ActivityChangedEvent(
            **change,
            id="x-a4",
            ts=at(780),
            activity="talk",
            previous="gaming",
            reason="wind down",
            decided_by="bandit",
        ),
        SubEvent(
            **c,
            id="x-s2",
            ts=at(790),
            type="resub",
            user="erin",
            tier="1000",
            months=3,
            amount="2.50",
        ),
        StreamEndedEvent(**change, id="x-end", ts=at(900)),
        # After the end of s-known and before s-two: in neither.
        ChatEvent(**c, id="x-ghost", ts=at(905), user="ghost", text="bye"),
        DonationEvent(**c, id="x-d3", ts=at(910), user="ghost", amount="50.00"),
        ActivityChangedEvent(**change, id="x-a5", ts=at(920), activity="afterparty"),
        ViewerCountEvent(**c, id="x-v5", ts=at(930), count=5),
        FollowEvent(**change, id="x-f3", ts=at(950), user="late"),
        # s-two, live.
        StreamStartedEvent(**c, id="y-start", ts=at(1200), stream_id=TWO),
        ActivityChangedEvent(
            **c,
            id="y-a1",
            ts=at(1200),
            stream_id=TWO,
            activity="talk",
            reason="stream start",
            decided_by="sim",
        ),
        ViewerCountEvent(**c, id="y-v1", ts=at(1200), count=10),
        ChatEvent(**c, id="y-c1", ts=at(1210), user="newbie", text="first"),
        ViewerCountEvent(**c, id="y-v2", ts=at(1260), count=12),
    ]
    # gaming: 12 messages at 620..631 s, user0 and gamer alternately (6 each).
    events += [
        ChatEvent(
            **c, id=f"x-g{n}", ts=at(620 + n), user="user0" if n % 2 == 0 else "gamer", text="gg"
        )
        for n in range(12)
    ]
    # second talk: 4 messages at 800..803 s from late_talker.
    events += [
        ChatEvent(**c, id=f"x-t{n}", ts=at(800 + n), user="late_talker", text="so")
        for n in range(4)
    ]
    return events


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> AnalyticsSettings:
    settings: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20
    )
    return settings


async def publish(
    redis: Redis, settings: AnalyticsSettings, events: list[EventBase], batch: int = 1000
) -> None:
    """Publish ``events`` in batches of ``batch``, in the order given, and consume them all."""
    publisher = Publisher(redis, settings)
    for first in range(0, len(events), batch):
        await publisher.publish_many(events[first : first + batch])
    await consume_all(redis, settings, len(events))


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


async def publish_stream_around(
    redis: Redis, settings: AnalyticsSettings, channel: str, seconds: int
) -> None:
    """A start at 0 and an end at ``seconds`` on ``channel``."""
    c: dict[str, Any] = {"channel": channel, "source": "sim", "stream_id": "busy-1"}
    events: list[EventBase] = [
        StreamStartedEvent(**c, id="busy-start", ts=at(0)),
        StreamEndedEvent(**c, id="busy-end", ts=at(seconds)),
    ]
    await Publisher(redis, settings).publish_many(events)
    await consume_all(redis, settings, len(events))


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
