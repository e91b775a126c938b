"""Per-channel leases: each channel is decided by exactly one orchestrator replica at a time.

A lease is ``SET orchestrator:lease:{channel} <replica> NX PX <ttl>``; the holder
renews it (only while it still holds it, checked atomically) well within the
TTL. When a holder dies its lease expires and another replica takes the channel
within ``LEASE_TTL_MS``. Replicas heartbeat into one sorted set and each holds at
most its fair share, ceil(channels / live replicas), giving back any excess, so
channels spread over the replicas and move back when one joins.
"""

from __future__ import annotations

import math
import time

from redis.asyncio import Redis

from shared.keys import Keys

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ChannelLeases:
    """Takes, keeps and gives back channel leases for one replica."""

    def __init__(self, redis: Redis, keys: Keys, replica: str, ttl_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.replica = replica
        self.ttl_ms = ttl_ms
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    async def hold(self, channel: str) -> bool:
        """Keep the lease if this replica has it, else take it if free; True when held."""
        key = self.keys.orchestrator_lease(channel)
        if await self._renew(keys=[key], args=[self.replica, self.ttl_ms]):
            return True
        return bool(await self.redis.set(key, self.replica, nx=True, px=self.ttl_ms))

    async def release(self, channel: str) -> None:
        """Give the lease back (only if still ours), so another replica takes over at once."""
        await self._release(keys=[self.keys.orchestrator_lease(channel)], args=[self.replica])

    async def fair_share(self, channels: int) -> int:
        """Heartbeat, then how many channels this replica should hold: ceil(channels / live).

        A replica is live while its heartbeat is younger than the lease TTL.
        """
        key, now_ms = self.keys.orchestrator_replicas(), int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as tx:
            tx.zadd(key, {self.replica: now_ms})
            tx.zremrangebyscore(key, "-inf", now_ms - self.ttl_ms)
            tx.zcard(key)
            live = (await tx.execute())[-1]
        return max(1, math.ceil(channels / max(1, int(live))))

    async def leave(self) -> None:
        """Stop counting as a live replica (on shutdown)."""
        await self.redis.zrem(self.keys.orchestrator_replicas(), self.replica)

    async def holder(self, channel: str) -> str | None:
        """Which replica holds ``channel`` now, if any."""
        holder = await self.redis.get(self.keys.orchestrator_lease(channel))
        return None if holder is None else str(holder)
