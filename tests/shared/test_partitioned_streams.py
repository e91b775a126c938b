"""Partitioned streams: each channel's events on its partition, one runner per partition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redis.asyncio import Redis

from shared.consumer import ConsumerRunner
from shared.events import ChatEvent, to_fields
from shared.keys import Keys, Stream
from shared.partitioned_consumer import PartitionedConsumer
from shared.partitions import Partitions
from shared.publisher import Publisher
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
GROUP = "partgroup"
CHANNELS = ["demo", "second", "third"]  # partitions 0, 1 and 4 of 8


def chat(n: int, channel: str) -> ChatEvent:
    return ChatEvent(id=f"{channel}-{n}", channel=channel, ts=TS, source="sim", user="u", text="x")


def settings_for(make_settings, **overrides) -> ConsumerSettings:
    values = {
        "consumer_block_ms": 50,
        "consumer_reclaim_interval_s": 0.05,
        "partitions": 8,
        "channels": CHANNELS,
    }
    return make_settings(ConsumerSettings, **values | overrides)


class TestKeys:
    def test_a_stream_key_names_its_partition_and_kind_and_parses_back(self) -> None:
        keys = Keys("pre:", Partitions(8))
        key = keys.channel_stream(Stream.CHAT, "third")
        assert key == "pre:events:{p04}:chat"
        assert keys.kind_of(key) is Stream.CHAT and keys.partition_of_stream(key) == 4

    def test_every_key_of_a_channel_carries_its_partition_tag(self) -> None:
        keys = Keys("", Partitions(64))
        tag = keys.tag_of("demo")
        assert tag == "{p32}"
        names = [
            keys.metrics("demo"),
            keys.bandit("demo"),
            keys.bandit_applied("demo", "t"),
            keys.decisions("demo"),
            keys.orchestrator_on_air("demo"),
            keys.orchestrator_lease("demo"),
            keys.retro("demo", "s1"),
            keys.retro_index("demo"),
            keys.dedupe("sim", "c1", "demo"),
            *keys.analytics("demo").all(),
        ]
        assert all(name.split(":")[1] == tag for name in names), names

    def test_a_key_that_is_not_a_partition_stream_is_refused(self) -> None:
        keys = Keys("pre:", Partitions(8))
        for bad in (
            "pre:events:chat",
            "pre:events:{x1}:chat",
            "pre:metrics:{p01}:demo",
            "events:{p01}:chat",  # without the deployment's prefix
            "pre:events:{p08}:chat",  # past PARTITIONS
            "pre:events:{p1}:chat",  # another spelling of partition 1's tag
            "pre:events:{p01}:gossip",
        ):
            try:
                keys.partition_of_stream(bad)
            except ValueError:
                continue
            raise AssertionError(f"{bad} was taken for a stream key")


class TestPublishing:
    async def test_each_channel_lands_on_its_own_partition_in_order(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings)
        events = [chat(n, channel) for n in range(30) for channel in CHANNELS]
        result = await Publisher(redis, settings, batch_size=7).publish_many(events)
        assert result.published == len(events)
        for channel in CHANNELS:
            stored = await redis.xrange(settings.keys.channel_stream(Stream.CHAT, channel))
            assert [f["id"] for _, f in stored] == [f"{channel}-{n}" for n in range(30)]

    async def test_a_duplicate_is_dropped_whatever_else_its_batch_holds(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings)
        publisher = Publisher(redis, settings)
        await publisher.publish_many([chat(1, "demo")])
        result = await publisher.publish_many([chat(1, "demo"), chat(1, "second")])
        assert result.published == 1 and [e.id for e in result.duplicates] == ["demo-1"]


class TestConsuming:
    async def test_an_entry_written_on_another_channels_partition_is_dead_lettered(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1")
        keys = settings.keys
        wrong = keys.channel_stream(Stream.CHAT, "demo")
        await redis.xadd(wrong, to_fields(chat(1, "second")))  # type: ignore[arg-type]
        await Publisher(redis, settings).publish_many([chat(2, "demo")])
        counts_key = f"{settings.redis_key_prefix}counts"
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler(counts_key),
            partition=settings.partitioning.of("demo"),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        async with asyncio.timeout(10):
            while runner.summary.handled + runner.summary.dead_lettered < 2:
                await asyncio.sleep(0.02)
        stop.set()
        await task
        assert set(await redis.hkeys(counts_key)) == {"chat:demo-2"}
        [(_, letter)] = await redis.xrange(keys.channel_dead("demo"))
        assert "belongs to partition 1, not 0" in letter["reason"]
        assert letter["stream"] == wrong
        assert (await redis.xpending(wrong, GROUP))["pending"] == 0

    async def test_one_runner_per_wanted_partition_follows_the_wanted_set(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1")
        counts_key = f"{settings.redis_key_prefix}counts"
        wanted = {0}
        consumer = PartitionedConsumer(
            redis, settings, GROUP, CountingHandler(counts_key), partitions=lambda: set(wanted)
        )
        await Publisher(redis, settings).publish_many(
            [chat(n, c) for n in range(5) for c in CHANNELS]
        )
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            async with asyncio.timeout(10):
                while consumer.summary.handled < 5:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            assert consumer.partitions == [0]
            assert consumer.summary.handled == 5  # only demo's partition is read
            wanted.clear()
            wanted.update({1, 4})
            async with asyncio.timeout(10):
                while consumer.summary.handled < 15:
                    await asyncio.sleep(0.02)
            assert consumer.partitions == [1, 4]
        finally:
            stop.set()
            await task
        assert len(await redis.hkeys(counts_key)) == 15
        assert set((await redis.hgetall(counts_key)).values()) == {"1"}
