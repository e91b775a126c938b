"""The reclaim round: one round trip when idle, claims from every stream at once with
each owner's fence bumped, dead consumers forgotten, rounds of partitions spread out.

The scenarios take any client, so ``tests/cluster`` runs them on a real Redis Cluster
(where the round's pipeline goes through redis-py's ``ClusterPipeline``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Connection, Redis

from shared.consumer import ConsumerRunner
from shared.events import ChatEvent, EventBase, SubEvent
from shared.keys import Stream
from shared.partitions import Partitions
from shared.publisher import Publisher
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
GROUP = "reclaimgroup"
CHANNEL = "demo"


class CountingConnection(Connection):
    """A connection that counts what it sends: one write per command, or per pipeline."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


def events(chats: int, subs: int) -> list[EventBase]:
    made: list[EventBase] = [
        ChatEvent(id=f"c{n}", channel=CHANNEL, ts=TS, source="sim", user="u", text=str(n))
        for n in range(chats)
    ]
    made += [
        SubEvent(
            id=f"s{n}",
            channel=CHANNEL,
            ts=TS,
            source="sim",
            type="sub",
            user="u",
            tier="1000",
            amount=Decimal("4.99"),
        )
        for n in range(subs)
    ]
    return made


def counts_key_of(settings: ConsumerSettings) -> str:
    """The test handler's hash, in the channel's partition (its slot, on a cluster)."""
    return f"{settings.redis_key_prefix}{settings.keys.tag_of(CHANNEL)}:counts"


def runner_for(redis: Redis, settings: ConsumerSettings, counts_key: str) -> ConsumerRunner:
    partition = settings.partitioning.of(CHANNEL)
    return ConsumerRunner(redis, settings, GROUP, CountingHandler(counts_key), partition=partition)


async def left_pending_by(
    redis: Redis, settings: ConsumerSettings, consumer: str, per_stream: dict[Stream, int]
) -> None:
    """``consumer`` reads entries of each stream and dies with them pending."""
    for kind, count in per_stream.items():
        stream = settings.keys.channel_stream(kind, CHANNEL)
        await redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)


async def a_round_claims_from_two_streams_at_once(redis: Redis, settings: ConsumerSettings) -> None:
    """A dead consumer's entries on two streams are all taken over and handled in one
    round; its fence is bumped once, before the claim."""
    counts_key = counts_key_of(settings)
    await Publisher(redis, settings).publish_many(events(chats=5, subs=3))
    runner = runner_for(redis, settings, counts_key)
    await runner.ensure_groups()
    await left_pending_by(redis, settings, "dead-one", {Stream.CHAT: 4, Stream.SUB: 2})
    await asyncio.sleep(0.1)  # past claim_min_idle_ms

    claimed = await runner.reclaim()

    fence = settings.keys.consumer_fence(GROUP, "dead-one", runner.partition)
    handled = await redis.hgetall(counts_key)  # type: ignore[misc]
    assert claimed == 6 and runner.summary.claimed == 6
    assert sorted(handled) == sorted(
        [f"chat:c{n}" for n in range(4)] + [f"sub:s{n}" for n in range(2)]
    )
    assert set(handled.values()) == {"1"}
    assert await redis.get(fence) == "1"
    for kind in (Stream.CHAT, Stream.SUB):
        stream = settings.keys.channel_stream(kind, CHANNEL)
        assert (await redis.xpending(stream, GROUP))["pending"] == 0


