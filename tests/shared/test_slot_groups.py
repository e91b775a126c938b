"""Grouping keys by hash tag as Redis Cluster does, and running one call per group."""

from __future__ import annotations

import asyncio

import pytest

from shared.keys import Keys
from shared.slot_groups import group_by_tag, hash_tag, per_group


class TestHashTag:
    """The cluster specification's rule: the first ``{``, the next ``}``, not empty."""

    @pytest.mark.parametrize(
        ("key", "tag"),
        [
            ("events:{p07}:chat", "p07"),
            ("{user1000}.following", "user1000"),
            ("foo{}{bar}", "foo{}{bar}"),  # an empty first tag: the whole key
            ("foo{{bar}}zap", "{bar"),
            ("foo{bar}{zap}", "bar"),
            ("no-tag", "no-tag"),
            ("open{only", "open{only"),
        ],
    )
    def test_the_part_hashed(self, key: str, tag: str) -> None:
        assert hash_tag(key) == tag

    def test_a_channels_keys_share_its_partitions_tag(self) -> None:
        keys = Keys("x:")
        tags = {
            hash_tag(key)
            for key in (
                keys.orchestrator_lease("demo"),
                keys.orchestrator_on_air("demo"),
                keys.analytics("demo").clock,
                keys.analytics("demo").lifecycle,
            )
        }
        assert tags == {keys.tag_of("demo").strip("{}")}


def test_items_are_grouped_by_tag_in_the_order_given() -> None:
    keys = Keys("x:")
    channels = [f"ch{n}" for n in range(200)]
    groups = group_by_tag(channels, keys.orchestrator_lease)
    assert sorted(ch for group in groups for ch in group) == sorted(channels)
    for group in groups:
        assert len({keys.partitions.of(ch) for ch in group}) == 1
        assert group == sorted(group, key=channels.index)
    assert len(groups) == len({keys.partitions.of(ch) for ch in channels})


async def test_every_group_runs_before_the_first_failure_is_raised() -> None:
    finished: list[int] = []

    async def call(group: list[int]) -> int:
        await asyncio.sleep(0.01 * group[0])
        if group[0] == 1:
            raise ValueError("group 1 failed")
        finished.append(group[0])
        return group[0]

    assert await per_group([[3], [2], [0]], call) == [3, 2, 0]
    with pytest.raises(ValueError, match="group 1"):
        await per_group([[1], [4], [5]], call)
    assert {4, 5} <= set(finished)
