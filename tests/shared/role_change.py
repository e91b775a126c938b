"""Turning a real Redis master into a replica and back, as a failover does to the old master.

``REPLICAOF`` makes the server answer every client blocked in XREAD / XREADGROUP
with ``UNBLOCKED ... instance state changed (master -> replica?)`` and close its
connection; the replica's master is a free port nothing listens on, so its data stays
as it was, and ``REPLICAOF NO ONE`` makes it the master again.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.redis_server import free_port


async def blocked_clients(admin: Redis) -> int:
    """Clients the server holds in a blocking command now."""
    info = await admin.info("clients")
    return int(info["blocked_clients"])


async def until_blocked(admin: Redis, count: int = 1, within_s: float = 10.0) -> None:
    """Wait until at least ``count`` clients are blocked."""
    async with asyncio.timeout(within_s):
        while await blocked_clients(admin) < count:
            await asyncio.sleep(0.01)


async def turn_replica_and_back(url: str) -> None:
    """Make the server at ``url`` a replica (its blocked clients get ``UNBLOCKED``),
    wait until it holds no blocked client, then make it a master again."""
    admin = Redis.from_url(url, decode_responses=True)
    try:
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        async with asyncio.timeout(10):
            while await blocked_clients(admin):
                await asyncio.sleep(0.01)
        await admin.execute_command("REPLICAOF", "NO", "ONE")
    finally:
        await admin.aclose()
