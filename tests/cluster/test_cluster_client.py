"""REDIS_CLUSTER: the shared client talks to a real Redis Cluster through any one node.

Also what the partitioned layout relies on, on the real cluster: a MULTI (with
WATCH), a Lua script and a five-stream XREADGROUP all work on keys of one hash
tag, and fail with CROSSSLOT (or redis-py's refusal) on keys without one.
"""

from __future__ import annotations

import pytest
from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError, WatchError

from shared.redis_client import connect_settings
from shared.redis_cluster_server import LocalCluster
from shared.settings import BaseServiceSettings

KINDS = ("chat", "donation", "sub", "viewers", "lifecycle")


async def test_redis_cluster_setting_connects_the_cluster_client_through_any_node(
    redis_cluster: LocalCluster, key_prefix: str
) -> None:
    replica = next(n for n in redis_cluster.topology() if not n.is_master)
    settings = BaseServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=f"redis://{replica.address}/0",
        redis_cluster=True,
    )
    client = connect_settings(settings)
    try:
        assert isinstance(client, RedisCluster)
        await client.set(f"{key_prefix}greeting", "héllo")
        assert await client.get(f"{key_prefix}greeting") == "héllo"  # decoded, from the master
        await client.delete(f"{key_prefix}greeting")
    finally:
        await client.aclose()


async def test_without_redis_cluster_the_client_is_a_plain_one(redis_url: str) -> None:
    client = connect_settings(BaseServiceSettings(_env_file=None, redis_url=redis_url))  # type: ignore[call-arg]
    try:
        assert not isinstance(client, RedisCluster)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_keys_written_through_one_node_land_on_every_master(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    for n in range(300):
        await cluster_client.set(f"{key_prefix}{n}", n)
    per_master = {}
    for master in redis_cluster.masters():
        node = redis_cluster.node(master.address).client()
        try:
            per_master[master.address] = len(list(node.scan_iter(match=f"{key_prefix}*")))
        finally:
            node.close()
    assert len(per_master) == 3
    assert all(count > 0 for count in per_master.values()), per_master
    assert sum(per_master.values()) == 300


async def test_a_transaction_on_one_tag_commits_and_its_watch_still_fences(
    cluster_client: RedisCluster, key_prefix: str
) -> None:
    fence, state = f"{key_prefix}{{p07}}:fence", f"{key_prefix}{{p07}}:state"
    async with cluster_client.pipeline(transaction=True) as tx:
        await tx.watch(fence)
        tx.multi()
        tx.hincrby(state, "events", 2)
        tx.incr(f"{key_prefix}{{p07}}:version")
        assert await tx.execute() == [2, 1]

    async with cluster_client.pipeline(transaction=True) as tx:
        await tx.watch(fence)
        await cluster_client.incr(fence)  # another consumer claims meanwhile
        tx.multi()
        tx.hincrby(state, "events", 2)
        with pytest.raises(WatchError):
            await tx.execute()
    assert await cluster_client.hget(state, "events") == "2"


async def test_a_transaction_over_two_tags_is_refused(
    cluster_client: RedisCluster, key_prefix: str
) -> None:
    async with cluster_client.pipeline(transaction=True) as tx:
        tx.incr(f"{key_prefix}{{p01}}:a")
        tx.incr(f"{key_prefix}{{p02}}:a")
        with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
            await tx.execute()


async def test_a_script_on_keys_of_one_tag_runs_and_across_tags_is_refused(
    cluster_client: RedisCluster, key_prefix: str
) -> None:
    script = cluster_client.register_script(
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"
    )
    same = [f"{key_prefix}{{p07}}:a", f"{key_prefix}{{p07}}:b"]
    assert await script(keys=same, args=["x"]) == 1
    assert await cluster_client.get(same[0]) == "x"
    apart = [f"{key_prefix}a", f"{key_prefix}b"]
    with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
        await script(keys=apart, args=["x"])


async def test_one_xreadgroup_reads_five_streams_of_one_tag_and_not_untagged_ones(
    cluster_client: RedisCluster, key_prefix: str
) -> None:
    streams = [f"{key_prefix}events:{{p07}}:{kind}" for kind in KINDS]
    for stream in streams:
        await cluster_client.xgroup_create(stream, "analytics", id="0", mkstream=True)
        await cluster_client.xadd(stream, {"kind": stream})
    reply = await cluster_client.xreadgroup(
        "analytics", "c1", dict.fromkeys(streams, ">"), count=10, block=100
    )
    assert sorted(name for name, _ in reply) == sorted(streams)

    untagged = [f"{key_prefix}events:{kind}" for kind in KINDS]
    for stream in untagged:
        await cluster_client.xgroup_create(stream, "analytics", id="0", mkstream=True)
    with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
        await cluster_client.xreadgroup("analytics", "c1", dict.fromkeys(untagged, ">"), count=10)
