"""A blocking read cut short by its server turning replica is a connection error.

When a master becomes a replica (a manual ``CLUSTER FAILOVER``, a failed master
coming back, a managed failover behind one address) Redis answers every blocked
XREAD / XREADGROUP with ``UNBLOCKED``: the clients ``shared.redis_client`` makes raise
``RoleChanged``, one of ``CONNECTION_ERRORS``, which every worker backs off on.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from shared.redis_client import CONNECTION_ERRORS, RoleChanged, connect
from shared.redis_server import RedisServer
from tests.shared.role_change import turn_replica_and_back, until_blocked


async def test_a_blocking_read_cut_short_by_a_role_change_raises_a_connection_error(
    restartable_redis: RedisServer,
) -> None:
    url = restartable_redis.url
    client = connect(url)
    admin = Redis.from_url(url)
    try:
        read = asyncio.create_task(client.xread({"roles:stream": "$"}, block=20_000))
        await until_blocked(admin)
        await turn_replica_and_back(url)
        with pytest.raises(CONNECTION_ERRORS) as raised:
            await read
        assert await client.xadd("roles:stream", {"after": "1"})  # a master again
    finally:
        await client.aclose()
        await admin.aclose()
    assert isinstance(raised.value, RoleChanged)
    assert "UNBLOCKED" in str(raised.value)


async def test_other_error_replies_keep_their_own_type(redis: Redis, key_prefix: str) -> None:
    await redis.set(f"{key_prefix}text", "x")
    with pytest.raises(Exception) as raised:
        await redis.xread({f"{key_prefix}text": "0"}, block=10)
    assert "WRONGTYPE" in str(raised.value)
    assert not isinstance(raised.value, CONNECTION_ERRORS)
