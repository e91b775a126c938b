"""``make bench`` section ``scale``: one and two analytics replicas, orchestrator channels.

Analytics: ``python -m services.analytics`` processes (1 or 2) over pre-published
events of 100, 1,000 and 5,000 channels on 64 partitions. With two replicas the
partition leases are handed out before they start (even partitions to one, odd to
the other, both in the heartbeat set), so both work from their first second
instead of one taking everything and giving half back. Timed from the first event
any replica acks (its ``/metrics``, polled every 50 ms) until every event is acked;
CPU of each replica and of redis-server over that span; then the figures rounds
(``streamloop_figures_round_seconds``, the broadcaster's own histogram) once the
load is over. The orchestrator part is in :mod:`tools.benchmarks.scale_orchestrator`;
Redis memory per channel-hour is section ``history``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from services.analytics.handler import GROUP
from services.analytics.settings import AnalyticsSettings
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer, free_port
from tools.benchmarks.analytics_consume import event_mix
from tools.benchmarks.children import Child, app_env, child
from tools.benchmarks.harness import raise_fd_limit, run_uvloop
from tools.benchmarks.measure import proc_cpu_s, redis_cpu_s, scrape
from tools.benchmarks.scale_orchestrator import (
    OrchestratorRun,
    measure_orchestrator,
    orchestrator_rows,
)

SCALE_CHANNELS = (100, 1_000, 5_000)
SCALE_EVENTS = 60_000
BROADCAST_S = 1.0
FIGURES_ROUNDS = 3
CONSUMED = "streamloop_events_consumed_total"
ROUND = "streamloop_figures_round_seconds"
SPEEDUP_AIM = 1.7
ROUND_AIM_S = 0.5


@dataclass(frozen=True)
class AnalyticsRun:
    """One timed run of ``replicas`` analytics processes over ``channels`` channels."""

    channels: int
    replicas: int
    rate: float
    elapsed_s: float
    replica_cpu_s: list[float]
    replica_events: list[float]
    redis_cpu_s: float
    round_s: list[float]
    round_channels: list[float]


def channel_names(count: int) -> list[str]:
    """``count`` channel logins."""
    return [f"ch{n:05d}" for n in range(count)]


def settings_for(url: str, channels: list[str]) -> AnalyticsSettings:
    """Settings of the benchmark's own writes (no prefix: the server is ours alone)."""
    return AnalyticsSettings(_env_file=None, redis_url=url, channels=channels)


async def assign_leases(redis: Redis, settings: AnalyticsSettings, names: list[str]) -> None:
    """Partition ``p`` to ``names[p % len(names)]``, every name live in the heartbeat set."""
    keys = settings.keys
    now_s, now_us = await redis.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    await redis.zadd(keys.replicas(GROUP), dict.fromkeys(names, now_ms))
    for partition in settings.partitioning.all():
        owner = names[partition % len(names)]
        await redis.set(keys.partition_lease(GROUP, partition), owner, px=60_000)


def replica_env(url: str, port: int, channels: list[str], name: str) -> dict[str, str]:
    """The environment of one analytics replica."""
    return app_env(url, port) | {
        "CHANNELS": ",".join(channels),
        "CONSUMER_NAME": name,
        "BROADCAST_INTERVAL_S": str(BROADCAST_S),
        "REDIS_MAX_CONNECTIONS": "400",
    }


async def consumed(ports: list[int]) -> list[float]:
    """Entries each replica has acked so far (0 while it does not answer yet)."""
    counts = []
    for port in ports:
        try:
            metrics = await scrape(f"http://127.0.0.1:{port}")
        except Exception:
            counts.append(0.0)
            continue
        counts.append(sum(v for k, v in metrics.items() if k.startswith(CONSUMED + "{")))
    return counts


