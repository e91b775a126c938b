"""Part of ``make bench`` section ``scale``: orchestrator channels per replica.

Orchestrator: one ``python -m services.orchestrator`` (the bandit alone, no Claude,
``COMMIT_SEGMENTS=false`` and ``MIN_SEGMENT_S=0`` so every interval is a decision)
deciding N live channels whose event-time clocks the benchmark moves with the wall
clock. Each decision's stream entry id is the wall-clock ms it was recorded at, so
the gap between a channel's consecutive decisions, less ``DECISION_INTERVAL_S``,
is how late the loop got round to it.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.analytics.handler import apply_events
from services.orchestrator.settings import OrchestratorSettings
from shared.events import ActivityChangedEvent, EventBase, StreamStartedEvent
from shared.redis_client import connect
from shared.redis_server import free_port
from tools.benchmarks.children import child
from tools.benchmarks.measure import percentile, proc_cpu_s
from tools.health import wait_healthy

ORCH_CHANNELS = (250, 500, 1_000, 2_500, 5_000)
ORCH_RUN_S = 28.0
DECISION_INTERVAL_S = 10.0
LATE_AIM_S = 1.0
CHANNELS_AIM = 5_000
MEMORY_CHANNELS = 8


@dataclass(frozen=True)
class OrchestratorRun:
    """One replica deciding ``channels`` channels for ``ORCH_RUN_S`` seconds."""

    channels: int
    decided: int
    gaps: int
    late_p50_s: float
    late_p99_s: float
    late_max_s: float
    cpu_share: float

    @property
    def met(self) -> bool:
        """Every channel decided, and the p99 lateness within ``LATE_AIM_S``."""
        return self.decided == self.channels and self.late_p99_s <= LATE_AIM_S


def orchestrator_env(url: str, port: int, channels: list[str], state_dir: str) -> dict[str, str]:
    """One orchestrator replica's environment."""
    import os

    fields = OrchestratorSettings.model_fields
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in fields}
    return inherited | {
        "REDIS_URL": url,
        "REDIS_KEY_PREFIX": "",
        "CHANNELS": ",".join(channels),
        "REPLICA_ID": "scale-orchestrator",
        "ORCHESTRATOR_PORT": str(port),
        "DECISION_INTERVAL_S": str(DECISION_INTERVAL_S),
        "COMMIT_SEGMENTS": "false",
        "MIN_SEGMENT_S": "0",
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": f"{state_dir}/bandit.json",
        "LOG_LEVEL": "WARNING",
        "REDIS_MAX_CONNECTIONS": "400",
    }


def now_ms() -> int:
    """Wall-clock ms: the event time the benchmark's channels are at."""
    return int(time.time() * 1000)


async def go_live(redis: Redis, settings: OrchestratorSettings, channels: list[str]) -> None:
    """Every channel live on ``talk`` from now (event time = wall clock)."""
    at = datetime.now(UTC)
    for start in range(0, len(channels), 250):
        events: list[EventBase] = []
        for channel in channels[start : start + 250]:
            common = {"channel": channel, "source": "sim", "ts": at, "stream_id": f"s-{channel}"}
            events.append(StreamStartedEvent(id=f"{channel}-start", **common))
            events.append(ActivityChangedEvent(id=f"{channel}-a0", activity="talk", **common))
        await apply_events(redis, settings.keys, events)


async def move_clocks(
    redis: Redis, settings: OrchestratorSettings, channels: list[str], stop: asyncio.Event
) -> None:
    """Keep every channel's event-time clock at the wall clock (ZADD GT, 4 times a second)."""
    clocks = [settings.keys.analytics(channel).clock for channel in channels]
    while not stop.is_set():
        now = now_ms()
        for start in range(0, len(clocks), 1000):
            async with redis.pipeline(transaction=False) as pipe:
                for clock in clocks[start : start + 1000]:
                    pipe.zadd(clock, {"now": now}, gt=True)
                await pipe.execute()
        await asyncio.sleep(0.25)


