"""``make bench`` section ``scale``: one and two analytics replicas, orchestrator channels.

Analytics: ``python -m services.analytics`` processes (1 or 2) over pre-published
events of 100, 1,000 and 5,000 channels on 64 partitions. Every partition lease is
parked on a placeholder while the replicas start; once all are healthy the leases are
handed over in one pipeline (partition p to replica p mod n, every replica in the
heartbeat set), and each finds its share at its next lease round (0.5 s): a replica
that started first does not drain its share alone before the other is up (which
measured one replica's rate as the pair's). Timed from the first event
any replica acks (its ``/metrics``, polled every 50 ms) until every event is acked;
CPU of each replica and of redis-server over that span. Then the figures rounds
(``streamloop_figures_round_seconds``, the broadcaster's own histogram, and
``streamloop_figures_channels_total`` for the channels each round recomputed), twice:
**loaded**, while the benchmark publishes a chat message to every channel every
:func:`live_tick_s` (so every held channel has moved at every round: a round's real
cost), and **quiet**, once that load is acked (nothing moved: the round skips every
channel). The orchestrator part is in :mod:`tools.benchmarks.scale_orchestrator`;
Redis memory per channel-hour is section ``history``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, replace
from datetime import timedelta

from redis.asyncio import Redis

from services.analytics.figures_round import RECOMPUTE_BATCH, RECOMPUTE_CONCURRENCY
from services.analytics.handler import GROUP
from services.analytics.settings import AnalyticsSettings
from shared.events import ChatEvent
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer, free_port
from tools.benchmarks.analytics_consume import START, event_mix
from tools.benchmarks.children import Child, app_env, child
from tools.benchmarks.harness import raise_fd_limit, run_uvloop
from tools.benchmarks.measure import proc_cpu_s, redis_cpu_s, scrape
from tools.benchmarks.scale_orchestrator import (
    OrchestratorRun,
    measure_orchestrator,
    orchestrator_rows,
)
from tools.health import wait_healthy

SCALE_CHANNELS = (100, 1_000, 5_000)
SCALE_EVENTS = 60_000
BROADCAST_S = 1.0
FIGURES_ROUNDS = 3
LIVE_TICK_S = 0.5
LIVE_RATE_CAP = 4_000
CONSUMED = "streamloop_events_consumed_total"
PARKED = "bench-parked"
"""Holds every partition lease while the replicas start, so none reads before all are up."""
LEASE_TTL_MS = 1_500
"""The replicas' ``ANALYTICS_LEASE_TTL_MS``: they renew (and find the leases handed to them)
every 0.5 s, so the last to find its share starts at most 0.5 s after the first."""
ROUND = "streamloop_figures_round_seconds"
OUTCOMES = "streamloop_figures_channels_total"
SPEEDUP_AIM = 1.7
ROUND_AIM_S = 0.5


@dataclass(frozen=True)
class Rounds:
    """Figures rounds of each replica: mean seconds, channels recomputed and held a round,
    share of a core used meanwhile."""

    seconds: list[float]
    recomputed: list[float]
    held: list[float]
    cpu: list[float]
    redis_cpu: float

    def cells(self) -> str:
        """``recomputed of held`` and the seconds, as two table cells."""
        channels = " / ".join(
            f"{r:,.0f} of {h:,.0f}" for r, h in zip(self.recomputed, self.held, strict=True)
        )
        return f"{channels} | {' / '.join(f'{s:.3f}' for s in self.seconds)}"


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
    loaded: Rounds
    quiet: Rounds


def channel_names(count: int) -> list[str]:
    """``count`` channel logins."""
    return [f"ch{n:05d}" for n in range(count)]


def settings_for(url: str, channels: list[str]) -> AnalyticsSettings:
    """Settings of the benchmark's own writes (no prefix: the server is ours alone)."""
    return AnalyticsSettings(_env_file=None, redis_url=url, channels=channels)


async def assign_leases(
    redis: Redis, settings: AnalyticsSettings, names: list[str], holders: list[str], ttl_ms: int
) -> None:
    """Partition ``p`` to ``holders[p % len(holders)]`` for ``ttl_ms``, every one of
    ``names`` live in the heartbeat set; one pipeline."""
    keys = settings.keys
    now_s, now_us = await redis.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.replicas(GROUP), dict.fromkeys(names, now_ms))
        for partition in settings.partitioning.all():
            owner = holders[partition % len(holders)]
            pipe.set(keys.partition_lease(GROUP, partition), owner, px=ttl_ms)
        await pipe.execute()


