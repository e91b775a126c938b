"""The simulator source: runs the audience model live and publishes its events to Redis.

For each configured channel, :class:`SimSource` runs one simulated broadcast on a
simulated clock that starts at ``start`` and advances ``SIM_TICK_S`` per step
(the model is :mod:`services.ingest.sources.audience`); every event's ``ts`` is
read off that clock, so consumers cannot tell a 240x run from a live stream. The
activity on air is learnt from ``activity_changed`` on ``events:{pNN}:lifecycle``,
through one :class:`~services.ingest.sources.activity_follower.ActivityFollower` (one
per partition on a Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from services.ingest.sources.activity_follower import ActivityFollower
from services.ingest.sources.audience import (
    channel_rng,
    closing_event,
    new_state,
    opening_events,
    step,
    switch_activity,
)
from services.ingest.sources.recording import stream_entries
from services.ingest.sources.scenario import Scenario, scenario_from_setting
from shared.clock import as_utc, utc_now
from shared.events import ActivityChangedEvent, EventBase
from shared.keys import Stream
from shared.logs import channel_context
from shared.money import CurrencyError
from shared.publisher import Publisher, PublishResult
from shared.reconnect import until_connected

log = logging.getLogger("services.ingest.sim")

T = TypeVar("T")

BATCH_REAL_S = 0.1
"""Real seconds of simulation published per call: at high speed one call covers many steps."""
ATTEMPTS_AFTER_STOP = 3
"""Attempts left for a publish once ``stop`` is set, so shutdown never hangs on Redis."""


def missing_rates(scenario: Scenario, rates_usd: dict[str, Decimal]) -> list[str]:
    """Currencies the scenario tips in that have no ``FX_RATES_USD`` rate."""
    wanted = {"USD", *scenario.donation_currency_weights}
    return sorted(code for code in wanted if code not in rates_usd)


def steps_per_batch(speed: float, tick_s: float) -> int:
    """Steps published together: ``BATCH_REAL_S`` of real time's worth, at least one."""
    return max(1, int(BATCH_REAL_S * speed / tick_s))


