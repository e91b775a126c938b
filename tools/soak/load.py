"""The soak's load: every channel's live broadcast, built by the simulator, at a steady rate.

A realistic mix (the simulator's own event makers and the default scenario's relative
rates), a viewer count every ``viewer_count_interval_s``, paced per ``TICK_S`` tick with
every ``ts`` off the wall clock; the orchestrator's activity changes switch the mix.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import (
    ChannelState,
    channel_rng,
    closing_event,
    make_chat,
    make_cheer,
    make_donation,
    make_follow,
    make_gift,
    make_resub,
    make_sub,
    new_state,
    opening_events,
    switch_activity,
    ts_within,
)
from services.ingest.sources.recording import stream_entries
from services.ingest.sources.scenario import Scenario, default_scenario
from shared.clock import utc_now
from shared.events import EventBase, ViewerCountEvent
from shared.keys import Stream
from shared.publisher import Publisher
from shared.settings import BaseServiceSettings

TICK_S = 0.1
CHANNELS = ("alpha", "bravo", "charlie")
CHANNEL_SHARES = {1: (1.0,), 2: (0.7, 0.3), 3: (0.6, 0.3, 0.1)}
SEED = 42
MAX_CATCH_UP_S = 1.0
"""A late tick publishes what was due, but at most this many seconds' worth at once."""
Maker = Callable[[ChannelState, np.random.Generator, datetime], EventBase]
MAKERS: tuple[tuple[str, Maker], ...] = (
    ("chat_msgs", make_chat),
    ("donations", make_donation),
    ("cheers", make_cheer),
    ("subs", make_sub),
    ("resubs", make_resub),
    ("gifts", make_gift),
    ("follows", make_follow),
)
"""Each maker with the ``{name}_per_min_per_100_viewers`` rate that weighs it."""


class ChannelLoad:
    """One channel's live broadcast at a fixed share of the rate, built by the simulator."""

    def __init__(
        self, channel: str, rate: float, start: datetime, scenario: Scenario, seed: int
    ) -> None:
        self.rate = rate
        self.rng = channel_rng(seed, channel)
        self.state = new_state(scenario, IngestSettings(_env_file=None), channel, start, self.rng)
        self.sent = 0
        self.viewer_counts = 0
        self._mix: tuple[str, list[Maker], np.ndarray[Any, np.dtype[np.float64]], float] | None
        self._mix = None

    def mix(self) -> tuple[list[Maker], np.ndarray[Any, np.dtype[np.float64]], float]:
        """Makers, their probabilities, and events per minute per 100 viewers, for the activity."""
        if self._mix is None or self._mix[0] != self.state.activity:
            behaviour = self.state.behaviour
            rates = [getattr(behaviour, f"{name}_per_min_per_100_viewers") for name, _ in MAKERS]
            total = float(sum(rates))
            probabilities = np.asarray(rates, dtype=np.float64) / total
            self._mix = (self.state.activity, [make for _, make in MAKERS], probabilities, total)
        _, makers, probabilities, total = self._mix
        return makers, probabilities, total

    @property
    def viewers(self) -> float:
        """The audience that would produce ``rate`` events/s with the activity's habits."""
        _, _, per_min_per_100 = self.mix()
        return self.rate * 60 * 100 / per_min_per_100

    def opening(self) -> list[EventBase]:
        """``stream_started`` and the initial ``activity_changed``."""
        return opening_events(self.state)

    def closing(self, elapsed_s: float) -> EventBase:
        """``stream_ended`` at ``elapsed_s``."""
        self.state.elapsed_s = elapsed_s
        return closing_event(self.state)

    def tick(self, elapsed_s: float) -> list[EventBase]:
        """The events due between the previous tick and ``elapsed_s``, with ids, by ``ts``."""
        state = self.state
        due = int(self.rate * elapsed_s) - self.sent
        due = min(due, int(self.rate * MAX_CATCH_UP_S))
        dt_s = max(elapsed_s - state.elapsed_s, 1e-3)
        state.viewers = self.viewers
        events: list[EventBase] = []
        interval_s = state.scenario.viewer_count_interval_s
        while self.viewer_counts * interval_s <= elapsed_s and due > len(events):
            count = round(state.viewers * (1 + 0.01 * float(self.rng.standard_normal())))
            events.append(
                ViewerCountEvent(
                    id="pending",
                    channel=state.channel,
                    ts=ts_within(state, self.rng, dt_s),
                    source="sim",
                    count=max(0, count),
                )
            )
            self.viewer_counts += 1
        makers, probabilities, _ = self.mix()
        picks = self.rng.choice(len(makers), size=max(0, due - len(events)), p=probabilities)
        for pick in picks:
            events.append(makers[pick](state, self.rng, ts_within(state, self.rng, dt_s)))
        state.elapsed_s = elapsed_s
        events.sort(key=lambda event: event.ts)
        self.sent += len(events)
        return [event.model_copy(update={"id": state.next_id()}) for event in events]


