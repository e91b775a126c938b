"""Work on many keys as one script call per hash tag: one slot, one round trip each.

A script may only touch keys of one slot on Redis Cluster, and every key of a
partition carries the partition's hash tag (:mod:`shared.partitions`). So work on
many units (leases of many channels, clocks of many channels) is grouped by the
tag of its keys, each group sent as one script call, and the groups run
concurrently, at most :data:`GROUP_CONCURRENCY` at once: on a single server they
overlap on the pool's connections, on a cluster each goes to its own node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

Item = TypeVar("Item")
Reply = TypeVar("Reply")

GROUP_CONCURRENCY = 16
"""Group calls in flight at once (64 partitions: four waves)."""


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first ``{`` and the next ``}``
    when that is not empty, else the whole key (the rule of the cluster specification)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def group_by_tag(items: Iterable[Item], key_of: Callable[[Item], str]) -> list[list[Item]]:
    """``items`` grouped by the hash tag of their key, each group in the order given."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(hash_tag(key_of(item)), []).append(item)
    return list(groups.values())


async def per_group(
    groups: Iterable[list[Item]], call: Callable[[list[Item]], Awaitable[Reply]]
) -> list[Reply]:
    """``call`` on every group, at most :data:`GROUP_CONCURRENCY` at once; replies in
    the groups' order. The first failure is raised once every call has finished."""
    limit = asyncio.Semaphore(GROUP_CONCURRENCY)

    async def bounded(group: list[Item]) -> Reply:
        async with limit:
            return await call(group)

    outcomes = await asyncio.gather(*(bounded(g) for g in groups), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]