def replica_env(url: str, port: int, channels: list[str], name: str) -> dict[str, str]:
    """The environment of one analytics replica."""
    return app_env(url, port) | {
        "CHANNELS": ",".join(channels),
        "CONSUMER_NAME": name,
        "BROADCAST_INTERVAL_S": str(BROADCAST_S),
        "ANALYTICS_LEASE_TTL_MS": str(LEASE_TTL_MS),
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


async def round_totals(port: int) -> tuple[float, float, float, float]:
    """A replica's figures rounds so far: seconds, count, channels recomputed and unchanged."""
    metrics = await scrape(f"http://127.0.0.1:{port}")
    return (
        metrics.get(f"{ROUND}_sum", 0.0),
        metrics.get(f"{ROUND}_count", 0.0),
        metrics.get(f'{OUTCOMES}{{outcome="recomputed"}}', float("nan")),
        metrics.get(f'{OUTCOMES}{{outcome="unchanged"}}', float("nan")),
    )


async def figures_rounds(
    redis: Redis, children: list[Child], ports: list[int], skip: int
) -> Rounds:
    """``FIGURES_ROUNDS`` figures rounds of each replica after the next ``skip`` to end (they
    may have begun before the conditions measured): mean time, channels a round, CPU."""
    first = [await round_totals(port) for port in ports]
    before = first
    while any(b[1] < f[1] + skip for b, f in zip(before, first, strict=True)):
        await asyncio.sleep(0.1)
        before = [await round_totals(port) for port in ports]
    began, cpu_before = time.perf_counter(), [proc_cpu_s(c.pid) for c in children]
    redis_before = await redis_cpu_s(redis)
    after = before
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        after = [await round_totals(port) for port in ports]
        if all(a[1] - b[1] >= FIGURES_ROUNDS for a, b in zip(after, before, strict=True)):
            break
    elapsed = time.perf_counter() - began
    cpu = [(proc_cpu_s(c.pid) - b) / elapsed for c, b in zip(children, cpu_before, strict=True)]
    redis_cpu = (await redis_cpu_s(redis) - redis_before) / elapsed
    rounds = [a[1] - b[1] for a, b in zip(after, before, strict=True)]
    deltas = [
        [(x - y) / n if n else float("nan") for x, y in zip(a, b, strict=True)]
        for a, b, n in zip(after, before, rounds, strict=True)
    ]
    return Rounds(
        [d[0] for d in deltas],
        [d[2] for d in deltas],
        [d[2] + d[3] for d in deltas],
        cpu,
        redis_cpu,
    )


def live_tick_s(channels: int) -> float:
    """How often the loaded phase sends every channel a message: ``LIVE_TICK_S``, or
    slower where that would pass ``LIVE_RATE_CAP`` events a second (5,000 channels)."""
    return max(LIVE_TICK_S, channels / LIVE_RATE_CAP)


def live_chat(names: list[str], tick: int) -> list[ChatEvent]:
    """One chat message on every channel, an hour of event time after the mix, ``tick`` on."""
    at = START + timedelta(hours=1, seconds=tick * live_tick_s(len(names)))
    return [
        ChatEvent(channel=c, source="sim", id=f"{c}-live-{tick}", user="live", text="hi", ts=at)
        for c in names
    ]


async def keep_publishing(
    redis: Redis, settings: AnalyticsSettings, names: list[str], stop: asyncio.Event
) -> int:
    """Publish :func:`live_chat` every :func:`live_tick_s` until ``stop``; events published."""
    publisher, published, tick = Publisher(redis, settings, batch_size=1000), 0, 0
    every_s = live_tick_s(len(names))
    while not stop.is_set():
        began = time.monotonic()
        published += (await publisher.publish_many(live_chat(names, tick))).published
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - began)))
    return published


async def loaded_rounds(
    redis: Redis,
    settings: AnalyticsSettings,
    names: list[str],
    children: list[Child],
    ports: list[int],
) -> tuple[Rounds, int]:
    """Figures rounds while every channel gets events; the events published meanwhile."""
    stop = asyncio.Event()
    publishing = asyncio.create_task(keep_publishing(redis, settings, names, stop))
    try:
        rounds = await figures_rounds(redis, children, ports, skip=1)
    finally:
        stop.set()
        published = await publishing
    return rounds, published


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
        await assign_leases(redis, settings, replica_names, [PARKED], 120_000)
        ports = [free_port() for _ in replica_names]
        command = [sys.executable, "-m", "services.analytics"]
        async with contextlib.AsyncExitStack() as stack:
            children = [
                await stack.enter_async_context(
                    child(*command, env=replica_env(url, port, names, name))
                )
                for port, name in zip(ports, replica_names, strict=True)
            ]
            for process, port in zip(children, ports, strict=True):
                url_of = f"http://127.0.0.1:{port}"
                await wait_healthy(url_of, name="analytics", process=process.process)
            await assign_leases(redis, settings, replica_names, replica_names, LEASE_TTL_MS)
            run = await time_run(redis, children, ports, count, len(events))
            loaded, published = await loaded_rounds(redis, settings, names, children, ports)
            await until_acked(ports, len(events) + published)
            quiet = await figures_rounds(redis, children, ports, skip=2)
            return replace(run, loaded=loaded, quiet=quiet)
    finally:
        await redis.flushdb()
        await redis.aclose()


