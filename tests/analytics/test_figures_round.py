"""The figures round on a real Redis: it recomputes what moved, leaves the rest, stays exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from services.analytics.figures_round import FiguresRound
from services.analytics.handler import apply_events
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import (
    ChatEvent,
    DonationEvent,
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
)
from shared.keys import Keys
from tests.analytics.streams import START, known_stream


@pytest.fixture
def keys(make_settings) -> Keys:
    return make_settings(AnalyticsSettings).keys


def computer(redis: Redis, keys: Keys) -> MetricsComputer:
    return MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC"))


def replica(redis: Redis, keys: Keys) -> FiguresRound:
    """The figures round of one analytics replica (its own memory of what it computed)."""
    return FiguresRound(redis, keys, computer(redis, keys))


def chat(channel: str, n: int, at: datetime) -> ChatEvent:
    return ChatEvent(
        channel=channel, source="sim", id=f"{channel}-c{n}", user="u", text="hi", ts=at
    )


async def version_computed(redis: Redis, keys: Keys, channel: str) -> str | None:
    return await redis.hget(keys.metrics(channel), "version")  # type: ignore[no-any-return]


async def test_a_round_recomputes_a_channel_whose_events_moved_on_and_leaves_a_still_one(
    redis: Redis, keys: Keys
) -> None:
    await apply_events(redis, keys, known_stream("busy") + known_stream("still"))
    figures = replica(redis, keys)
    first = await figures.run(["busy", "still"])
    assert (first.recomputed, first.unchanged) == (2, 0)
    # A recompute would overwrite this: only a skipped channel keeps it.
    await redis.hset(keys.metrics("still"), "viewer_count", "left alone")
    await apply_events(redis, keys, [chat("busy", 1, START + timedelta(minutes=11))])

    second = await figures.run(["busy", "still"])

    assert (second.recomputed, second.unchanged) == (1, 1)
    assert await version_computed(redis, keys, "busy") == str(len(known_stream()) + 1)
    assert await redis.hget(keys.metrics("still"), "viewer_count") == "left alone"


async def test_a_channel_without_events_is_not_recomputed(redis: Redis, keys: Keys) -> None:
    outcome = await replica(redis, keys).run(["nobody"])
    assert (outcome.recomputed, outcome.unchanged) == (0, 1)
    assert await redis.exists(keys.metrics("nobody")) == 0


async def test_a_clock_moved_without_an_event_is_recomputed(redis: Redis, keys: Keys) -> None:
    await apply_events(redis, keys, known_stream())
    figures = replica(redis, keys)
    await figures.run(["demo"])
    later = START + timedelta(minutes=20)
    await redis.zadd(keys.analytics("demo").clock, {"now": int(later.timestamp() * 1000)})

    outcome = await figures.run(["demo"])

    assert outcome.recomputed == 1
    assert await redis.hget(keys.metrics("demo"), "now") == "2026-02-27T10:20:00Z"
    assert await redis.hget(keys.metrics("demo"), "chat_velocity") == "0.0"


async def test_a_replica_taking_over_a_partition_recomputes_its_channels(
    redis: Redis, keys: Keys
) -> None:
    await apply_events(redis, keys, known_stream())
    first, second = replica(redis, keys), replica(redis, keys)
    await first.run(["demo"])
    # The partition moves to the second replica, which never computed the channel.
    await apply_events(redis, keys, [chat("demo", 1, START + timedelta(minutes=11))])
    taken = await second.run(["demo"])
    assert taken.recomputed == 1
    assert await version_computed(redis, keys, "demo") == str(len(known_stream()) + 1)
    # It moves back while events arrive that the second never got to compute.
    await apply_events(redis, keys, [chat("demo", 2, START + timedelta(minutes=12))])
    back = await first.run(["demo"])
    assert back.recomputed == 1
    assert await version_computed(redis, keys, "demo") == str(len(known_stream()) + 2)


def across_a_stream_and_a_day() -> list[EventBase]:
    """A stream ending before midnight UTC, money after its end, the next one after midnight."""
    c = {"channel": "demo", "source": "sim"}
    night = datetime(2026, 2, 27, 23, 50, tzinfo=UTC)
    minute = timedelta(minutes=1)
    return [
        StreamStartedEvent(**c, id="start1", ts=night, stream_id="s1"),
        DonationEvent(**c, id="d1", ts=night + minute, user="a", amount="5.00"),
        chat("demo", 1, night + 2 * minute),
        StreamEndedEvent(**c, id="end1", ts=night + 5 * minute, stream_id="s1"),
        DonationEvent(**c, id="d2", ts=night + 8 * minute, user="b", amount="2.00"),
        DonationEvent(**c, id="d3", ts=night + 11 * minute, user="c", amount="3.00"),
        StreamStartedEvent(**c, id="start2", ts=night + 15 * minute, stream_id="s2"),
        DonationEvent(**c, id="d4", ts=night + 16 * minute, user="d", amount="4.00"),
        StreamEndedEvent(**c, id="end2", ts=night + 20 * minute, stream_id="s2"),
        chat("demo", 2, night + 21 * minute),
    ]


async def test_figures_from_a_kept_plan_equal_a_fresh_computers_across_a_stream_and_a_day(
    redis: Redis, keys: Keys
) -> None:
    kept = computer(redis, keys)
    for event in across_a_stream_and_a_day():
        await apply_events(redis, keys, [event])
        from_kept = await kept.recompute("demo")
        from_fresh = await computer(redis, keys).recompute("demo")
        assert from_kept == from_fresh, event.id
    assert from_kept["revenue_today"] == "7.00"  # d3 + d4: d2 before midnight is yesterday's
    assert from_kept["revenue_stream"] == "4.00" and from_kept["stream_id"] == "s2"


async def test_a_batch_with_kept_plans_writes_a_fresh_computers_figures_across_a_stream_and_a_day(
    redis: Redis, keys: Keys
) -> None:
    kept = computer(redis, keys)
    for event in across_a_stream_and_a_day():
        await apply_events(redis, keys, [event])
        assert await kept.recompute_batch(["demo"]) == []
        from_batch = await redis.hgetall(keys.metrics("demo"))
        assert from_batch == await computer(redis, keys).recompute("demo"), event.id
    assert from_batch["revenue_today"] == "7.00"


async def test_a_round_after_redis_forgot_its_scripts_still_writes_the_figures(
    redis: Redis, keys: Keys
) -> None:
    await apply_events(redis, keys, known_stream())
    figures = replica(redis, keys)
    await figures.run(["demo"])
    await apply_events(redis, keys, [chat("demo", 1, START + timedelta(minutes=11))])
    await redis.script_flush()  # as a restarted or newly promoted server

    outcome = await figures.run(["demo"])

    assert (outcome.recomputed, outcome.failed) == (1, 0)
    assert await version_computed(redis, keys, "demo") == str(len(known_stream()) + 1)
