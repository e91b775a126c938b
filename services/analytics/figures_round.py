"""The figures part of a round: recompute the channels whose raw state moved, several at once.

A channel's figures derive only from its raw state, in its own event time (the
clock's ``now``; ``services.analytics.metrics``): no figure reads the wall clock.
Every applied event bumps the channel's ``version`` (INCRBY) in the same
transaction that moves its clock, so while ``(version, now)`` stays the same the
figures do too. A round reads that pair for every channel it is given, in one
non-transactional pipeline (on a Redis Cluster, redis-py's cluster pipeline sends
each node its own commands), and recomputes only the channels whose pair differs
from the one this replica saw before its last recompute of them. The clock is
compared as well as the version because the clock alone can be moved from outside
the handler (a benchmark driving event time does), and a version can start again
after the raw state expired; the window trimming inside the snapshot follows
``now``, so it never changes a figure on its own.

The pairs are kept in memory, per replica: a fresh replica (a restart, which is
also how settings change) recomputes every channel once; a replica that takes a
partition over recomputes each of its channels that changed since it last
computed them, or that it never computed. The pair recorded is the one read
*before* the recompute, so events landing in between make the next round
recompute again rather than skip. A channel without state yet (no version) has no
figures to compute.

Recomputes run :data:`RECOMPUTE_CONCURRENCY` at a time, so their round trips
overlap; each keeps its compare-and-set write on the version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from services.analytics.metrics import MetricsComputer
from shared.keys import Keys
from shared.redis_client import CONNECTION_ERRORS

log = logging.getLogger("services.analytics.figures_round")

RECOMPUTE_CONCURRENCY = 16
"""Channels recomputed at once. Each recompute is two round trips (the snapshot script,
the compare-and-set write) with a little Python between; 16 in flight keep Redis busy
while one replica's Python derives the figures (measured in ``make bench`` section
``scale``: going from 16 to 64 did not shorten a round), and stay far below
``REDIS_MAX_CONNECTIONS``."""

Stamp = tuple[str | None, float | None]
"""A channel's ``(version, clock now)`` as Redis returns them; ``(None, None)`` without state."""


@dataclass(frozen=True)
class RoundOutcome:
    """What one figures round did with the channels it was given."""

    recomputed: int
    unchanged: int
    failed: int


class FiguresRound:
    """Recomputes the figures of the channels whose state moved since this replica did."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        computer: MetricsComputer,
        concurrency: int = RECOMPUTE_CONCURRENCY,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.computer = computer
        self.concurrency = concurrency
        self._seen: dict[str, Stamp] = {}

    async def run(self, channels: Sequence[str]) -> RoundOutcome:
        """Recompute those of ``channels`` whose state moved; one that fails is logged and
        tried again next round, a Redis outage ends the round (raised)."""
        stamps = await self.stamps(channels)
        due = [c for c in channels if stamps[c][0] is not None and stamps[c] != self._seen.get(c)]
        failed = await self._recompute_all(due, stamps)
        return RoundOutcome(len(due) - failed, len(channels) - len(due), failed)

    async def stamps(self, channels: Sequence[str]) -> dict[str, Stamp]:
        """``(version, clock now)`` of each of ``channels``, in one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                keys = self.keys.analytics(channel)
                pipe.get(keys.version)
                pipe.zscore(keys.clock, "now")
            replies = await pipe.execute()
        return {
            channel: (version, now)
            for channel, version, now in zip(channels, replies[::2], replies[1::2], strict=True)
        }

    async def _recompute_all(self, channels: list[str], stamps: dict[str, Stamp]) -> int:
        """Recompute ``channels``, ``concurrency`` at a time; how many failed."""
        pending = iter(channels)
        failures = [0]

        async def worker() -> None:
            for channel in pending:  # one shared iterator: each channel goes to one worker
                if not await self._recompute(channel, stamps[channel]):
                    failures[0] += 1

        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(min(self.concurrency, len(channels))):
                    workers.create_task(worker())
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None  # a Redis outage: the caller backs off
        return failures[0]

    async def _recompute(self, channel: str, stamp: Stamp) -> bool:
        """Recompute one channel and remember ``stamp``; False (logged) if it failed."""
        try:
            await self.computer.recompute(channel)
        except CONNECTION_ERRORS:
            raise
        except Exception:
            log.exception("%s: figures not recomputed; trying again next round", channel)
            return False
        self._seen[channel] = stamp
        return True
