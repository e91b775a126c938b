"""Analytics figures on a real Redis: each field of metrics:{channel} from a known stream."""

from __future__ import annotations

import asyncio
import random
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from services.analytics.handler import GROUP, MetricsHandler, apply_events
from services.analytics.metrics import (
    CAS_WRITE,
    MetricsComputer,
    Windows,
    engagement_score,
    write_args,
)
from services.analytics.settings import AnalyticsSettings
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from tests.analytics.streams import known_stream


async def consume_all(redis: Redis, settings: AnalyticsSettings, expected: int) -> None:
    handler = MetricsHandler(settings.keys, settings.state_ttl_s)
    runner = PartitionedConsumer(redis, settings, GROUP, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(10):
        while runner.summary.handled < expected:
            await asyncio.sleep(0.02)
    stop.set()
    await task


def computer(redis: Redis, settings: AnalyticsSettings, zone: str = "UTC") -> MetricsComputer:
    windows = Windows(settings.chat_window_s * 1000, settings.engagement_window_s * 1000)
    return MetricsComputer(redis, settings.keys, windows, ZoneInfo(zone))


@pytest.fixture
def settings(make_settings) -> AnalyticsSettings:
    return make_settings(AnalyticsSettings, consumer_name="a1", consumer_block_ms=20)


async def test_known_stream_gives_known_figures(redis: Redis, settings) -> None:
    events = known_stream()
    shuffled = random.Random(3).sample(events, len(events))
    await Publisher(redis, settings).publish_many(shuffled)
    await consume_all(redis, settings, len(events))
    figures = await computer(redis, settings).recompute("demo")
    stored = await redis.hgetall(settings.keys.metrics("demo"))
    assert stored == figures
    assert figures["is_live"] == "1" and figures["stream_id"] == "s-known"
    assert figures["stream_started_at"] == "2026-02-27T10:00:00Z"
    assert figures["current_activity"] == "q_and_a"
    assert figures["viewer_count"] == "60"
    assert figures["now"] == "2026-02-27T10:10:00Z"
    # Window (09:00, 10:00] of event time: late messages at 541..570 s -> 30 in the last minute.
    assert figures["chat_velocity"] == "30.0"
    assert figures["unique_chatters_window"] == "6"
    # Paid in the trailing 300 s (after t=300): only the sub at 560.
    assert figures["paid_events_window"] == "1"
    assert figures["engagement_score"] == str(engagement_score(30.0, 60, 6, 1))
    # 10.00 + 5.00 (500 bits) + 7.50 (gift of 3) + 2.50 (sub)
    assert figures["revenue_today"] == "25.00" and figures["revenue_stream"] == "25.00"
    assert figures["bits_today"] == "500"
    assert figures["subs_count"] == "4"
    # Donations and bits: $15 over the 600 s the stream has run -> $90/h.
    assert figures["donations_per_hour"] == "90.00"
    assert figures["version"] == str(len(events))


async def test_revenue_today_resets_at_midnight_in_the_configured_timezone(
    redis: Redis, settings
) -> None:
    # 10:00 UTC is 05:00 in New York and 19:00 in Tokyo the same day; a day in
    # Kiritimati (UTC+14) starts at 10:00 UTC, after the donation at 10:01:40.
    await Publisher(redis, settings).publish_many(known_stream())
    await consume_all(redis, settings, len(known_stream()))
    new_york = await computer(redis, settings, "America/New_York").recompute("demo")
    kiritimati = await computer(redis, settings, "Pacific/Kiritimati").recompute("demo")
    assert new_york["revenue_today"] == "25.00"
    assert kiritimati["revenue_today"] == "25.00"
    assert kiritimati["revenue_stream"] == "25.00"


async def test_a_channel_with_no_events_has_no_figures(redis: Redis, settings) -> None:
    assert await computer(redis, settings).recompute("nobody") == {}


class TestEngagement:
    def test_silence_is_zero(self) -> None:
        assert engagement_score(0, 100, 0, 0) == 0.0

    def test_is_bounded_by_100(self) -> None:
        assert engagement_score(10_000, 10, 10, 1000) <= 100.0

    def test_grows_with_chat_per_viewer(self) -> None:
        assert engagement_score(5, 100, 5, 0) < engagement_score(20, 100, 5, 0)

    def test_same_chat_means_less_in_a_bigger_audience(self) -> None:
        assert engagement_score(20, 1000, 10, 1) < engagement_score(20, 100, 10, 1)


async def test_a_day_with_thousands_of_paid_events_is_summed_whole(redis: Redis, settings) -> None:
    from datetime import timedelta

    from shared.events import BitsEvent
    from tests.analytics.streams import START
    from tests.orchestrator.driver import apply

    cheers = [
        BitsEvent(
            channel="demo",
            source="sim",
            id=f"b{n}",
            user="u",
            bits=100,
            ts=START + timedelta(seconds=n % 3000),
        )
        for n in range(12_000)
    ]
    await apply(redis, settings.keys, cheers)
    figures = await computer(redis, settings).recompute("demo")
    assert figures["revenue_today"] == "12000.00" and figures["bits_today"] == "1200000"


async def test_an_activity_set_in_the_same_millisecond_as_the_start_is_on_air(
    redis: Redis, settings
) -> None:
    from shared.events import ActivityChangedEvent, StreamStartedEvent
    from tests.analytics.streams import START
    from tests.orchestrator.driver import apply

    c = {"channel": "demo", "source": "sim", "ts": START, "stream_id": "s"}
    # The simulator opens every stream this way; "activity" sorts before "id" in the JSON.
    await apply(
        redis,
        settings.keys,
        [ActivityChangedEvent(**c, id="a", activity="talk"), StreamStartedEvent(**c, id="s")],
    )
    figures = await computer(redis, settings).recompute("demo")
    assert (figures["is_live"], figures["current_activity"]) == ("1", "talk")


class TestFiguresFollowTheRawState:
    """The metrics hash lives as long as the raw state it derives from, and a raw state that
    expired and started again is not held back by the old figures' larger version."""

    async def test_the_figures_expire_with_the_raw_state(self, redis: Redis, settings) -> None:
        await apply_events(redis, settings.keys, known_stream())
        await computer(redis, settings).recompute("demo")
        counter_ttl = await redis.ttl(settings.keys.analytics("demo").version)
        figures_ttl = await redis.ttl(settings.keys.metrics("demo"))
        assert 0 < counter_ttl <= settings.state_ttl_s
        assert counter_ttl - 2 <= figures_ttl <= counter_ttl

    async def test_a_channel_whose_raw_state_expired_gets_its_new_figures(
        self, redis: Redis, settings
    ) -> None:
        keys = settings.keys
        await apply_events(redis, keys, known_stream())
        await computer(redis, settings).recompute("demo")
        old_version = int(await redis.hget(keys.metrics("demo"), "version"))
        await redis.delete(*keys.analytics("demo").all())  # what STATE_TTL_S does
        await apply_events(redis, keys, known_stream()[:3])

        figures = await computer(redis, settings).recompute("demo")

        assert int(figures["version"]) == 3 < old_version
        assert await redis.hgetall(keys.metrics("demo")) == figures

    async def test_an_older_snapshot_never_overwrites_a_newer_ones_figures(
        self, redis: Redis, settings
    ) -> None:
        keys = settings.keys
        await apply_events(redis, keys, known_stream())
        await computer(redis, settings).recompute("demo")
        newer = await redis.hgetall(keys.metrics("demo"))
        older = int(newer["version"]) - 1
        written = await redis.register_script(CAS_WRITE)(
            keys=[keys.metrics("demo"), keys.analytics("demo").version],
            args=write_args(newer | {"viewer_count": "stale"}, older),
        )
        assert written == 0
        assert await redis.hgetall(keys.metrics("demo")) == newer