async def lateness(
    redis: Redis, settings: OrchestratorSettings, channels: list[str]
) -> list[float]:
    """Seconds each decision came after the previous one of its channel, less the interval."""
    late: list[float] = []
    for start in range(0, len(channels), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for channel in channels[start : start + 500]:
                pipe.xrange(settings.keys.decisions(channel))
            replies = await pipe.execute()
        for entries in replies:
            at = [int(str(entry_id).split("-")[0]) for entry_id, _ in entries]
            late += [(b - a) / 1000 - DECISION_INTERVAL_S for a, b in itertools.pairwise(at)]
    return late


async def orchestrator_run(url: str, count: int) -> OrchestratorRun:
    """One replica, ``count`` live channels, ``ORCH_RUN_S`` seconds of decisions."""
    channels = [f"o{n:05d}" for n in range(count)]
    settings = OrchestratorSettings(_env_file=None, redis_url=url, channels=channels)
    redis = connect(url)
    stop = asyncio.Event()
    try:
        await redis.flushdb()
        await go_live(redis, settings, channels)
        clocks = asyncio.create_task(move_clocks(redis, settings, channels, stop))
        port = free_port()
        try:
            with tempfile.TemporaryDirectory() as state_dir:
                env = orchestrator_env(url, port, channels, state_dir)
                command = [sys.executable, "-m", "services.orchestrator"]
                async with child(*command, env=env) as replica:
                    await wait_healthy(f"http://127.0.0.1:{port}", within_s=60)
                    cpu_before, began = proc_cpu_s(replica.pid), time.perf_counter()
                    await asyncio.sleep(ORCH_RUN_S)
                    cpu = proc_cpu_s(replica.pid) - cpu_before
                    share = cpu / (time.perf_counter() - began)
        finally:
            stop.set()
            await clocks
        late = sorted(await lateness(redis, settings, channels))
        decided = 0
        for start in range(0, count, 500):
            async with redis.pipeline(transaction=False) as pipe:
                for channel in channels[start : start + 500]:
                    pipe.xlen(settings.keys.decisions(channel))
                decided += sum(1 for n in await pipe.execute() if n)
    finally:
        await redis.flushdb()
        await redis.aclose()
    if not late:
        return OrchestratorRun(count, decided, 0, *(float("nan"),) * 3, share)
    p50, p99 = percentile(late, 0.5), percentile(late, 0.99)
    return OrchestratorRun(count, decided, len(late), p50, p99, late[-1], share)


async def measure_orchestrator(url: str) -> list[OrchestratorRun]:
    """Runs at growing channel counts; stops after the first that misses the aim."""
    runs = []
    for count in ORCH_CHANNELS:
        runs.append(await orchestrator_run(url, count))
        if not runs[-1].met:
            break
    return runs


def orchestrator_rows(runs: list[OrchestratorRun]) -> list[str]:
    """The orchestrator table and its verdict."""
    best = max((r.channels for r in runs if r.met), default=0)
    verdict = "met" if best >= CHANNELS_AIM else "NOT met"
    return [
        f"One orchestrator replica, `DECISION_INTERVAL_S={DECISION_INTERVAL_S:g}` (default 30; "
        f"shorter so that {ORCH_RUN_S:g} s give each channel several gaps), "
        "`LOOP_INTERVAL_S=0.25` (default), bandit only (no Claude), every channel live and its "
        "event-time clock moved with the wall clock by the benchmark (ZADD, 4 times a second). "
        "Lateness: gap between a channel's consecutive decisions (their stream entry ids, "
        "wall-clock ms) less the interval (the slot restarts at the decision, so this is each "
        "decision's delay). The clock's 0.25 s steps and the 0.25 s look alone make up to "
        "about 0.5 s of it. Counts grow until one misses the aim.",
        "",
        "| channels | decided | gaps | late p50 s | late p99 s | late max s | replica CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r.channels:,} | {r.decided:,} | {r.gaps:,} | {r.late_p50_s:.2f} "
            f"| {r.late_p99_s:.2f} | {r.late_max_s:.2f} | {r.cpu_share:.0%} |"
            for r in runs
        ),
        "",
        f"Channels per replica with every channel decided and the p99 within {LATE_AIM_S:g} s "
        f"of the interval: **{best:,}** (aim {CHANNELS_AIM:,}: **{verdict}**). A look costs "
        "one script call per partition (which held channels moved on: lifecycle count and "
        "clock), leases are renewed every third of the TTL in one call per partition, and only "
        "channels due get a tick (at most `TICK_CONCURRENCY` at once): a decision is four "
        "round trips (lifecycle read, slot claim, bandit draw, record) and a fifth to publish "
        "a switch. Several replicas share channels through the same leases.",
    ]