async def figures_rounds(ports: list[int]) -> tuple[list[float], list[float]]:
    """Mean time of ``FIGURES_ROUNDS`` figures rounds of each replica at rest (the next
    round to end is skipped), and its channels a round."""

    async def read(port: int) -> tuple[float, float, float]:
        metrics = await scrape(f"http://127.0.0.1:{port}")
        return (
            metrics.get(f"{ROUND}_sum", 0.0),
            metrics.get(f"{ROUND}_count", 0.0),
            metrics.get("streamloop_figures_round_channels", 0.0),
        )

    first = [await read(port) for port in ports]
    before = first
    while any(b[1] <= f[1] for b, f in zip(before, first, strict=True)):
        await asyncio.sleep(0.2)  # the round under way may have begun under load: skip it
        before = [await read(port) for port in ports]
    after = before
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        after = [await read(port) for port in ports]
        if all(a[1] - b[1] >= FIGURES_ROUNDS for a, b in zip(after, before, strict=True)):
            break
    means = [
        (a[0] - b[0]) / (a[1] - b[1]) if a[1] > b[1] else float("nan")
        for a, b in zip(after, before, strict=True)
    ]
    return means, [a[2] for a in after]


async def analytics_run(url: str, count: int, replicas: int) -> AnalyticsRun:
    """Publish, start ``replicas`` processes, time until every event is acked, then rounds."""
    names = channel_names(count)
    settings = settings_for(url, names)
    redis = connect(url)
    try:
        await redis.flushdb()
        events = event_mix(SCALE_EVENTS, names)
        result = await Publisher(redis, settings, batch_size=1000).publish_many(events)
        assert result.published == len(events), result
        replica_names = [f"scale-{n}" for n in range(replicas)]
        if replicas > 1:
            await assign_leases(redis, settings, replica_names)
        ports = [free_port() for _ in replica_names]
        command = [sys.executable, "-m", "services.analytics"]
        async with contextlib.AsyncExitStack() as stack:
            children = [
                await stack.enter_async_context(
                    child(*command, env=replica_env(url, port, names, name))
                )
                for port, name in zip(ports, replica_names, strict=True)
            ]
            return await time_run(redis, children, ports, count, len(events))
    finally:
        await redis.flushdb()
        await redis.aclose()


async def time_run(
    redis: Redis, children: list[Child], ports: list[int], count: int, total: int
) -> AnalyticsRun:
    """From the first ack to the last, then the figures rounds at rest."""
    deadline = time.monotonic() + 120
    while sum(first := await consumed(ports)) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no replica acked anything within 120 s")
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    cpu_before = [proc_cpu_s(c.pid) for c in children]
    redis_before = await redis_cpu_s(redis)
    while sum(now := await consumed(ports)) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sum(now):,.0f} of {total:,} acked within 120 s")
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    cpu = [proc_cpu_s(c.pid) - b for c, b in zip(children, cpu_before, strict=True)]
    redis_cpu = await redis_cpu_s(redis) - redis_before
    rounds, round_channels = await figures_rounds(ports)
    return AnalyticsRun(
        count,
        len(ports),
        (total - sum(first)) / elapsed,
        elapsed,
        cpu,
        [n - f for n, f in zip(now, first, strict=True)],
        redis_cpu,
        rounds,
        round_channels,
    )


async def measure_analytics(url: str) -> list[AnalyticsRun]:
    """1 then 2 replicas at each channel count."""
    return [
        await analytics_run(url, count, replicas) for count in SCALE_CHANNELS for replicas in (1, 2)
    ]


