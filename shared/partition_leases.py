"""A replica's fair share of a group's partitions, held through leases (:mod:`shared.leases`).

Replicas of one consumer group (analytics) split the partitions between them:
partition ``p`` is worked by the replica holding ``keys.partition_lease(group, p)``.
Every round (a third of the TTL) the :class:`PartitionLeaseKeeper` heartbeats into
``keys.replicas(group)``, renews the leases it holds (dropping any it lost), gives
back leases beyond its fair share ceil(partitions / live replicas), and takes free
ones up to that share. The shares of the live replicas add up to at least the
number of partitions, so every partition is held by someone; a dead replica's
leases expire and the others take them within the TTL.

It leases **all** partitions, not only those holding configured channels: junk or
unconfigured channels' entries must still be read and dead-lettered (or counted) by
someone, and the partitions of a channel list are not known to every replica alike.

:meth:`PartitionLeaseKeeper.held` is what :class:`shared.partitioned_consumer.PartitionedConsumer`
asks for its ``partitions``: a runner runs exactly for the partitions held.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import zlib
from collections.abc import Callable

from prometheus_client import Gauge
from redis.asyncio import Redis

from shared.keys import Keys
from shared.leases import Leases
from shared.redis_client import CONNECTION_ERRORS
from shared.waiting import wait_or_stop

log = logging.getLogger(__name__)

HELD = Gauge("streamloop_partitions_held", "Partitions whose lease this replica holds.", ["group"])


class PartitionLeaseKeeper:
    """Holds this replica's fair share of ``group``'s partitions (see module doc)."""

    def __init__(self, redis: Redis, keys: Keys, group: str, replica: str, ttl_ms: int) -> None:
        self.group = group
        self.count = keys.partitions.count
        self.leases: Leases[int] = Leases(
            redis,
            functools.partial(keys.partition_lease, group),
            keys.replicas(group),
            replica,
            ttl_ms,
        )
        self.interval_s = ttl_ms / 3000
        """Renewal interval: a third of the TTL, so two missed rounds still keep a lease."""
        self._held: set[int] = set()
        self._last_renewed = time.monotonic()
        self.taken = 0
        """Leases taken so far (at start, from dead replicas, or given back by others)."""
        self.given_back = 0
        """Leases given back as excess over the fair share."""
        self._listeners: list[Callable[[], None]] = []
        self.held_at_stop: list[int] = []
        """The partitions held when :meth:`give_back_all` ran (for a last recompute)."""

    @property
    def replica(self) -> str:
        """This replica's name in the leases."""
        return self.leases.replica

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the held partitions change (e.g. to wake the consumer)."""
        self._listeners.append(listener)

    def held(self) -> list[int]:
        """The partitions this replica holds now, in order."""
        return sorted(self._held)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the fair share every ``interval_s`` until ``stop``; then give every lease back.

        While Redis is unreachable the leases cannot be renewed: once the last renewal
        is older than the TTL they may be someone else's, so this replica stops
        working them (``held`` empties) until it holds them again.
        """
        try:
            while True:
                try:
                    await self.round()
                    self._last_renewed = time.monotonic()
                except CONNECTION_ERRORS as error:
                    log.warning("%s: cannot reach Redis to renew leases: %s", self.group, error)
                    if time.monotonic() - self._last_renewed > self.leases.ttl_ms / 1000:
                        self._set_held(set())
                if await wait_or_stop(stop, self.interval_s):
                    break
        finally:
            await self.give_back_all()

    async def round(self) -> None:
        """Heartbeat, renew, give back the excess, take free partitions up to the fair share."""
        share = await self.leases.fair_share(self.count)
        held = await self.leases.hold_many(sorted(self._held))  # one call per partition's slot
        for partition in sorted(self._held - held):
            log.warning("%s: lost partition %d's lease to another replica", self.group, partition)
        order = self._preference()
        excess = [p for p in reversed(order) if p in held][: max(0, len(held) - share)]
        if excess:
            held -= set(excess)  # stop working them before another replica takes them
            self._set_held(held)
            await self.leases.release_many(excess)
            self.given_back += len(excess)
        free = [p for p in order if p not in held]
        while len(held) < share and free:
            tried, free = free[: share - len(held)], free[share - len(held) :]
            taken = await self.leases.hold_many(tried)
            held |= taken
            self.taken += len(taken)
        if held != self._held:
            log.info(
                "%s: %s holds %d of %d partitions (fair share %d)",
                self.group,
                self.replica,
                len(held),
                self.count,
                share,
            )
        self._set_held(held)

    async def give_back_all(self) -> None:
        """Release every lease and leave the replicas set (on shutdown; Redis may be gone)."""
        held = self.held_at_stop = sorted(self._held)
        self._set_held(set())
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.leases.release_many(held)
            await self.leases.leave()

    def _preference(self) -> list[int]:
        """Every partition, starting at an offset of this replica's own, so replicas
        starting together reach for different partitions first."""
        offset = zlib.crc32(self.replica.encode()) % self.count
        return [(offset + n) % self.count for n in range(self.count)]

    def _set_held(self, held: set[int]) -> None:
        changed = held != self._held
        self._held = set(held)
        HELD.labels(self.group).set(len(held))
        if changed:
            for listener in self._listeners:
                listener()
