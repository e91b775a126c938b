"""Partitions: channels spread by crc32, each partition one hash tag, fair over the masters."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest
from redis.asyncio import RedisCluster

from shared.partitions import Partitions, partition_of, tag
from shared.redis_cluster_server import LocalCluster
from shared.settings import BaseServiceSettings


def test_a_channel_keeps_its_partition_across_processes_and_hash_seeds() -> None:
    channels = ["demo", "shroud", "xqc", "some_channel_42"]
    code = (
        "from shared.partitions import partition_of;"
        f"print([partition_of(c, 64) for c in {channels!r}])"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert seen == {f"{[partition_of(c, 64) for c in channels]}\n"}


def test_partitions_are_in_range_and_ignore_case() -> None:
    assert all(0 <= partition_of(f"ch{n}", 64) < 64 for n in range(1000))
    assert partition_of("DemoChannel", 64) == partition_of("demochannel", 64)
    assert len({partition_of(f"ch{n}", 64) for n in range(1000)}) == 64  # every one used


def test_tags_name_the_partition_with_braces() -> None:
    assert tag(7) == "{p07}"
    assert tag(63) == "{p63}"
    assert tag(123) == "{p123}"
    with pytest.raises(ValueError):
        tag(-1)
    with pytest.raises(ValueError):
        partition_of("demo", 0)


def test_the_partitions_setting_defaults_to_64_and_rejects_zero() -> None:
    settings = BaseServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.partitioning == Partitions(64)
    assert settings.partitioning.tag_of("demo") == tag(partition_of("demo", 64))
    with pytest.raises(ValueError):
        BaseServiceSettings(_env_file=None, partitions=0)  # type: ignore[call-arg]


async def test_keys_carrying_one_tag_share_one_slot(cluster_client: RedisCluster) -> None:
    partition = tag(7)
    keys = [
        f"events:{partition}:chat",
        f"events:{partition}:lifecycle",
        f"analytics:{partition}:demo:clock",
        f"consumer:{partition}:analytics:host-1:fence",
        f"dedupe:{partition}:twitch:abc",
        f"prefix:bandit:{partition}:demo",
    ]
    slots = {await cluster_client.cluster_keyslot(key) for key in keys}
    assert len(slots) == 1
    assert await cluster_client.cluster_keyslot(f"events:{tag(8)}:chat") not in slots


async def test_64_partitions_give_every_master_of_three_a_fair_share(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    owner = _slot_owner(redis_cluster)
    per_master = Counter([owner(await cluster_client.cluster_keyslot(tag(p))) for p in range(64)])
    print(f"partitions per master (64 over 3): {sorted(per_master.values())}")
    assert len(per_master) == 3
    assert all(16 <= count <= 26 for count in per_master.values()), per_master  # 21.3 +- 25 %

    partitions = Partitions(64)
    channels = Counter(
        [
            owner(await cluster_client.cluster_keyslot(partitions.tag_of(f"channel_{n}")))
            for n in range(3000)
        ]
    )
    print(f"channels per master (3,000 over 3): {sorted(channels.values())}")
    assert all(750 <= count <= 1250 for count in channels.values()), channels


def _slot_owner(cluster: LocalCluster) -> Callable[[int], str]:
    """Address of the master serving a slot, from CLUSTER NODES."""
    ranges = [(first, last, m.address) for m in cluster.masters() for first, last in m.slots]

    def owner(slot: int) -> str:
        return next(address for first, last, address in ranges if first <= slot <= last)

    return owner


def test_a_key_prefix_with_braces_is_refused_since_it_would_hide_the_tags() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        BaseServiceSettings(_env_file=None, redis_key_prefix="app{1}:")  # type: ignore[call-arg]
