"""``make bench`` section ``history``: what a channel's past costs each look, save and hour.

Three readings, each on its own embedded ``redis-server`` (or temp folder):

* **Lifecycle reads**: one channel with a live stream and about 10 or about 1,000
  lifecycle entries (old streams of three entries each before it). Timed: the
  figures recompute (analytics), a decision tick (the orchestrator, its clock moved
  30 s on between ticks, not timed), the latest stream's timeline and an old stream's
  timeline (retro's read), and, for contrast, reading the whole lifecycle as every
  one of them did before (``read_lifecycle`` + ``stream_state``). Goal: 1,000 entries
  within 1.5x of 10.
* **Bandit backup per scored segment**: saving one channel's bandit when the backup
  holds 1,000 or 5,000 channels, per channel file (now) and single file (the merge
  earlier versions did: read every channel, rewrite them all).
* **Redis memory per channel per streamed hour**: the simulator's default scenario
  streamed for two hours of event time (figures recomputed every simulated minute,
  as analytics does), ``MEMORY USAGE`` of every key of the channel (``memory.py``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from redis.asyncio import Redis

from services.analytics.handler import apply_events
from services.analytics.metrics import MetricsComputer, Windows
from services.orchestrator.app import build_loop
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import ChannelSnapshot, StateFile, read_state, write_channel
from shared.bandit.backup import replace_atomically
from shared.bandit.state import ArmSnapshot, Priors
from shared.events import (
    ActivityChangedEvent,
    EventBase,
    StreamEndedEvent,
    StreamStartedEvent,
    ViewerCountEvent,
)
from shared.keys import Keys
from shared.readmodel.lifecycle import read_lifecycle, stream_state, timeline
from shared.redis_client import connect
from shared.redis_server import RedisServer
from tools.benchmarks.history_memory import memory_section

START = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)
OLD_STREAMS = {"about 10": 3, "about 1,000": 333}
ROUNDS = 300
BACKUP_CHANNELS = (1_000, 5_000)
BACKUP_SAVES = 40
GOAL_RATIO = 1.5
WARM_UP = 20
"""Decision ticks not counted: the first ones load scripts and score the opening segment."""


def history(channel: str, old: int) -> list[EventBase]:
    """``old`` ended streams (start, activity, end), then a live stream with its activity."""
    c = {"channel": channel, "source": "sim"}
    events: list[EventBase] = []
    for k in range(old):
        at = START + timedelta(hours=k)
        sid = f"old{k}"
        events += [
            StreamStartedEvent(**c, id=f"s{k}", stream_id=sid, ts=at),
            ActivityChangedEvent(**c, id=f"a{k}", stream_id=sid, activity="talk", ts=at),
            StreamEndedEvent(**c, id=f"e{k}", stream_id=sid, ts=at + timedelta(minutes=40)),
        ]
    live = START + timedelta(hours=old + 1)
    events += [
        StreamStartedEvent(**c, id="s-live", stream_id="live", ts=live),
        ActivityChangedEvent(**c, id="a-live", stream_id="live", activity="talk", ts=live),
        ViewerCountEvent(**c, id="v-live", count=120, ts=live),
    ]
    return events


async def timed(action: Callable[[], Awaitable[object]], rounds: int = ROUNDS) -> float:
    """Median ms of ``rounds`` runs of ``action`` (after two untimed warm-up runs)."""
    for _ in range(2):
        await action()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def whole_read(redis: Redis, keys: Keys, channel: str) -> None:
    """The read every lifecycle reader made before: the whole set, folded."""
    _, pairs = await read_lifecycle(redis, keys.analytics(channel))
    stream_state(pairs)


async def lifecycle_costs(url: str, state_dir: str) -> dict[str, dict[str, float]]:
    """Median ms of each read, by history size."""
    channels = {label: f"h{old}" for label, old in OLD_STREAMS.items()}
    redis = connect(url)
    settings = OrchestratorSettings(
        _env_file=None,
        redis_url=url,
        replica_id="bench",
        channels=list(channels.values()),
        bandit_state_path=f"{state_dir}/bandit.json",
    )
    keys = settings.keys
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=settings.activities, timeout_s=1, max_retries=0
    )
    loop = build_loop(redis, settings, advisor, rng=np.random.default_rng(1))
    figures = MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC"))
    costs: dict[str, dict[str, float]] = {}
    for label, channel in channels.items():
        old = OLD_STREAMS[label]
        await apply_events(redis, keys, history(channel, old))
        samples: list[float] = []
        at = START + timedelta(hours=old + 1)
        for n in range(ROUNDS):  # each tick decides: the clock moved 30 s on (not timed)
            at += timedelta(seconds=30)
            viewers = ViewerCountEvent(channel=channel, source="sim", id=f"v{n}", count=120, ts=at)
            await apply_events(redis, keys, [viewers])
            started = time.perf_counter()
            await loop.tick(channel)
            samples.append((time.perf_counter() - started) * 1000)
        entries = await redis.zcard(keys.analytics(channel).lifecycle)
        tick = statistics.median(samples[WARM_UP:])
        costs[label] = {"entries": float(entries), "decision tick": tick}
        costs[label] |= await read_costs(redis, keys, figures, channel)
    await redis.aclose()
    return costs


async def read_costs(
    redis: Redis, keys: Keys, figures: MetricsComputer, channel: str
) -> dict[str, float]:
    """Median ms of the other reads of ``channel``'s lifecycle."""

    async def recompute() -> None:
        await figures.recompute(channel)

    async def latest() -> None:
        await timeline(redis, keys, channel)

    async def old() -> None:
        await timeline(redis, keys, channel, "old1")

    async def whole() -> None:
        await whole_read(redis, keys, channel)

    return {
        "figures recompute": await timed(recompute),
        "latest timeline": await timed(latest),
        "old stream's timeline": await timed(old),
        "whole lifecycle read (before)": await timed(whole),
    }