async def a_dead_consumer_is_forgotten_in_the_round_that_takes_its_last_entries(
    redis: Redis, settings: ConsumerSettings
) -> None:
    """Its entries taken over, the long idle consumer has nothing pending: the same
    round removes it from the group and deletes its fence; a consumer still holding
    entries stays."""
    counts_key = counts_key_of(settings)
    await Publisher(redis, settings).publish_many(events(chats=3, subs=0))
    runner = runner_for(redis, settings.model_copy(update={"consumer_batch_size": 2}), counts_key)
    await runner.ensure_groups()
    await left_pending_by(redis, settings, "gone", {Stream.CHAT: 2})
    await left_pending_by(redis, settings, "busy", {Stream.CHAT: 1})
    await asyncio.sleep(0.1)  # past claim_min_idle_ms and forget_idle_ms

    claimed = await runner.reclaim()  # takes 2 of the 3 (batch size): gone's, the oldest

    stream = settings.keys.channel_stream(Stream.CHAT, CHANNEL)
    names = {info["name"] for info in await redis.xinfo_consumers(stream, GROUP)}
    fence = settings.keys.consumer_fence(GROUP, "gone", runner.partition)
    assert claimed == 2
    assert names == {settings.consumer_name, "busy"}
    assert not await redis.exists(fence)


def reclaim_settings(make_settings: Any, **overrides: Any) -> ConsumerSettings:
    values: dict[str, Any] = {
        "consumer_name": "alive",
        "consumer_block_ms": 50,
        "consumer_claim_min_idle_ms": 50,
        "consumer_forget_idle_ms": 50,
    }
    values.update(overrides)
    settings: ConsumerSettings = make_settings(ConsumerSettings, **values)
    return settings


async def test_a_round_claims_from_two_streams_at_once(redis: Redis, make_settings: Any) -> None:
    settings = reclaim_settings(make_settings, consumer_forget_idle_ms=3_600_000)
    await a_round_claims_from_two_streams_at_once(redis, settings)


async def test_a_dead_consumer_is_forgotten_in_the_round_that_takes_its_last_entries(
    redis: Redis, make_settings: Any
) -> None:
    await a_dead_consumer_is_forgotten_in_the_round_that_takes_its_last_entries(
        redis, reclaim_settings(make_settings)
    )


async def test_an_idle_round_over_five_streams_is_one_round_trip(
    redis_url: str, redis: Redis, make_settings: Any
) -> None:
    settings = reclaim_settings(make_settings)
    await Publisher(redis, settings).publish_many(events(chats=3, subs=3))
    counting = Redis.from_url(redis_url, decode_responses=True, connection_class=CountingConnection)
    try:
        runner = runner_for(counting, settings, "unused")
        await runner.ensure_groups()
        await runner.reclaim()  # the connection is open from here on
        before = CountingConnection.sends
        claimed = await runner.reclaim()
        sends = CountingConnection.sends - before
    finally:
        await counting.aclose()
    assert len(runner.streams) == 5
    assert claimed == 0 and sends == 1


async def test_forgetting_costs_one_more_round_trip_and_nothing_else(
    redis_url: str, redis: Redis, make_settings: Any
) -> None:
    settings = reclaim_settings(make_settings)
    await Publisher(redis, settings).publish_many(events(chats=2, subs=2))
    counting = Redis.from_url(redis_url, decode_responses=True, connection_class=CountingConnection)
    try:
        runner = runner_for(counting, settings, "unused")
        await runner.ensure_groups()
        await runner.reclaim()
        for kind in (Stream.CHAT, Stream.SUB):  # a consumer that read and acked everything
            stream = settings.keys.channel_stream(kind, CHANNEL)
            for entry_id, _ in (await redis.xreadgroup(GROUP, "done", {stream: ">"}))[0][1]:
                await redis.xack(stream, GROUP, entry_id)
        await asyncio.sleep(0.1)  # past forget_idle_ms
        before = CountingConnection.sends
        await runner.reclaim()
        sends = CountingConnection.sends - before
    finally:
        await counting.aclose()
    for kind in (Stream.CHAT, Stream.SUB):
        stream = settings.keys.channel_stream(kind, CHANNEL)
        assert "done" not in {info["name"] for info in await redis.xinfo_consumers(stream, GROUP)}
    assert sends == 2


def test_the_partitions_phases_are_distinct_and_spread_over_the_cycle() -> None:
    phases = [Partitions(64).phase(partition) for partition in range(64)]

    assert len(set(phases)) == 64
    assert all(0 <= phase < 1 for phase in phases)
    assert max(phases) - min(phases) > 0.98
