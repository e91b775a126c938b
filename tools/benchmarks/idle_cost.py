"""``idle-cost``: what an analytics replica with nothing to do costs Redis.

``python -m services.analytics`` as a subprocess (default settings: 64 partitions,
one consumer runner each, reclaim every ``CONSUMER_RECLAIM_INTERVAL_S``) on an empty
Redis of its own, one configured channel, no event published. After a warm-up (every
lease taken, every runner's first reclaim round done) the Redis server's counters are
read twice, ``IDLE_WINDOW_S`` apart: ``total_reads_processed`` (a read event per
request arriving on a client socket: one per command sent alone, about one per
pipeline or transaction, so it counts round trips), ``total_commands_processed`` and
``INFO commandstats`` per command, with the CPU of the service and of redis-server.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from shared.redis_client import connect
from shared.redis_server import RedisServer, free_port
from tools.benchmarks.children import app_env, child
from tools.benchmarks.harness import run_uvloop
from tools.benchmarks.measure import proc_cpu_s, redis_cpu_s
from tools.health import wait_healthy

IDLE_WARMUP_S = 12.0
IDLE_WINDOW_S = 30.0
BURST_WINDOW_S = 10.0
BURST_SAMPLE_S = 0.05
STREAMS_PER_ROUND = 5
"""A reclaim round sends one XPENDING per event stream of its partition."""
RECLAIM_COMMANDS = ("xpending", "xinfo|consumers", "xinfo|groups", "xrange", "xrevrange")
"""What a reclaim round sends (``xrange`` before the round was pipelined, ``xrevrange`` after)."""


@dataclass
class IdleReading:
    """Counters over the window, per second."""

    round_trips: float
    commands: float
    per_command: dict[str, float]
    analytics_cpu: float
    redis_cpu: float
    largest_burst: float
    """The most reclaim rounds in one ``BURST_SAMPLE_S`` sample."""


async def counters(redis: Redis) -> tuple[int, int, dict[str, int]]:
    """Reads processed, commands processed, calls per command, as the server counts them."""
    stats: dict[str, Any] = await redis.info("stats")
    per_command: dict[str, Any] = await redis.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in per_command.items()
    }
    return int(stats["total_reads_processed"]), int(stats["total_commands_processed"]), calls


async def idle_run(url: str) -> IdleReading:
    """The service idle on ``url``: its cost per second over ``IDLE_WINDOW_S``."""
    port = free_port()
    redis = connect(url)
    command = [sys.executable, "-m", "services.analytics"]
    try:
        elsewhere = Path(tempfile.gettempdir())
        async with child(*command, env=app_env(url, port), cwd=elsewhere) as app:
            await wait_healthy(f"http://127.0.0.1:{port}", name="analytics", process=app.process)
            await asyncio.sleep(IDLE_WARMUP_S)
            reads, commands, calls = await counters(redis)
            cpu, redis_cpu, began = proc_cpu_s(app.pid), await redis_cpu_s(redis), time.monotonic()
            await asyncio.sleep(IDLE_WINDOW_S)
            reads_after, commands_after, calls_after = await counters(redis)
            cpu_after, redis_after = proc_cpu_s(app.pid), await redis_cpu_s(redis)
            seconds = time.monotonic() - began
            largest_burst = await reclaim_burst(redis)
    finally:
        await redis.aclose()
    per_command = {
        name: (count - calls.get(name, 0)) / seconds for name, count in calls_after.items()
    }
    return IdleReading(
        round_trips=(reads_after - reads - 2) / seconds,  # less the two readings' own INFOs
        commands=(commands_after - commands - 2) / seconds,
        per_command={name: rate for name, rate in per_command.items() if rate > 0},
        analytics_cpu=(cpu_after - cpu) / seconds,
        redis_cpu=(redis_after - redis_cpu) / seconds,
        largest_burst=largest_burst,
    )


async def reclaim_burst(redis: Redis) -> float:
    """The most reclaim rounds started in one of the ``BURST_SAMPLE_S`` samples of
    ``BURST_WINDOW_S``: how far apart the runners' rounds are (XPENDING calls / 5)."""
    most, last = 0, None
    deadline = time.monotonic() + BURST_WINDOW_S
    while time.monotonic() < deadline:
        stats: dict[str, Any] = await redis.info("commandstats")
        calls = int(stats.get("cmdstat_xpending", {}).get("calls", 0))
        if last is not None:
            most = max(most, calls - last)
        last = calls
        await asyncio.sleep(BURST_SAMPLE_S)
    return most / STREAMS_PER_ROUND


def idle_on_fresh_redis() -> IdleReading:
    """One :func:`idle_run` against a redis-server of its own."""
    server = RedisServer()
    server.start()
    try:
        return run_uvloop(idle_run(server.url))
    finally:
        server.close()


def bench_idle_cost() -> str:
    """``idle-cost``: the Markdown section."""
    reading = idle_on_fresh_redis()
    reclaim = sum(reading.per_command.get(name, 0.0) for name in RECLAIM_COMMANDS)
    rows = [
        f"| `{name.replace('|', ' ').upper()}` | {rate:.1f} |"
        for name, rate in sorted(reading.per_command.items(), key=lambda item: -item[1])
        if name != "info"
    ]
    return "\n".join(
        [
            "`python -m services.analytics` as a subprocess with default settings (64 "
            "partitions, one consumer runner each, `CONSUMER_RECLAIM_INTERVAL_S` 5, "
            "`CONSUMER_BLOCK_MS` 1,000), one channel configured, nothing published: what the "
            f"idle replica costs Redis over {IDLE_WINDOW_S:.0f} s, after a "
            f"{IDLE_WARMUP_S:.0f} s warm-up. Round trips are the server's "
            "`total_reads_processed` (one per command sent alone, about one per pipeline); "
            "commands per second from `INFO commandstats`. The reclaim rounds' reads "
            "(XPENDING, XINFO CONSUMERS and GROUPS, the lag's XREVRANGE) go in one pipeline "
            "per runner per round; most of the other round trips are each runner's blocking "
            "XREADGROUP (once per `CONSUMER_BLOCK_MS`) and the partition leases' renewals "
            "(EVALSHA; the GET and PEXPIRE are the script's, counted as commands only).",
            "",
            "| per second | round trips | commands | of which reclaim reads | analytics CPU "
            "| redis CPU |",
            "|---|---:|---:|---:|---:|---:|",
            f"| idle analytics | {reading.round_trips:.1f} | {reading.commands:.1f} | "
            f"{reclaim:.1f} | {reading.analytics_cpu:.1%} | {reading.redis_cpu:.1%} |",
            "",
            f"Most reclaim rounds started within one {BURST_SAMPLE_S * 1000:.0f} ms sample over "
            f"{BURST_WINDOW_S:.0f} s (64 runners, 12.8 rounds/s): "
            f"{reading.largest_burst:.0f}. Each runner's second round and first blocking read "
            "come later by its partition's share of the interval, so the runners started "
            "together do not all reclaim in the same instant.",
            "",
            "| command | calls/s |",
            "|---|---:|",
            *rows,
        ]
    )
