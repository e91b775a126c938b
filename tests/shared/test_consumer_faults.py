"""The runner under real faults: SIGKILL at random instants, a Redis server restart, a fence
that keeps moving."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime

from redis.asyncio import Redis

from shared.consumer import ConsumerRunner
from shared.events import ChatEvent
from shared.keys import Stream
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)
EVENTS = 20_000


def chats(count: int, start: int = 0) -> list[ChatEvent]:
    return [
        ChatEvent(id=f"c{n}", channel="demo", ts=TS, source="sim", user="u", text=str(n))
        for n in range(start, start + count)
    ]


def spawn(url: str, prefix: str, name: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.shared.crash_consumer", url, prefix, name]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_sigkill_at_random_instants_neither_loses_nor_doubles_an_event(
    redis_url: str, redis: Redis, key_prefix: str, make_settings
) -> None:
    await Publisher(redis, make_settings()).publish_many(chats(EVENTS))
    chaos = random.Random(7)
    for round_ in range(8):
        process = spawn(redis_url, key_prefix, f"worker-{round_ % 2}")
        await asyncio.sleep(chaos.uniform(0.3, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
    survivor = spawn(redis_url, key_prefix, "worker-final")
    try:
        async with asyncio.timeout(60):
            while await redis.hlen(f"{key_prefix}counts") < EVENTS:
                await asyncio.sleep(0.1)
            stream = make_settings().keys.channel_stream("chat", "demo")
            while (await redis.xpending(stream, "crashgroup"))["pending"]:
                await asyncio.sleep(0.1)
    finally:
        survivor.terminate()
        survivor.wait()
    values = await redis.hvals(f"{key_prefix}counts")
    assert len(values) == EVENTS
    assert set(values) == {"1"}


async def test_runner_reconnects_after_a_redis_restart_and_counts_everything_once() -> None:
    server = RedisServer(appendonly=True)
    server.start()
    client = connect(server.url)
    settings = ConsumerSettings(
        _env_file=None,
        redis_url=server.url,
        consumer_name="c1",
        consumer_block_ms=50,
    )
    runner = ConsumerRunner(
        client,
        settings,
        "g",
        CountingHandler("counts"),
        [Stream.CHAT],
        partition=settings.partitioning.of("demo"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await Publisher(client, settings).publish_many(chats(100))
        await asyncio.sleep(0.3)
        server.stop()
        await asyncio.sleep(1.0)
        server.start()
        await Publisher(client, settings).publish_many(chats(100, start=100))
        async with asyncio.timeout(15):
            while await client.hlen("counts") < 200:
                await asyncio.sleep(0.05)
        assert set(await client.hvals("counts")) == {"1"}
        assert runner.summary.reconnects >= 1
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        await client.aclose()
        server.close()


async def test_a_fence_moving_while_a_failed_batch_is_retried_one_by_one_is_a_refused_commit(
    redis: Redis, key_prefix: str, make_settings
) -> None:
    """A poison entry fails its batch, so the runner commits entry by entry; meanwhile the
    fence keeps moving (as when another consumer claims, or a cluster connection drops
    while watching). Each refused commit is dropped and read again, never a dead runner:
    once the fence rests, everything is counted once and the poison is dead-lettered."""
    settings = make_settings(
        ConsumerSettings, consumer_name="c1", consumer_block_ms=20, consumer_max_attempts=2
    )
    counts = f"{key_prefix}counts"
    runner = ConsumerRunner(
        redis,
        settings,
        "g",
        CountingHandler(counts, poison_id="c50"),
        [Stream.CHAT],
        partition=settings.partitioning.of("demo"),
    )
    await Publisher(redis, settings).publish_many(chats(200))
    stop, moving = asyncio.Event(), asyncio.Event()

    async def move_the_fence() -> None:
        while not moving.is_set():
            await redis.incr(runner.fence)

    hammer = asyncio.create_task(move_the_fence())
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.sleep(2.0)
        moving.set()
        await hammer
        async with asyncio.timeout(15):
            while await redis.hlen(counts) < 199 or not await redis.xlen(
                settings.keys.channel_dead("demo")
            ):
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
        assert runner.summary.fenced_batches > 0, "the fence never refused a commit"
        assert set(await redis.hvals(counts)) == {"1"}
        [(_, letter)] = await redis.xrange(settings.keys.channel_dead("demo"))
        assert "c50" in letter["raw"]
    finally:
        moving.set()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
