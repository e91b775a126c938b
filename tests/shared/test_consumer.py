"""The consumer-group runner: exactly-once effects, dead letters, takeover, fencing, failures."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from shared.consumer import ConsumerGroupMissing, ConsumerRunner
from shared.events import ChatEvent, ViewerCountEvent
from shared.keys import Stream
from shared.publisher import Publisher
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
GROUP = "testgroup"


def chats(count: int, start: int = 0) -> list[ChatEvent]:
    return [
        ChatEvent(id=f"c{n}", channel="demo", ts=TS, source="sim", user="u", text=str(n))
        for n in range(start, start + count)
    ]


def settings_for(make_settings, **overrides) -> ConsumerSettings:
    values = {"consumer_block_ms": 50, "consumer_reclaim_interval_s": 0.05}
    values.update(overrides)
    return make_settings(ConsumerSettings, **values)


async def drain(runner: ConsumerRunner, *, until, timeout_s: float = 10.0) -> None:
    """Run ``runner`` until ``until()`` is true, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            while not await until():
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def counts(redis: Redis, key: str) -> dict[str, int]:
    return {field: int(value) for field, value in (await redis.hgetall(key)).items()}


class TestDelivery:
    async def test_entries_published_before_the_group_existed_are_all_handled_once(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1")
        await Publisher(redis, settings).publish_many(chats(1200))
        key = f"{settings.redis_key_prefix}counts"
        runner = ConsumerRunner(
            redis, settings, GROUP, CountingHandler(key), partition=settings.partitioning.of("demo")
        )

        async def all_acked() -> bool:
            return runner.summary.handled >= 1200

        await drain(runner, until=all_acked)
        seen = await counts(redis, key)
        assert len(seen) == 1200 and set(seen.values()) == {1}
        pending = await redis.xpending(settings.keys.channel_stream("chat", "demo"), GROUP)
        assert pending["pending"] == 0

    async def test_reads_several_streams_in_one_group(self, redis: Redis, make_settings) -> None:
        settings = settings_for(make_settings, consumer_name="c1")
        viewers = ViewerCountEvent(id="v1", channel="demo", ts=TS, source="sim", count=7)
        await Publisher(redis, settings).publish_many([*chats(3), viewers])
        key = f"{settings.redis_key_prefix}counts"
        runner = ConsumerRunner(
            redis, settings, GROUP, CountingHandler(key), partition=settings.partitioning.of("demo")
        )

        async def four() -> bool:
            return runner.summary.handled >= 4

        await drain(runner, until=four)
        assert set(await counts(redis, key)) == {"chat:c0", "chat:c1", "chat:c2", "viewer_count:v1"}

    async def test_own_pending_entries_are_handled_again_after_a_restart(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="stable")
        await Publisher(redis, settings).publish_many(chats(5))
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler("unused"),
            partition=settings.partitioning.of("demo"),
        )
        await runner.ensure_groups()
        # The "previous life" of this consumer read everything and died before acking.
        await redis.xreadgroup(GROUP, "stable", {settings.keys.channel_stream("chat", "demo"): ">"})
        key = f"{settings.redis_key_prefix}counts"
        runner = ConsumerRunner(
            redis, settings, GROUP, CountingHandler(key), partition=settings.partitioning.of("demo")
        )

        async def five() -> bool:
            return runner.summary.handled >= 5

        await drain(runner, until=five)
        assert set((await counts(redis, key)).values()) == {1}
        assert len(await counts(redis, key)) == 5