def snapshot(n: int) -> ChannelSnapshot:
    """A plausible channel snapshot (five arms)."""
    arms = {
        arm: ArmSnapshot(alpha=1.0 + n % 7, beta=2.0, updates=n % 11)
        for arm in ("talk", "gameplay", "q_and_a", "music", "giveaway")
    }
    return ChannelSnapshot(
        arms=arms,
        priors=Priors(alpha=1.0, beta=1.0),
        discount=1.0,
        saved_at="2026-01-05T18:00:00.000Z",
    )


def single_file_save(path: Path, channel: str, entry: ChannelSnapshot) -> None:
    """The save of earlier versions: read every channel's file, set one, rewrite it whole."""
    state = read_state(path)
    state.channels[channel] = entry
    replace_atomically(path, state.model_dump_json(indent=2) + "\n")


def backup_costs(channels: int) -> tuple[float, float]:
    """Median ms of one save: per channel file, and into one file of every channel."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bandit_state.json"
        own = path.with_suffix("")
        own.mkdir()
        for n in range(channels):  # setup: no fsync, nothing timed
            one = StateFile(channels={f"c{n}": snapshot(n)})
            (own / f"c{n}.json").write_text(one.model_dump_json(indent=2) + "\n")
        every = StateFile(channels={f"c{n}": snapshot(n) for n in range(channels)})
        path.write_text(every.model_dump_json(indent=2) + "\n")
        per_channel, single = [], []
        for k in range(BACKUP_SAVES):
            started = time.perf_counter()
            write_channel(path, f"c{k}", snapshot(k + 1))
            per_channel.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            single_file_save(path, f"c{k}", snapshot(k + 1))
            single.append((time.perf_counter() - started) * 1000)
        return statistics.median(per_channel), statistics.median(single)


def lifecycle_table(costs: dict[str, dict[str, float]]) -> list[str]:
    """The lifecycle table with its ratios and the verdict."""
    small, large = (costs[label] for label in OLD_STREAMS)
    rows = [
        f"| read | {int(small['entries'])} entries, ms | {int(large['entries']):,} entries, ms "
        "| ratio |",
        "|---|---:|---:|---:|",
    ]
    worst = 0.0
    for name in small:
        if name == "entries":
            continue
        ratio = large[name] / small[name]
        if "before" not in name:
            worst = max(worst, ratio)
        rows.append(f"| {name} | {small[name]:.2f} | {large[name]:.2f} | {ratio:.2f}x |")
    verdict = "met" if worst <= GOAL_RATIO else "NOT met"
    rows += [
        "",
        f"Goal: every read at 1,000 entries within {GOAL_RATIO}x of 10: **{verdict}** "
        f"(worst {worst:.2f}x; the whole-lifecycle row is the read they all made before, "
        "for contrast).",
    ]
    return rows


def bench_history() -> str:
    """The ``history`` section's Markdown body."""
    server = RedisServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as state_dir:
            costs = asyncio.run(lifecycle_costs(server.url, state_dir))
        memory = memory_section(server.url)
    finally:
        server.close()
    backup = {channels: backup_costs(channels) for channels in BACKUP_CHANNELS}
    lines = [
        "### Lifecycle reads: 10 vs 1,000 entries",
        "",
        "One channel, a live stream after old streams of three entries each (start, "
        f"activity, end); median of {ROUNDS} runs:",
        "",
        *lifecycle_table(costs),
        "",
        "### Bandit backup: one save per scored segment",
        "",
        "Median of "
        f"{BACKUP_SAVES} saves of one channel (fsync included), the backup holding every "
        "channel:",
        "",
        "| channels | per channel file, ms | single file (before), ms |",
        "|---:|---:|---:|",
        *(f"| {c:,} | {own:.2f} | {single:.1f} |" for c, (own, single) in backup.items()),
        "",
        "### Redis memory per channel per streamed hour",
        "",
        memory,
    ]
    return "\n".join(lines)