def analytics_rows(runs: list[AnalyticsRun]) -> list[str]:
    """The analytics table and its verdicts."""
    rows, speedups, shares = [], [], []
    by = {(r.channels, r.replicas): r for r in runs}
    for r in runs:
        one = by.get((r.channels, 1))
        speedup = r.rate / one.rate if one else float("nan")
        if r.replicas == 2:
            speedups.append(speedup)
        if r.replicas == 2 and r.channels == 1_000:
            shares += r.round_s
        cpu_us = [
            c / max(1.0, e) * 1e6 for c, e in zip(r.replica_cpu_s, r.replica_events, strict=True)
        ]
        rows.append(
            f"| {r.channels:,} | {r.replicas} | {r.rate:,.0f} | {speedup:.2f}x "
            f"| {' / '.join(f'{e:,.0f}' for e in r.replica_events)} "
            f"| {' / '.join(f'{c / r.elapsed_s:.0%}' for c in r.replica_cpu_s)} "
            f"| {' / '.join(f'{u:.0f}' for u in cpu_us)} | {r.redis_cpu_s / r.elapsed_s:.0%} "
            f"| {' / '.join(f'{c:,.0f}' for c in r.round_channels)} "
            f"| {' / '.join(f'{s:.3f}' for s in r.round_s)} |"
        )
    worst = min(speedups, default=float("nan"))
    worst_share = max(shares, default=float("nan"))
    ratios = ", ".join(f"{x:.2f}x" for x in speedups)
    counts = ", ".join(f"{c:,}" for c in SCALE_CHANNELS)
    return [
        f"`python -m services.analytics` processes over {SCALE_EVENTS:,} pre-published events "
        "(the `analytics-consume` mix, spread over the channels), 64 partitions, default "
        f"batch size; `BROADCAST_INTERVAL_S={BROADCAST_S:g}`. Two replicas: partition leases "
        "handed out before start (even / odd partitions), so both work from the first second. "
        "Timed from the first ack (any replica's `/metrics`, polled every 50 ms) until all are "
        "acked. Figures round: mean of "
        f"{FIGURES_ROUNDS} rounds per replica once the load is over (the first round to end "
        "after it is skipped: it may have begun under load) "
        "(`streamloop_figures_round_seconds`), with the channels of its partitions.",
        "",
        "**2 shared CPU cores**: two replicas, redis-server and this benchmark run on the same "
        "2 cores (also used by other people's work), so the two-replica rate is bounded by "
        "the machine, not by the design. Per-replica CPU time per event and the figures-round "
        "time per replica share are the figures that carry over to separate machines.",
        "",
        "| channels | replicas | events/s | vs 1 replica | events per replica | replica CPU "
        "| replica CPU µs/event | redis CPU | channels a round | figures round s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Aim two replicas >= {SPEEDUP_AIM}x one at every channel count: "
        f"**{met(worst >= SPEEDUP_AIM)}** ({ratios} at {counts}"
        " channels, on 2 shared cores; the ratio and the round times swing widely from run to "
        "run with the other work on the machine: the replica CPU column shows how much of a "
        "core each replica got). "
        f"Aim figures round <= {ROUND_AIM_S} s per replica share (500 channels each of two) at "
        f"1,000 channels: **{met(worst_share <= ROUND_AIM_S)}** (slowest {worst_share:.3f} s; "
        "a round works one channel after another: one lifecycle read, the snapshot script, the "
        "figures, the compare-and-set write; 1-1.5 ms a channel in the quieter runs).",
    ]


def met(ok: bool) -> str:
    """The verdict word."""
    return "met" if ok else "NOT met"


async def measure_all(url: str) -> tuple[list[AnalyticsRun], list[OrchestratorRun]]:
    """Every part of the section, one after the other on one redis-server."""
    return await measure_analytics(url), await measure_orchestrator(url)


def bench_scale() -> str:
    """``scale``: analytics replicas and orchestrator channels per replica."""
    raise_fd_limit()
    server = RedisServer()
    server.start()
    began = time.monotonic()
    try:
        analytics, orchestrator = run_uvloop(measure_all(server.url))
    finally:
        server.close()
    return "\n".join(
        [
            "### Analytics replicas",
            "",
            *analytics_rows(analytics),
            "",
            "### Orchestrator channels per replica",
            "",
            *orchestrator_rows(orchestrator),
            "",
            "Redis memory per channel per streamed hour: section `history`.",
            "",
            f"Whole section: {time.monotonic() - began:.0f} s.",
        ]
    )
