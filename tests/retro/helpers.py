"""Shared pieces of the retro tests: settings, handing events to the real handler, runners."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from services.retro.handler import GROUP, RetroHandler
from services.retro.settings import RetroSettings
from shared.clock import epoch_ms
from shared.consumer import Delivery
from shared.events import EventBase, StreamEndedEvent
from shared.keys import Stream
from shared.partitioned_consumer import PartitionedConsumer
from tests.analytics.streams import START

START_MS = epoch_ms(START)


def ms(seconds: float) -> int:
    """Epoch ms of ``seconds`` after START."""
    return START_MS + round(seconds * 1000)


def retro_settings(
    make_settings: Callable[..., Any], tmp_path: Path, **overrides: Any
) -> RetroSettings:
    """Retro settings on the test's Redis and prefix, files under ``tmp_path``.

    One reward per segment with the plain Beta update (``SCORE_CHUNKS`` off,
    ``BANDIT_REWARD_SD`` 0.5) and the segment's own revenue rate
    (``REWARD_REVENUE_PRIOR_S`` 0), so the reports' figures are worked out per segment; chunked
    scoring, exactly once, is tested in ``tests/retro/test_chunks.py``.
    """
    values: dict[str, Any] = {
        "score_chunks": False,
        "bandit_reward_sd": 0.5,
        "reward_revenue_prior_s": 0.0,
        "consumer_name": "r1",
        "consumer_block_ms": 1000,  # a stop ends a blocking read at once: see ConsumerRunner.run
        "min_segment_s": 60,
        "retro_dir": str(tmp_path / "retros"),
        "bandit_state_path": str(tmp_path / "bandit.json"),
        "retro_catchup_timeout_s": 2.0,
    }
    values.update(overrides)
    settings: RetroSettings = make_settings(RetroSettings, **values)
    return settings


async def hand(redis: Redis, handler: RetroHandler, events: Sequence[EventBase]) -> None:
    """Give ``events`` to the real handler and commit its effects, as the runner would.

    Their entry ids are "now", like those of entries just published.
    """
    entry_id = f"{time.time_ns() // 1_000_000}-0"
    async with redis.pipeline(transaction=True) as tx:
        await handler.handle([Delivery(e.stream, entry_id, e) for e in events], tx)
        await tx.execute()


def end_of(events: Sequence[EventBase], stream_id: str) -> StreamEndedEvent:
    """The ``stream_ended`` of ``stream_id`` among ``events``."""
    return next(e for e in events if isinstance(e, StreamEndedEvent) and e.stream_id == stream_id)


@contextlib.asynccontextmanager
async def running(
    redis: Redis, settings: RetroSettings, handler: RetroHandler | None = None
) -> AsyncIterator[tuple[PartitionedConsumer, RetroHandler, io.StringIO]]:
    """The real retro consumer on every partition's lifecycle stream while inside; stdout
    goes to a buffer."""
    out = io.StringIO()
    handler = handler or RetroHandler(redis, settings, out=out)
    handler.store.out = out if settings.retro_print else None
    runner = PartitionedConsumer(redis, settings, GROUP, handler, streams=[Stream.LIFECYCLE])
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, handler, out
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def until(condition: Callable[[], Any], within: float = 10.0) -> None:
    """Wait until ``condition()`` (sync or async) is true, or fail after ``within`` s."""
    async with asyncio.timeout(within):
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.02)


def logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def reward(
    engagement: float, per_hour: float, base_engagement: float, base_per_hour: float
) -> float:
    """The reward formula of docs/bandit.md, written out again for the expected values."""
    return 0.7 * logistic((engagement - base_engagement) / 10) + 0.3 * logistic(
        math.log((per_hour + 1) / (base_per_hour + 1))
    )
