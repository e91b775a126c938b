"""What every analytics replica pushes to its own clients.

* every ``BROADCAST_INTERVAL_S``: recompute the figures of each channel in a
  partition this replica holds (``partitions()``, from the lease keeper: the
  replica that applies a channel's events computes its figures; the write is
  compare-and-set, so an overlap during a lease move is harmless) whose state
  moved since this replica last computed it, several at once
  (``services.analytics.figures_round``), then send ``stream_state`` +
  ``metrics_update`` of **every** channel with clients here, read from its
  ``metrics:`` hash (one pipeline for them all), whoever computed it;
* each donation or bits cheer: ``donation`` then ``revenue_point``, pushed from a
  plain XREAD tail of ``events:{pNN}:donation`` (not the consumer group), so every
  replica sees every donation and a client gets the same messages whichever
  replica it reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import Redis

from services.analytics import messages
from services.analytics.figures_round import FiguresRound, RoundOutcome
from services.analytics.handler import member, ts_ms
from services.analytics.hub import Hub
from services.analytics.metrics import MetricsComputer, local_day_ms
from services.analytics.settings import AnalyticsSettings
from shared.clock import from_epoch_ms
from shared.events import BitsEvent, DonationEvent, parse_fields
from shared.keys import Stream
from shared.readmodel.donations import recent_donations
from shared.readmodel.paid_sums import paid_sums, paid_sums_and_newest
from shared.redis_client import CONNECTION_ERRORS
from shared.waiting import wait_or_stop

log = logging.getLogger("services.analytics.broadcaster")
HISTORY_POINTS = 500
FIGURES_ROUND = Histogram(
    "streamloop_figures_round_seconds",
    "One figures round: recompute the held partitions' changed channels, push to watched ones.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FIGURES_CHANNELS = Gauge(
    "streamloop_figures_round_channels", "Channels recomputed in the last figures round."
)
FIGURES_OUTCOMES = Counter(
    "streamloop_figures_channels_total",
    "Held channels a figures round went through: recomputed, unchanged (state had not "
    "moved: skipped) or failed (logged, tried again next round).",
    ["outcome"],
)


class Broadcaster:
    """Periodic figures and instant donation pushes for one replica's clients."""

    def __init__(
        self,
        redis: Redis,
        settings: AnalyticsSettings,
        hub: Hub,
        computer: MetricsComputer,
        partitions: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = settings.keys
        self.hub = hub
        self.computer = computer
        self.zone = ZoneInfo(settings.timezone)
        self.partitions = partitions or settings.partitioning.all
        self.by_partition = settings.partitioning.channels_by_partition(settings.channels)
        self.figures = FiguresRound(redis, self.keys, computer)

    async def run_ticks(self, stop: asyncio.Event) -> None:
        """Recompute and broadcast every interval until ``stop``; survive Redis outages."""
        while True:
            try:
                await self.tick()
            except CONNECTION_ERRORS as error:
                log.warning("broadcast skipped, Redis unreachable: %s", error)
            except Exception:
                log.exception("broadcast round failed; trying again next interval")
            if await wait_or_stop(stop, self.settings.broadcast_interval_s):
                return

    async def tick(self) -> None:
        """One round: the held partitions' changed channels recomputed, watched ones sent."""
        with FIGURES_ROUND.time():
            outcome = await self.figures.run(self.channels_of(self.partitions()))
            await self.push_figures()
        count_round(outcome)

    def channels_of(self, partitions: Iterable[int]) -> list[str]:
        """The configured channels in ``partitions``."""
        return [c for p in sorted(set(partitions)) for c in self.by_partition.get(p, [])]

    async def push_figures(self) -> None:
        """``stream_state`` and ``metrics_update`` to every channel with clients here."""
        watched = [c for c in self.settings.channels if self.hub.has_clients(c)]
        if not watched:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in watched:
                pipe.hgetall(self.keys.metrics(channel))
            replies = await pipe.execute()
        for channel, figures in zip(watched, replies, strict=True):
            for frame in figures_frames(figures):
                self.hub.publish(channel, frame)

    async def snapshot_frames(self, channel: str) -> list[str]:
        """``stream_state`` and ``metrics_update`` from the channel's metrics hash."""
        figures: dict[str, str] = await self.redis.hgetall(self.keys.metrics(channel))  # type: ignore[assignment]
        return figures_frames(figures)

    async def recent_donation_frames(self, channel: str) -> list[str]:
        """The channel's latest donations and cheers as ``donation`` frames, oldest first."""
        limit = self.settings.dashboard_recent_donations
        recent = await recent_donations(self.redis, self.keys, channel, limit)
        return [messages.encode(messages.paid_event(event)) for event in reversed(recent)]

    async def revenue_history(self, channel: str) -> list[str]:
        """Today's ``revenue_point`` frames (last ``HISTORY_POINTS``), for a new client's chart.

        One script: the day's totals and its latest records, so the running total of
        the first point shown is the day's total less those records, not a read of them all.
        """
        keys = self.keys.analytics(channel)
        now = await self.redis.zscore(keys.clock, "now")
        if now is None:
            return []
        day_start, _ = local_day_ms(int(now), self.zone)
        sums, newest = await paid_sums_and_newest(
            self.redis, keys, day_start, int(now) + 1, HISTORY_POINTS
        )
        records = [json.loads(raw) for raw in newest]
        return revenue_points(records, sums.cents - sum(int(r["cents"]) for r in records))

    async def run_donations(self, stop: asyncio.Event) -> None:
        """Tail the donation stream of every partition holding a configured channel.

        One blocking reader per partition: a multi-key XREAD cannot span the slots
        of a Redis Cluster, and one reader per partition pushes each donation as
        soon as it lands.
        """
        partitions = self.keys.partitions.channels_by_partition(self.settings.channels)
        async with asyncio.TaskGroup() as readers:
            for partition in sorted(partitions):
                stream = self.keys.stream(Stream.DONATION, partition)
                readers.create_task(self._tail_donations(stream, stop))

    async def _tail_donations(self, stream: str, stop: asyncio.Event) -> None:
        """Tail ``stream`` from its end and push each donation as it lands.

        Where it started is kept across an outage, so a donation that lands while
        Redis is away (or before the first read) is pushed when it is back.
        """
        last_id: str | None = None
        while not stop.is_set():
            try:
                if last_id is None:
                    last_id = await self._last_id(stream)
                last_id = await self._push_new(stream, last_id)
            except CONNECTION_ERRORS as error:
                log.warning("donation tail paused, Redis unreachable: %s", error)
                await wait_or_stop(stop, 1.0)

    async def _push_new(self, stream: str, last_id: str) -> str:
        """Push the donations after ``last_id`` (waiting up to 0.5 s); the new last id."""
        reply: Any = await self.redis.xread({stream: last_id}, count=100, block=500)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                await self._push_or_skip(stream, entry_id, fields)
                last_id = entry_id
        return last_id

    async def _push_or_skip(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        """Push one entry; one that fails for any reason but Redis is logged and skipped.

        The feed only mirrors the stream to the dashboard: the analytics consumer
        group is what counts (or dead-letters) the entry, so skipping loses nothing.
        """
        try:
            await self.push_donation(fields)
        except CONNECTION_ERRORS:
            raise
        except Exception as error:
            log.warning("donation feed skipped %s %s: %r", stream, entry_id, error)

    async def push_donation(self, fields: dict[str, str]) -> None:
        """``donation`` then ``revenue_point`` to the event's channel (bad entries skipped)."""
        try:
            event = parse_fields(fields)
        except pydantic.ValidationError:
            return  # the consumer group dead-letters it with the reason
        if not isinstance(event, DonationEvent | BitsEvent) or not self.hub.has_clients(
            event.channel
        ):
            return
        amount = float(event.amount or 0)
        cumulative = await self.revenue_through(event) + amount
        self.hub.publish(event.channel, messages.encode(messages.donation(event)))
        self.hub.publish(
            event.channel, messages.encode(messages.revenue_point(event.ts, amount, cumulative))
        )

    async def revenue_through(self, event: DonationEvent | BitsEvent) -> float:
        """USD earned on the event's local day up to its ``ts``, not counting the event itself.

        From the per-minute totals (``shared.readmodel.paid_sums``): the cost follows the minutes
        of the day so far, not its donations.
        """
        at = ts_ms(event)
        day_start, _ = local_day_ms(at, self.zone)
        keys = self.keys.analytics(event.channel)
        sums = await paid_sums(self.redis, keys, day_start, at + 1, exclude=member(event))
        return sums.cents / 100

    async def _last_id(self, stream: str) -> str:
        newest = await self.redis.xrevrange(stream, count=1)
        return str(newest[0][0]) if newest else "0-0"


def figures_frames(figures: dict[str, str]) -> list[str]:
    """The ``stream_state`` and ``metrics_update`` frames of a channel's metrics hash."""
    return [
        messages.encode(messages.stream_state(figures)),
        messages.encode(messages.metrics_update(figures)),
    ]


def count_round(outcome: RoundOutcome) -> None:
    """The round's channels in ``streamloop_figures_round_channels`` and the outcome counts."""
    FIGURES_CHANNELS.set(outcome.recomputed)
    FIGURES_OUTCOMES.labels("recomputed").inc(outcome.recomputed)
    FIGURES_OUTCOMES.labels("unchanged").inc(outcome.unchanged)
    FIGURES_OUTCOMES.labels("failed").inc(outcome.failed)


def revenue_points(records: list[dict[str, Any]], before_cents: int) -> list[str]:
    """``revenue_point`` frames of paid ``records`` (time order), ``before_cents`` earned before."""
    points, total = [], before_cents
    for record in records:
        total += record["cents"]
        at = from_epoch_ms(record["ts"])
        points.append(
            messages.encode(messages.revenue_point(at, record["cents"] / 100, total / 100))
        )
    return points
