"""``publisher``: events/s through :class:`shared.publisher.Publisher`, beside redis-benchmark.

The publisher groups a call's events by their channel's partition and runs one
script call per batch of one partition: one channel's events make full batches,
many channels' events spread over the partitions make smaller ones (a row each).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Callable

from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer
from shared.settings import BaseServiceSettings

PUBLISH_EVENTS = 200_000
PUBLISH_BATCH = 500
PUBLISH_CALL = 10_000
REPEATS = 3
MANY_CHANNELS = 64


def channel_names(count: int) -> list[str]:
    """``count`` channel names: ``demo`` alone, or ``ch0`` ... (spread over the partitions)."""
    return ["demo"] if count == 1 else [f"ch{n}" for n in range(count)]


def chat_fields(n: int, channels: int = 1) -> dict[str, str]:
    """A chat entry as a producer hands it to the publisher (raw strings, to be validated)."""
    return {
        "v": "1",
        "type": "chat",
        "id": f"bench-{n}",
        "channel": channel_names(channels)[n % channels],
        "ts": "2026-02-27T10:30:00.123Z",
        "source": "sim",
        "user": f"viewer{n % 500}",
        "text": "that was a great play, how did you do that?",
    }


async def publisher_rate(
    url: str, repeat: int, per_call: int = PUBLISH_CALL, channels: int = 1
) -> float:
    """Events/s through :class:`Publisher` from raw fields: validation + dedupe + XADD.

    The producer hands over ``per_call`` events per ``publish_many`` call, of
    ``channels`` channels in turn.
    """
    redis = connect(url)
    settings = BaseServiceSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=f"p{repeat}:",
        stream_maxlen_chat=PUBLISH_EVENTS * 2,
    )
    publisher = Publisher(redis, settings, batch_size=PUBLISH_BATCH)
    raw = [chat_fields(n, channels) for n in range(PUBLISH_EVENTS)]
    started = time.perf_counter()
    for start in range(0, PUBLISH_EVENTS, per_call):
        await publisher.publish_many(raw[start : start + per_call])
    elapsed = time.perf_counter() - started
    chat_keys = {settings.keys.channel_stream("chat", c) for c in channel_names(channels)}
    assert sum([await redis.xlen(key) for key in chat_keys]) == PUBLISH_EVENTS
    await redis.flushdb()
    await redis.aclose()
    return PUBLISH_EVENTS / elapsed


def redis_benchmark_rate(port: int) -> float:
    """XADDs/s from ``redis-benchmark`` pipelining the same entry, same server."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return float("nan")
    fields = chat_fields(0)
    command = ["XADD", "rb:events:chat", "MAXLEN", "~", "100000", "*"]
    command += [item for pair in fields.items() for item in pair]
    out = subprocess.run(
        [
            binary,
            "-p",
            str(port),
            "-n",
            str(PUBLISH_EVENTS),
            "-P",
            str(PUBLISH_BATCH),
            "-q",
            *command,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])


def best_of(measure: Callable[[int], float]) -> float:
    """The best of ``REPEATS`` runs (least disturbed by the machine's other work)."""
    return max(measure(repeat) for repeat in range(REPEATS))


def bench_publisher() -> str:
    """Publisher throughput beside redis-benchmark, as a Markdown section."""
    server = RedisServer()
    server.start()
    try:
        ours = best_of(lambda r: asyncio.run(publisher_rate(server.url, r)))
        one_batch = best_of(lambda r: asyncio.run(publisher_rate(server.url, r, PUBLISH_BATCH)))
        spread = best_of(
            lambda r: asyncio.run(publisher_rate(server.url, r, PUBLISH_CALL, MANY_CHANNELS))
        )
        theirs = best_of(lambda _: redis_benchmark_rate(server.port))
    finally:
        server.close()
    verdict = "met" if ours >= 50_000 else "NOT met"
    partitions = BaseServiceSettings(_env_file=None).partitioning
    filled = len(partitions.channels_by_partition(channel_names(MANY_CHANNELS)))
    return "\n".join(
        [
            f"{PUBLISH_EVENTS:,} chat events from raw fields, batches of up to {PUBLISH_BATCH} "
            f"events of one partition ({partitions.count} partitions), one process, "
            f"best of {REPEATS}:",
            "",
            "| path | events/s |",
            "|---|---:|",
            f"| `Publisher.publish_many`, {PUBLISH_CALL:,} events a call, one channel "
            f"(validate + atomic dedupe + XADD, one Lua call per batch, batches overlapped) "
            f"| {ours:,.0f} |",
            f"| `Publisher.publish_many`, {PUBLISH_CALL:,} events a call, {MANY_CHANNELS} "
            f"channels in turn ({filled} partitions: ~{PUBLISH_CALL // filled} events a batch) "
            f"| {spread:,.0f} |",
            f"| `Publisher.publish_many`, {PUBLISH_BATCH} events a call (one batch, no overlap) "
            f"| {one_batch:,.0f} |",
            f"| `redis-benchmark -P {PUBLISH_BATCH}` XADD of the same entry | {theirs:,.0f} |",
            "",
            f"Ratio publisher / redis-benchmark: **{ours / theirs:.2f}**. "
            f"Aim of 50,000 events/s: **{verdict}**.",
        ]
    )
