"""Per-channel leases: each channel is decided by exactly one orchestrator replica at a time.

A thin use of :mod:`shared.leases`: the lease of a channel is
``keys.orchestrator_lease(channel)`` (``SET NX PX``, renewed while held), the
replicas heartbeat into ``keys.orchestrator_replicas()``, and each holds at most
its fair share, ceil(channels / live replicas), giving back any excess, so
channels spread over the replicas and move back when one joins. A dead holder's
channels move within ``LEASE_TTL_MS``.
"""

from __future__ import annotations

from redis.asyncio import Redis

from shared.keys import Keys
from shared.leases import Leases


class ChannelLeases(Leases[str]):
    """Takes, keeps and gives back channel leases for one orchestrator replica."""

    def __init__(self, redis: Redis, keys: Keys, replica: str, ttl_ms: int) -> None:
        super().__init__(
            redis, keys.orchestrator_lease, keys.orchestrator_replicas(), replica, ttl_ms
        )
        self.keys = keys