async def time_run(
    redis: Redis, children: list[Child], ports: list[int], count: int, total: int
) -> AnalyticsRun:
    """From the first ack to the last (the figures rounds come after: :func:`analytics_run`)."""
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
    return AnalyticsRun(
        count,
        len(ports),
        (total - sum(first)) / elapsed,
        elapsed,
        cpu,
        [n - f for n, f in zip(now, first, strict=True)],
        redis_cpu,
        Rounds([], [], [], [], 0.0),
        Rounds([], [], [], [], 0.0),
    )


async def until_acked(ports: list[int], total: int) -> None:
    """Wait until the replicas have acked ``total`` entries (at most 120 s)."""
    deadline = time.monotonic() + 120
    while sum(await consumed(ports)) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {total:,} entries acked within 120 s")
        await asyncio.sleep(0.05)


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
            shares += r.loaded.seconds
        cpu_us = [
            c / max(1.0, e) * 1e6 for c, e in zip(r.replica_cpu_s, r.replica_events, strict=True)
        ]
        rows.append(
            f"| {r.channels:,} | {r.replicas} | {r.rate:,.0f} | {speedup:.2f}x "
            f"| {' / '.join(f'{e:,.0f}' for e in r.replica_events)} "
            f"| {' / '.join(f'{c / r.elapsed_s:.0%}' for c in r.replica_cpu_s)} "
            f"| {' / '.join(f'{u:.0f}' for u in cpu_us)} | {r.redis_cpu_s / r.elapsed_s:.0%} "
            f"| {r.loaded.cells()} | {' / '.join(f'{c:.0%}' for c in r.loaded.cpu)} "
            f"| {r.loaded.redis_cpu:.0%} "
            f"| {r.quiet.cells()} |"
        )
    worst = min(speedups, default=float("nan"))
    worst_share = max(shares, default=float("nan"))
    ratios = ", ".join(f"{x:.2f}x" for x in speedups)
    counts = ", ".join(f"{c:,}" for c in SCALE_CHANNELS)
    return [
        f"`python -m services.analytics` processes over {SCALE_EVENTS:,} events "
        "(the `analytics-consume` mix, spread over the channels), 64 partitions, default "
        f"batch size; `BROADCAST_INTERVAL_S={BROADCAST_S:g}`. Events published before the "
        "replicas start, every partition lease parked on a placeholder until all replicas are "
        "healthy, then handed over in one pipeline (partition p to replica p mod n, "
        f"`ANALYTICS_LEASE_TTL_MS={LEASE_TTL_MS}`: each finds its share within 0.5 s), so no "
        "replica drains its share alone before the others are up. Timed from the first ack "
        "(any replica's "
        "`/metrics`, polled every 50 ms) until all are acked. Figures rounds "
        "(`streamloop_figures_round_seconds`; channels from "
        "`streamloop_figures_channels_total`): mean of "
        f"{FIGURES_ROUNDS} rounds per replica, **loaded** while the benchmark publishes a chat "
        f"message to every channel every {LIVE_TICK_S:g} s (at most {LIVE_RATE_CAP:,} events "
        "a second: every "
        f"{live_tick_s(max(SCALE_CHANNELS)):g} s at {max(SCALE_CHANNELS):,} channels), so "
        "every held channel has moved at every round and is recomputed: the real cost (the "
        "first round to end is skipped, it may have begun before), and **quiet** once that "
        "is acked (nothing moved, the round only reads each channel's version and clock; the "
        "first two rounds to end are skipped). Channels a round: recomputed of held.",
        "",
        "**2 shared CPU cores**: two replicas, redis-server and this benchmark run on the same "
        "2 cores (also used by other people's work), so the two-replica rate is bounded by "
        "the machine, not by the design. Per-replica CPU time per event and the figures-round "
        "time per replica share are the figures that carry over to separate machines.",
        "",
        "| channels | replicas | events/s | vs 1 replica | events per replica | replica CPU "
        "| replica CPU µs/event | redis CPU | loaded: channels a round | loaded round s "
        "| loaded replica CPU | loaded redis CPU | quiet: channels a round | quiet round s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Aim two replicas >= {SPEEDUP_AIM}x one at every channel count: "
        f"**{met(worst >= SPEEDUP_AIM)}** ({ratios} at {counts}"
        " channels, on 2 shared cores; the ratio and the round times swing widely from run to "
        "run with the other work on the machine: the replica CPU column shows how much of a "
        "core each replica got). "
        f"Aim figures round <= {ROUND_AIM_S} s per replica share (500 channels each of two) at "
        f"1,000 channels, judged on the **loaded** rounds (every channel recomputed; a quiet "
        f"round skips them all): **{met(worst_share <= ROUND_AIM_S)}** (slowest "
        f"{worst_share:.3f} s). A round reads every held channel's version and clock in one "
        "pipeline, then recomputes the channels that moved in batches of "
        f"{RECOMPUTE_BATCH}, {RECOMPUTE_CONCURRENCY} batches at a time, each a pipeline of "
        "snapshot scripts (with the day and stream ranges of each channel's previous "
        "snapshot) and one of compare-and-set writes. Loaded replica / redis CPU: the share of a "
        "core each replica (consuming the live events and running the rounds) and "
        "redis-server used over the loaded rounds.",
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