class TestBadEntries:
    async def test_contract_breaking_entries_go_to_dead_letters_and_the_rest_is_handled(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1")
        stream = settings.keys.channel_stream("chat", "demo")
        await Publisher(redis, settings).publish_many(chats(2))
        await redis.xadd(stream, {"type": "chat", "id": "x", "text": "no channel"})
        await redis.xadd(
            stream,
            {
                "type": "viewer_count",
                "v": "1",
                "id": "w",
                "channel": "demo",
                "ts": "2026-02-27T10:30:00Z",
                "source": "sim",
                "count": "3",
            },
        )
        await redis.xadd(
            stream,
            {
                "type": "chat",
                "v": "1",
                "id": "big",
                "channel": "demo",
                "ts": "2026-02-27T10:30:00Z",
                "source": "sim",
                "user": "u",
                "text": "x" * 10_000,
            },
        )
        key = f"{settings.redis_key_prefix}counts"
        runner = ConsumerRunner(
            redis, settings, GROUP, CountingHandler(key), partition=settings.partitioning.of("demo")
        )

        async def done() -> bool:
            return runner.summary.handled + runner.summary.dead_lettered >= 5

        await drain(runner, until=done)
        assert set(await counts(redis, key)) == {"chat:c0", "chat:c1"}
        dead = [fields for _, fields in await redis.xrange(settings.keys.channel_dead("demo"))]
        assert len(dead) == 3
        reasons = " | ".join(letter["reason"] for letter in dead)
        assert "channel: Field required" in reasons
        assert "'viewer_count' does not belong on" in reasons
        assert "text: String should have at most 500 characters" in reasons
        assert all(letter["stream"] == stream and letter["group"] == GROUP for letter in dead)
        assert json.loads(dead[0]["raw"])["text"] == "no channel"
        assert (await redis.xpending(stream, GROUP))["pending"] == 0

    async def test_an_entry_that_keeps_failing_is_dead_lettered_after_max_attempts(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1", consumer_max_attempts=3)
        await Publisher(redis, settings).publish_many(chats(4))
        key = f"{settings.redis_key_prefix}counts"
        handler = CountingHandler(key, poison_id="c2")
        runner = ConsumerRunner(
            redis, settings, GROUP, handler, partition=settings.partitioning.of("demo")
        )

        async def done() -> bool:
            return runner.summary.dead_lettered >= 1

        await drain(runner, until=done)
        assert set(await counts(redis, key)) == {"chat:c0", "chat:c1", "chat:c3"}
        assert set((await counts(redis, key)).values()) == {1}
        [(_, letter)] = await redis.xrange(settings.keys.channel_dead("demo"))
        assert letter["entry_id"] and "handler failed 3 times" in letter["reason"]
        assert "cannot handle c2" in letter["reason"]
        assert (await redis.xpending(settings.keys.channel_stream("chat", "demo"), GROUP))[
            "pending"
        ] == 0
        assert (
            await redis.hlen(
                settings.keys.consumer_failures(GROUP, settings.keys.partitions.of("demo"))
            )
            == 0
        )


class TestTakeover:
    async def test_entries_left_pending_by_a_dead_consumer_are_taken_over(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(
            make_settings, consumer_name="alive", consumer_claim_min_idle_ms=100
        )
        await Publisher(redis, settings).publish_many(chats(10))
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler("unused"),
            partition=settings.partitioning.of("demo"),
        )
        await runner.ensure_groups()
        await redis.xreadgroup(
            GROUP, "dead-one", {settings.keys.channel_stream("chat", "demo"): ">"}, count=6
        )
        key = f"{settings.redis_key_prefix}counts"
        runner = ConsumerRunner(
            redis, settings, GROUP, CountingHandler(key), partition=settings.partitioning.of("demo")
        )

        async def ten() -> bool:
            return len(await counts(redis, key)) >= 10

        await drain(runner, until=ten)
        assert set((await counts(redis, key)).values()) == {1}
        assert runner.summary.claimed == 6
        assert (await redis.xpending(settings.keys.channel_stream("chat", "demo"), GROUP))[
            "pending"
        ] == 0

    async def test_a_slow_owner_cannot_commit_a_batch_taken_over_meanwhile(
        self, redis: Redis, make_settings
    ) -> None:
        slow_settings = settings_for(make_settings, consumer_name="slow")
        fast_settings = settings_for(
            make_settings, consumer_name="fast", consumer_claim_min_idle_ms=100
        )
        await Publisher(redis, slow_settings).publish_many(chats(5))
        key = f"{slow_settings.redis_key_prefix}counts"
        release = asyncio.Event()
        slow_handler = CountingHandler(key, stall=release)
        slow = ConsumerRunner(
            redis,
            slow_settings,
            GROUP,
            slow_handler,
            partition=slow_settings.partitioning.of("demo"),
        )
        slow_stop = asyncio.Event()
        slow_task = asyncio.create_task(slow.run(slow_stop))
        while slow_handler.calls == 0:
            await asyncio.sleep(0.01)
        fast = ConsumerRunner(
            redis,
            fast_settings,
            GROUP,
            CountingHandler(key),
            partition=fast_settings.partitioning.of("demo"),
        )

        async def five() -> bool:
            return len(await counts(redis, key)) >= 5

        await drain(fast, until=five)
        release.set()
        await asyncio.sleep(0.3)
        slow_stop.set()
        await asyncio.wait_for(slow_task, timeout=5)
        assert set((await counts(redis, key)).values()) == {1}
        assert slow.summary.fenced_batches >= 1 and slow.summary.handled == 0


class TestGroupLoss:
    async def test_a_deleted_group_stops_the_runner_loudly(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1")
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler("x"),
            [Stream.CHAT],
            partition=settings.partitioning.of("demo"),
        )
        task = asyncio.create_task(runner.run(asyncio.Event()))
        while not await redis.exists(settings.keys.channel_stream("chat", "demo")):
            await asyncio.sleep(0.01)
        await redis.xgroup_destroy(settings.keys.channel_stream("chat", "demo"), GROUP)
        with pytest.raises(ConsumerGroupMissing, match="restart the service"):
            await asyncio.wait_for(task, timeout=5)

    async def test_a_group_deleted_before_the_reclaim_pass_stops_the_runner_loudly(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="c1")  # reclaim every 0.05 s
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler("x"),
            [Stream.CHAT],
            partition=settings.partitioning.of("demo"),
        )
        await runner.ensure_groups()
        await runner.step()
        await redis.xgroup_destroy(settings.keys.channel_stream("chat", "demo"), GROUP)
        await asyncio.sleep(0.1)  # the next step starts with a reclaim pass
        with pytest.raises(ConsumerGroupMissing, match="restart the service"):
            await runner.step()

    async def test_creating_groups_twice_is_harmless(self, redis: Redis, make_settings) -> None:
        settings = settings_for(make_settings)
        runner = ConsumerRunner(
            redis, settings, GROUP, CountingHandler("x"), partition=settings.partitioning.of("demo")
        )
        await runner.ensure_groups()
        await runner.ensure_groups()
        groups = await redis.xinfo_groups(settings.keys.channel_stream("chat", "demo"))
        assert [group["name"] for group in groups] == [GROUP]


class TestHousekeeping:
    async def test_consumers_long_idle_with_nothing_pending_are_forgotten(
        self, redis: Redis, make_settings
    ) -> None:
        settings = settings_for(make_settings, consumer_name="me", consumer_forget_idle_ms=50)
        stream = settings.keys.channel_stream("chat", "demo")
        await Publisher(redis, settings).publish_many(chats(2))
        runner = ConsumerRunner(
            redis,
            settings,
            GROUP,
            CountingHandler("x"),
            [Stream.CHAT],
            partition=settings.partitioning.of("demo"),
        )
        await runner.ensure_groups()
        await redis.xreadgroup(GROUP, "gone-empty", {stream: ">"}, count=1)
        await redis.xack(stream, GROUP, *[e for e, _ in await redis.xrange(stream, count=1)])
        await redis.xreadgroup(GROUP, "gone-busy", {stream: ">"}, count=1)
        await asyncio.sleep(0.1)
        await runner.reclaim()
        names = {info["name"] for info in await redis.xinfo_consumers(stream, GROUP)}
        assert names == {"gone-busy"}
