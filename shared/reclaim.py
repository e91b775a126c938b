"""A consumer runner's reclaim round, read in one round trip.

Every ``CONSUMER_RECLAIM_INTERVAL_S`` a :class:`~shared.consumer.ConsumerRunner`
looks at each stream of its partition for three things: entries idle longer than
``CONSUMER_CLAIM_MIN_IDLE_MS`` in another consumer's hands (XPENDING ... IDLE),
consumers long gone (XINFO CONSUMERS), and its group's lag (XINFO GROUPS, plus the
stream's newest entry). Sent one command at a time that was about 15 round trips
per runner per round, ~190 a second for the 64 idle runners of one analytics
replica. :func:`read_round` sends them all in one non-transactional pipeline; every
key carries the partition's hash tag, so on Redis Cluster the pipeline goes to one
node (redis-py's ``ClusterPipeline`` routes XPENDING and XINFO by key, as
``tests/cluster`` checks). Writes follow only when there is something to do:
:func:`claim` takes entries over, :func:`forget` removes consumers, one round trip
each.

Claiming keeps the order exactly-once rests on: every previous owner's fence is
incremented before its entries are claimed, in one MULTI/EXEC, so an owner still
committing a batch it no longer holds finds its WATCHed fence moved and its commit
refused, whether it commits before, during or after the claim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

__all__ = [
    "StreamState",
    "claim",
    "forget",
    "forgettable",
    "read_round",
]


@dataclass(frozen=True)
class StreamState:
    """What one round read of one stream."""

    stream: str
    stale: list[dict[str, Any]]
    """Pending entries idle at least the claim threshold (XPENDING ``IDLE``), any owner."""
    consumers: list[dict[str, Any]]
    """The group's consumers (XINFO CONSUMERS: name, pending, idle ms)."""
    group: dict[str, Any] | None
    """The group's line of XINFO GROUPS (``lag``, ``last-delivered-id``), None if absent."""
    newest_id: str | None
    """Id of the stream's newest entry; None when the stream is empty."""

    def theirs(self, consumer: str) -> list[dict[str, Any]]:
        """The stale entries some other consumer than ``consumer`` holds."""
        return [entry for entry in self.stale if entry["consumer"] != consumer]


async def read_round(
    redis: Redis, streams: Sequence[str], group: str, *, count: int, min_idle_ms: int
) -> list[StreamState]:
    """Everything a round needs of ``streams``, in one pipeline (one round trip).

    ``count``: at most that many stale entries per stream. A missing group raises the
    ``NOGROUP`` error of the first command that met it, as a command sent alone would.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xpending_range(stream, group, min="-", max="+", count=count, idle=min_idle_ms)
            pipe.xinfo_consumers(stream, group)
            pipe.xinfo_groups(stream)
            pipe.xrevrange(stream, count=1)
        replies = await pipe.execute()
    states = []
    for index, stream in enumerate(streams):
        stale, consumers, groups, newest = replies[4 * index : 4 * index + 4]
        line = next((info for info in groups if info.get("name") == group), None)
        states.append(
            StreamState(stream, stale, consumers, line, str(newest[0][0]) if newest else None)
        )
    return states


async def claim(
    redis: Redis,
    group: str,
    consumer: str,
    min_idle_ms: int,
    stale: dict[str, list[dict[str, Any]]],
    fence_of: Callable[[str], str],
) -> tuple[dict[str, list[Any]], dict[str, list[dict[str, Any]]]]:
    """Take ``stale`` (stream -> other consumers' entries) over for ``consumer``.

    One MULTI/EXEC: INCR the fence (``fence_of(owner)``) of every owner, XCLAIM each
    stream's entries, then XINFO CONSUMERS of those streams. Returns the entries
    taken (stream -> ``[(id, fields)]``; an entry acked meanwhile or idle no longer is
    not taken) and each stream's consumers as they are after the claim, so an owner
    whose last entries were just taken can be forgotten in the same round.
    """
    owners = sorted({entry["consumer"] for entries in stale.values() for entry in entries})
    async with redis.pipeline(transaction=True) as tx:
        for owner in owners:
            tx.incr(fence_of(owner))
        for stream, entries in stale.items():
            ids = [entry["message_id"] for entry in entries]
            tx.xclaim(stream, group, consumer, min_idle_ms, ids)
        for stream in stale:
            tx.xinfo_consumers(stream, group)
        replies = await tx.execute()
    claims = replies[len(owners) : len(owners) + len(stale)]
    after = replies[len(owners) + len(stale) :]
    return dict(zip(stale, claims, strict=True)), dict(zip(stale, after, strict=True))


def forgettable(
    consumers: list[dict[str, Any]], consumer: str, forget_idle_ms: int
) -> list[dict[str, Any]]:
    """Consumers other than ``consumer`` idle over ``forget_idle_ms`` with nothing pending."""
    return [
        info
        for info in consumers
        if info["name"] != consumer and not info["pending"] and info["idle"] > forget_idle_ms
    ]


async def forget(
    redis: Redis, group: str, gone: Sequence[tuple[str, str]], fence_of: Callable[[str], str]
) -> None:
    """Remove each ``(stream, name)`` consumer from ``group`` and delete its fence.

    One non-transactional pipeline: XGROUP DELCONSUMER per pair, DEL of each fence once.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for stream, name in gone:
            pipe.xgroup_delconsumer(stream, group, name)
        for name in sorted({name for _, name in gone}):
            pipe.delete(fence_of(name))
        await pipe.execute()