class SimSource:
    """Runs one simulated broadcast per channel in ``settings.channels`` and publishes it.

    ``start`` fixes the simulated clock's origin (default: now); ``scenario``
    overrides ``SIM_SCENARIO_PATH``. Raises :class:`shared.money.CurrencyError` at
    construction when the scenario tips in a currency without an FX rate.
    """

    def __init__(
        self,
        redis: Redis,
        settings: IngestSettings,
        publisher: Publisher,
        start: datetime | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.publisher = publisher
        self.start = start
        self.scenario = scenario or scenario_from_setting(settings.sim_scenario_path)
        missing = missing_rates(self.scenario, settings.fx_rates_usd)
        if missing:
            raise CurrencyError(f"no FX_RATES_USD rate for scenario currencies {missing}")

    async def run(self, stop: asyncio.Event) -> None:
        """Simulate every channel until ``stop`` is set or ``SIM_DURATION_S`` has passed.

        Each broadcast opens with ``stream_started`` and closes with ``stream_ended``.
        """
        start = as_utc(self.start or utc_now())
        keys, channels = self.settings.keys, self.settings.channels
        lifecycles = [
            keys.stream(Stream.LIFECYCLE, p)
            for p in keys.partitions.channels_by_partition(channels)
        ]
        cursors = await until_connected(
            lambda: asyncio.gather(*(_stream_end(self.redis, key) for key in lifecycles)),
            _unreachable,
            stop=stop,
            attempts_once_stopped=ATTEMPTS_AFTER_STOP,
        )
        runs = {channel: _ChannelRun(self, channel, start) for channel in channels}

        def listen(event: ActivityChangedEvent) -> None:
            if event.channel in runs:
                runs[event.channel].apply(event)

        starts = dict(zip(lifecycles, cursors or ["0-0"] * len(lifecycles), strict=True))
        one_node = isinstance(self.redis, Redis)  # a cluster client cannot XREAD across slots
        groups = [starts] if one_node else [{key: start} for key, start in starts.items()]
        followers = [ActivityFollower(self.redis, group, listen) for group in groups]
        done = asyncio.Event()

        async def broadcasts() -> None:
            try:
                await asyncio.gather(*(run.run(stop) for run in runs.values()))
            finally:
                done.set()

        await asyncio.gather(broadcasts(), *(follower.run(done) for follower in followers))


class _ChannelRun:
    """One channel's broadcast: pacing, following the lifecycle stream, publishing."""

    def __init__(self, source: SimSource, channel: str, start: datetime) -> None:
        settings = source.settings
        self.redis = source.redis
        self.publisher = source.publisher
        self.settings = settings
        self.rng = channel_rng(settings.sim_seed, channel)
        self.state = new_state(source.scenario, settings, channel, start, self.rng)
        self.totals = PublishResult()

    async def run(self, stop: asyncio.Event) -> None:
        with channel_context(self.state.channel):
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        state = self.state
        log.info(
            "simulated stream %s started (activity %s, seed %d, %gx speed, %s)",
            state.stream_id, state.activity, self.settings.sim_seed, self.settings.sim_speed,
            _duration_text(self.settings.sim_duration_s),
        )  # fmt: skip
        await self._publish(opening_events(state), stop)
        await self._broadcast(stop)
        await self._publish([closing_event(state)], stop)
        log.info(
            "simulated stream %s ended after %.0f simulated s: %d events published, "
            "%d duplicates",
            state.stream_id, state.elapsed_s, self.totals.published, len(self.totals.duplicates),
        )  # fmt: skip

    async def _broadcast(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        speed = self.settings.sim_speed
        per_batch = steps_per_batch(speed, self.settings.sim_tick_s)
        while not stop.is_set() and not self._finished():
            batch = self._advance(per_batch)
            await _sleep_unless(stop, began + self.state.elapsed_s / speed - loop.time())
            await self._publish(batch, stop)

    def _advance(self, steps: int) -> list[EventBase]:
        events: list[EventBase] = []
        for _ in range(steps):
            if self._finished():
                break
            events += step(self.state, self.rng, self._next_dt())
        return events

    def _finished(self) -> bool:
        duration_s = self.settings.sim_duration_s
        return duration_s > 0 and self.state.elapsed_s >= duration_s - 1e-9

    def _next_dt(self) -> float:
        tick_s = self.settings.sim_tick_s
        duration_s = self.settings.sim_duration_s
        return tick_s if duration_s == 0 else min(tick_s, duration_s - self.state.elapsed_s)

    def apply(self, event: ActivityChangedEvent) -> None:
        """Switch activity on this broadcast's own ``activity_changed`` (not another stream's)."""
        if event.channel == self.state.channel and event.stream_id == self.state.stream_id:
            switch_activity(self.state, event.activity)

    async def _publish(self, events: list[EventBase], stop: asyncio.Event) -> None:
        if not events:
            return

        async def publish() -> PublishResult:
            return await self.publisher.publish_many(events)

        result = await self._retry(publish, stop, f"publishing {len(events)} events")
        if result is not None:
            self.totals.entry_ids += result.entry_ids
            self.totals.duplicates += result.duplicates

    async def _retry(
        self, action: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str
    ) -> T | None:
        """``action()``, retried with capped backoff while Redis is unreachable.

        Retries until it succeeds; once ``stop`` is set only a few more attempts are
        made, then the work is dropped (``None``) with an error in the log.
        """

        def unreachable(error: Exception, delay_s: float) -> None:
            log.warning("%s failed, Redis unreachable (%s); retry in %.1f s", what, error, delay_s)

        def give_up(error: Exception) -> None:
            log.error("gave up %s: Redis unreachable (%s)", what, error)

        return await until_connected(
            action,
            unreachable,
            stop=stop,
            attempts_once_stopped=ATTEMPTS_AFTER_STOP,
            on_give_up=give_up,
        )


async def _stream_end(redis: Redis, key: str) -> str:
    """The id of the last entry of stream ``key`` ("0-0" when empty): where following starts."""
    last = await redis.xrevrange(key, count=1)
    return stream_entries([[key, last]])[0][1] if last else "0-0"


def _unreachable(error: Exception, delay_s: float) -> None:
    log.warning("reading events:lifecycle failed, Redis unreachable (%s); retry in %.1f s",
                error, delay_s)  # fmt: skip


def _duration_text(duration_s: float) -> str:
    return f"{duration_s:g} simulated s" if duration_s else "until stopped"


async def _sleep_unless(stop: asyncio.Event, delay_s: float) -> None:
    """Sleep ``delay_s`` seconds (nothing if not positive), waking early if ``stop`` is set."""
    if delay_s <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