@dataclass
class LoadTotals:
    """What the load generator published."""

    published: int = 0
    duplicates: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    late_ticks: int = 0
    activity_switches: int = 0


class Load:
    """Publishes every channel's events at the asked rate until stopped."""

    def __init__(
        self, redis: Redis, settings: BaseServiceSettings, rate: float, channels: Sequence[str]
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.publisher = Publisher(redis, settings, batch_size=500)
        self.start = utc_now()
        shares = CHANNEL_SHARES[len(channels)]
        scenario = default_scenario()
        self.channels = {
            name: ChannelLoad(name, rate * share, self.start, scenario, SEED)
            for name, share in zip(channels, shares, strict=True)
        }
        self.totals = LoadTotals()
        keys = settings.keys
        self.cursors = {  # the lifecycle stream of each partition holding a channel
            keys.stream(Stream.LIFECYCLE, p): "0-0"
            for p in keys.partitions.channels_by_partition(list(channels))
        }
        self.began = 0.0

    def elapsed_s(self) -> float:
        """Seconds since the load began (monotonic clock)."""
        return time.monotonic() - self.began

    async def publish(self, events: list[EventBase]) -> None:
        """Publish ``events`` and count them."""
        if not events:
            return
        result = await self.publisher.publish_many(events)
        self.totals.published += result.published
        self.totals.duplicates += len(result.duplicates)
        self.totals.by_type.update(event.type for event in events)

    async def run(self, stop: asyncio.Event) -> None:
        """Open every channel, then publish each tick's events until ``stop``.

        Ticks are counted from ``began`` (set it just before; now if it is not set).
        """
        self.began = self.began or time.monotonic()
        await self.publish([e for load in self.channels.values() for e in load.opening()])
        tick = 0
        while not stop.is_set():
            tick += 1
            delay = self.began + tick * TICK_S - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            else:
                self.totals.late_ticks += 1
            await self.follow_activity()
            elapsed = self.elapsed_s()
            await self.publish([e for load in self.channels.values() for e in load.tick(elapsed)])

    async def close(self) -> None:
        """Publish every channel's ``stream_ended``, now."""
        elapsed = self.elapsed_s()
        await self.publish([load.closing(elapsed) for load in self.channels.values()])

    async def follow_activity(self) -> None:
        """Switch a channel's mix when the orchestrator changed its activity.

        One XREAD per partition of the channels (a multi-key XREAD cannot span the
        slots of several partitions on Redis Cluster).
        """
        entries = []
        for key, cursor in self.cursors.items():
            entries += stream_entries(await self.redis.xread({key: cursor}, count=1000))
        for stream, entry_id, fields in entries:
            self.cursors[stream] = entry_id
            load = self.channels.get(str(fields.get("channel", "")))
            if (
                load is not None
                and fields.get("type") == "activity_changed"
                and switch_activity(load.state, str(fields.get("activity", "")))
            ):
                self.totals.activity_switches += 1
