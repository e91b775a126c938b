"""``make bench`` section ``orchestrator-decision``: one decision's overhead without the model.

A live channel on an embedded Redis; each round moves its event-time clock 30 s
on (not timed) and times one ``DecisionLoop.tick``: scoring ready segments,
claiming the slot, reading the timeline and figures, the bandit's draw, recording
the decision and publishing ``activity_changed`` on a switch. Claude is off
(no key), so this is everything but the model call.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from redis.asyncio import Redis

from services.analytics.handler import apply_events
from services.orchestrator.app import build_loop
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.settings import OrchestratorSettings
from shared.events import (
    ActivityChangedEvent,
    ChatEvent,
    EventBase,
    StreamStartedEvent,
    ViewerCountEvent,
    parse_fields,
)
from shared.redis_client import connect
from shared.redis_server import RedisServer

STREAMS = 4
ROUNDS_PER_STREAM = 480  # a four-hour stream, one decision every 30 s
START = datetime(2026, 2, 27, 18, 0, tzinfo=UTC)


async def apply(redis: Redis, settings: OrchestratorSettings, events: list[EventBase]) -> None:
    """Write events into analytics' state with its own handler."""
    await apply_events(redis, settings.keys, events)


async def follow_lifecycle(redis: Redis, settings: OrchestratorSettings, after: str) -> str:
    """Apply the decisions' ``activity_changed`` to analytics' state, as its consumer would."""
    stream = settings.keys.channel_stream("lifecycle", "demo")
    entries = await redis.xrange(stream, min=f"({after}")
    if entries:
        await apply(redis, settings, [parse_fields(fields or {}) for _, fields in entries])
    return str(entries[-1][0]) if entries else after


def half_minute(n: int) -> list[EventBase]:
    """Half a minute of audience: a viewer count and some chat."""
    at = START + timedelta(seconds=30 * n)
    chat = [
        ChatEvent(
            channel="demo",
            source="sim",
            id=f"c{n}-{k}",
            user=f"u{k}",
            text="hi",
            ts=at - timedelta(seconds=k),
        )
        for k in range(10)
    ]
    return [ViewerCountEvent(channel="demo", source="sim", id=f"v{n}", count=120, ts=at), *chat]


async def measure(url: str, state_dir: str) -> tuple[list[float], list[float]]:
    """Tick timings (ms): decisions alone, and decisions that also scored a segment."""
    redis = connect(url)
    settings = OrchestratorSettings(
        _env_file=None,
        redis_url=url,
        replica_id="bench",
        bandit_state_path=f"{state_dir}/bandit.json",
    )
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=settings.activities, timeout_s=1, max_retries=0
    )
    loop = build_loop(redis, settings, advisor, rng=np.random.default_rng(1))
    assert loop.scorer is not None
    plain: list[float] = []
    scoring: list[float] = []
    seen = "0-0"
    for stream in range(STREAMS):
        first = stream * ROUNDS_PER_STREAM
        c = {"channel": "demo", "source": "sim", "ts": START + timedelta(seconds=30 * first)}
        await apply(
            redis,
            settings,
            [
                StreamStartedEvent(**c, id=f"s{stream}", stream_id=f"bench{stream}"),
                ActivityChangedEvent(
                    **c, id=f"a{stream}", stream_id=f"bench{stream}", activity="talk"
                ),
            ],
        )
        for n in range(first + 1, first + ROUNDS_PER_STREAM + 1):
            await apply(redis, settings, half_minute(n))
            scored, started = loop.scorer.scored, time.perf_counter()
            await loop.tick("demo")
            elapsed = (time.perf_counter() - started) * 1000
            (scoring if loop.scorer.scored > scored else plain).append(elapsed)
            seen = await follow_lifecycle(redis, settings, seen)
    await redis.aclose()
    return plain, scoring


def bench_decision() -> str:
    """p50/p99/max of a decision's overhead, as a Markdown section."""
    server = RedisServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as state_dir:
            plain, scoring = asyncio.run(measure(server.url, state_dir))
    finally:
        server.close()
    verdict = "met" if percentile(plain, 99) < 5 else "NOT met"
    return "\n".join(
        [
            f"{STREAMS} simulated four-hour streams, one decision every 30 s of event time "
            f"({STREAMS * ROUNDS_PER_STREAM:,} decisions), Claude off (no key), bandit on:",
            "",
            "| tick | count | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|",
            row("decision only", plain),
            row("decision + scoring the segment that just ended", scoring),
            row("all", plain + scoring),
            "",
            f"Aim p99 under 5 ms for a decision: **{verdict}**. Scoring a segment reads its "
            "figures and the stream's baseline from the raw analytics state, updates the bandit "
            "and saves the JSON backup to disk; it happens once per segment.",
        ]
    )


def percentile(values: list[float], pct: int) -> float:
    """The ``pct``-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def row(label: str, values: list[float]) -> str:
    """One table row of timings."""
    return (
        f"| {label} | {len(values)} | {statistics.median(values):.2f} | "
        f"{percentile(values, 99):.2f} | {max(values):.2f} |"
    )
