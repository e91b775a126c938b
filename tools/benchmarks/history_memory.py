"""Redis memory per channel per streamed hour (``make bench`` section ``history``).

The simulator's default scenario (``services.ingest.sources.audience``) streams one
channel for ``HOURS`` hours of event time, its audience held at the scenario's
opening 120 viewers and at ten times that; every simulated minute its events are
written by analytics' own handler and the figures recomputed (which trims the
trailing windows, as the service does). After each hour, ``MEMORY USAGE ... SAMPLES
0`` (exact) of every key of the channel.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from services.analytics.handler import apply_events
from services.analytics.metrics import MetricsComputer, Windows
from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import channel_rng, new_state, opening_events, step
from services.ingest.sources.scenario import default_scenario
from shared.keys import Keys
from shared.redis_client import connect

HOURS = 2
AUDIENCES = (1, 10)
"""Multiples of the default scenario's audience (120 viewers at the start)."""
START = datetime(2026, 1, 12, 18, 0, tzinfo=UTC)


async def channel_bytes(redis: Redis, keys: Keys, channel: str) -> dict[str, int]:
    """Exact ``MEMORY USAGE`` of every raw-state key of ``channel`` and its figures."""
    names = [*keys.analytics(channel).all(), keys.metrics(channel)]
    sizes: dict[str, int] = {}
    for name in names:
        used = await redis.memory_usage(name, samples=0)
        if used:
            sizes[name.rsplit(":", 1)[-1] if name != keys.metrics(channel) else "metrics"] = used
    return sizes


COUNTED = {
    "chat_per_s": "HLEN",
    "chatter_minutes": "ZCARD",
    "paid_data": "HLEN",
    "viewers": "ZCARD",
    "lifecycle": "ZCARD",
}
"""The keys that grow with streamed time, and how their members are counted."""


async def members(redis: Redis, keys: Keys, channel: str) -> dict[str, int]:
    """Members (fields) of each key of :data:`COUNTED`."""
    raw = keys.analytics(channel)
    counts: dict[str, int] = {}
    for name, command in COUNTED.items():
        key = getattr(raw, name)
        counts[name] = await (redis.hlen(key) if command == "HLEN" else redis.zcard(key))
    return counts


Run = tuple[list[int], Counter[str], dict[str, int], dict[str, int], float]
"""Bytes after each hour (hour 0: before), events by type, bytes and members by key at
the end, mean viewers."""


async def stream_hours(url: str, scale: int) -> Run:
    """Stream ``HOURS`` hours at ``scale`` times the default audience (see :data:`Run`)."""
    redis = connect(url)
    keys = Keys(f"mem{scale}:")
    channel = "demo"
    rng = channel_rng(7, channel)
    state = new_state(default_scenario(), IngestSettings(_env_file=None), channel, START, rng)
    audience = state.viewers * scale
    figures = MetricsComputer(redis, keys, Windows(60_000, 300_000), ZoneInfo("UTC"))
    await apply_events(redis, keys, opening_events(state))
    kinds: Counter[str] = Counter()
    viewers: list[float] = []
    totals = [sum((await channel_bytes(redis, keys, channel)).values())]
    for _ in range(HOURS):
        for _ in range(60):
            events = []
            for _ in range(60):
                state.viewers = audience  # held, not drifting back to the scenario's level
                viewers.append(state.viewers)
                events += step(state, rng, 1.0)
            kinds.update(event.type for event in events)
            await apply_events(redis, keys, events)
            await figures.recompute(channel)
        totals.append(sum((await channel_bytes(redis, keys, channel)).values()))
    by_key = await channel_bytes(redis, keys, channel)
    counts = await members(redis, keys, channel)
    await redis.aclose()
    return totals, kinds, by_key, counts, sum(viewers) / len(viewers)


def memory_section(url: str) -> str:
    """The memory part of the section: bytes per streamed hour, by audience and by key."""
    runs = {scale: asyncio.run(stream_hours(url, scale)) for scale in AUDIENCES}
    lines = [
        f"The default scenario streamed {HOURS} h of event time; exact `MEMORY USAGE` of "
        "the channel's keys:",
        "",
        "| audience | events per hour | chat per hour | paid per hour | KB per streamed hour "
        "| KB per streamed minute | bytes per event |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for totals, kinds, _, _, mean_viewers in runs.values():
        per_hour = (totals[-1] - totals[0]) / HOURS
        events = sum(kinds.values()) / HOURS
        paid = sum(kinds[k] for k in ("donation", "bits", "sub", "resub", "gift")) / HOURS
        lines.append(
            f"| {mean_viewers:,.0f} viewers | {events:,.0f} | {kinds['chat'] / HOURS:,.0f} | "
            f"{paid:,.0f} | {per_hour / 1024:,.0f} | {per_hour / 60 / 1024:.1f} | "
            f"{per_hour / max(events, 1):.0f} |"
        )
    _, _, by_key, counts, mean_viewers = runs[AUDIENCES[-1]]
    lines += [
        "",
        f"By key after {HOURS} h at {mean_viewers:,.0f} viewers (KB): "
        + ", ".join(
            f"`{name}` {size / 1024:,.0f}"
            for name, size in sorted(by_key.items(), key=lambda item: -item[1])
        )
        + ". Bytes per member (field) of the keys that grow with streamed time: "
        + ", ".join(
            f"`{name}` {by_key.get(name, 0) / count:.0f} ({count:,} members)"
            for name, count in counts.items()
            if count
        )
        + ".",
    ]
    return "\n".join(lines)
