"""Leases: each unit of work (a channel, a partition) is worked by one replica at a time.

A lease is one string key holding its replica, with a TTL; the holder renews it
(only while it still holds it, checked atomically in a script, one call per hash
tag for many leases) well within the TTL. When a holder dies its leases expire and
other replicas take the work within the TTL. Replicas of a group heartbeat into
one sorted set (replica -> Redis server time in ms) and each holds at most its fair
share, ceil(units / live replicas), giving back any excess, so work spreads over the
replicas and moves back when one joins.

On Redis Cluster every lease is its own key and the replicas set is one key, so
every command and script here touches one slot. The heartbeat (add, drop the
dead, count the live) is one Lua script rather than a MULTI: a cluster MULTI
costs about 0.3 ms per queued command and blocks the event loop (docs/cluster.md).
Its clock is the server's (``TIME``), so replicas with skewed clocks still agree
on who is live.

:class:`Leases` is generic over the unit: the orchestrator leases channels
(``services.orchestrator.lease``), analytics leases partitions
(:class:`shared.partition_leases.PartitionLeaseKeeper`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

from redis.asyncio import Redis

from shared.slot_groups import group_by_tag, per_group

Unit = TypeVar("Unit")

HOLD_MANY = """
local held = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = 1
  elseif not holder then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""
"""Renew each lease ``KEYS[i]`` held by ``ARGV[1]``, take each free one (TTL ``ARGV[2]``
ms); 1 or 0 per key: held now or not (all keys of one slot)."""
RELEASE_MANY = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then released = released + redis.call('DEL', key) end
end
return released
"""
HEARTBEAT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""
"""Heartbeat ``ARGV[1]`` into replicas set ``KEYS[1]``, drop replicas silent for
``ARGV[2]`` ms, return how many are live (one script: atomic, one round trip, one slot)."""


class Leases(Generic[Unit]):
    """Takes, keeps and gives back the leases of one replica of a group."""

    def __init__(
        self,
        redis: Redis,
        lease_key: Callable[[Unit], str],
        replicas_key: str,
        replica: str,
        ttl_ms: int,
    ) -> None:
        self.redis = redis
        self.lease_key = lease_key
        self.replicas_key = replicas_key
        self.replica = replica
        self.ttl_ms = ttl_ms
        self._heartbeat = redis.register_script(HEARTBEAT)
        self._hold_many = redis.register_script(HOLD_MANY)
        self._release_many = redis.register_script(RELEASE_MANY)

    async def hold(self, unit: Unit) -> bool:
        """Keep the lease if this replica has it, else take it if free; True when held."""
        return unit in await self.hold_many([unit])

    async def release(self, unit: Unit) -> None:
        """Give the lease back (only if still ours), so another replica takes over at once."""
        await self.release_many([unit])

    async def hold_many(self, units: list[Unit]) -> set[Unit]:
        """:meth:`hold` on every unit, one script call per slot (see
        :mod:`shared.slot_groups`); the units held now."""

        async def hold_group(group: list[Unit]) -> list[Unit]:
            keys = [self.lease_key(unit) for unit in group]
            flags = await self._hold_many(keys=keys, args=[self.replica, self.ttl_ms])
            return [unit for unit, flag in zip(group, flags, strict=True) if int(flag)]

        replies = await per_group(group_by_tag(units, self.lease_key), hold_group)
        return {unit for held in replies for unit in held}

    async def release_many(self, units: list[Unit]) -> None:
        """:meth:`release` on every unit, one script call per slot."""

        async def release_group(group: list[Unit]) -> None:
            keys = [self.lease_key(unit) for unit in group]
            await self._release_many(keys=keys, args=[self.replica])

        await per_group(group_by_tag(units, self.lease_key), release_group)

    async def live_replicas(self) -> int:
        """Heartbeat, then how many replicas are live (heartbeat younger than the TTL)."""
        return int(
            await self._heartbeat(keys=[self.replicas_key], args=[self.replica, self.ttl_ms])
        )

    async def fair_share(self, units: int) -> int:
        """Heartbeat, then how many of ``units`` this replica should hold: ceil(units / live)."""
        return fair_share(units, await self.live_replicas())

    async def leave(self) -> None:
        """Stop counting as a live replica (on shutdown)."""
        await self.redis.zrem(self.replicas_key, self.replica)

    async def holder(self, unit: Unit) -> str | None:
        """Which replica holds ``unit`` now, if any."""
        holder = await self.redis.get(self.lease_key(unit))
        return None if holder is None else str(holder)


def fair_share(units: int, live: int) -> int:
    """ceil(units / live), at least 1: a replica always takes work when some is free."""
    return max(1, math.ceil(units / max(1, live)))
