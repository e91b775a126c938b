"""The local cluster itself, and a master killed under a cluster client.

Each test takes a cluster of its own (``fresh_cluster``) since it kills nodes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.redis_client import CONNECTION_ERRORS, connect_cluster
from shared.redis_cluster_server import LocalCluster, local_cluster


def test_the_cluster_has_three_masters_covering_every_slot_each_with_a_replica(
    fresh_cluster: LocalCluster,
) -> None:
    masters = fresh_cluster.masters()
    assert len(masters) == 3
    covered = sum(last - first + 1 for m in masters for first, last in m.slots)
    assert covered == 16384
    replicas = [n for n in fresh_cluster.topology() if not n.is_master]
    assert sorted(r.master_id for r in replicas) == sorted(m.node_id for m in masters)


def test_a_started_cluster_has_every_replica_in_sync_before_anyone_writes(
    fresh_cluster: LocalCluster,
) -> None:
    """Right after ``redis-cli --cluster create`` every node is still a master; a test that
    writes, then kills a master before its replica synced, loses the master's slots' data."""
    replication = [node.replication() for node in fresh_cluster.nodes]
    replicas = [info for info in replication if info.get("role") == "slave"]
    assert len(replicas) == 3
    assert all(info["master_link_status"] == "up" for info in replicas)
    assert not any(info["master_sync_in_progress"] for info in replicas)


async def test_a_killed_master_is_replaced_by_its_replica_and_no_acknowledged_write_is_lost(
    fresh_cluster: LocalCluster,
) -> None:
    client = connect_cluster(fresh_cluster.url)
    try:
        victim = fresh_cluster.masters()[0]
        keys = [f"failover:{n}" for n in range(200)]
        for n, key in enumerate(keys):
            await client.set(key, n)
        on_victim = [k for k in keys if (await client.cluster_keyslot(k)) <= victim.slots[0][1]]
        assert on_victim  # the first master owns the lowest slots
        for master in fresh_cluster.masters():  # the replicas have every write before the kill
            node = fresh_cluster.node(master.address).client()
            try:
                assert node.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]
            finally:
                node.close()

        promoted = fresh_cluster.kill_master(victim.address)

        assert promoted != victim.address
        assert promoted in [m.address for m in fresh_cluster.masters()]
        assert [await client.get(k) for k in keys] == [str(n) for n in range(200)]
        await client.set(on_victim[0], "after")  # writes go to the promoted replica
        assert await client.get(on_victim[0]) == "after"

        fresh_cluster.restart(victim.address)  # the old master comes back as a replica
        back = next(n for n in fresh_cluster.topology() if n.address == victim.address)
        assert not back.is_master
        assert back.master_id == next(
            m.node_id for m in fresh_cluster.masters() if m.address == promoted
        )
    finally:
        await client.aclose()


async def test_a_cluster_that_lost_a_whole_shard_fails_with_a_connection_error() -> None:
    """CLUSTERDOWN is "Redis is unavailable" to the workers' retry loops, not a bad entry."""
    with local_cluster() as cluster:
        client = connect_cluster(cluster.url)
        try:
            victim = cluster.masters()[0]
            promoted = cluster.kill_master(victim.address)
            cluster.node(promoted).kill()  # its only replica is the master killed before
            await asyncio.to_thread(_wait_for_cluster_fail, cluster)
            # CLUSTERDOWN, or RedisClusterUnreachableError (not even a RedisError) once
            # redis-py's refresh finds no node for the lost slots: both connection errors
            with pytest.raises(CONNECTION_ERRORS):
                for n in range(50):  # some of these keys hash to the lost slots
                    await client.set(f"down:{n}", n)
        finally:
            await client.aclose()
        directory = Path(cluster.nodes[0].dir).parent
    assert not directory.exists()
    assert not any(node.running for node in cluster.nodes)


def _wait_for_cluster_fail(cluster: LocalCluster) -> None:
    survivor = next(node for node in cluster.nodes if node.running)
    for _ in range(200):
        if "cluster_state:fail" in (survivor.ask("CLUSTER", "INFO") or ""):
            return
        time.sleep(0.05)
    raise AssertionError("the cluster never noticed it lost a shard")
