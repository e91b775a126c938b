"""Channels spread over a fixed number of partitions, each named by a Redis Cluster hash tag.

A channel's partition is ``crc32(channel) % PARTITIONS``: stable across processes,
Python versions and restarts (unlike ``hash()``), so every service and replica puts
a channel in the same partition. Every key of a partition carries its hash tag,
``{p07}``: Redis Cluster hashes only the part between the braces, so all of a
partition's keys share one slot and every script, MULTI and multi-stream read on
them stays on one node. With 64 partitions each master of a three-master cluster
holds a fair share of them (``tests/cluster/test_partitions.py`` measures the
spread), and the partitions are also the unit that analytics replicas lease.

Changing ``PARTITIONS`` moves channels to other partitions: it needs an empty
Redis (or a migration), like changing ``REDIS_KEY_PREFIX``.
"""

from __future__ import annotations

import functools
import sys
import zlib
from dataclasses import dataclass

DEFAULT_PARTITIONS = 64


@functools.lru_cache(maxsize=65_536)
def partition_of(channel: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition of ``channel`` in ``[0, partitions)``: ``crc32(lower-case login) % N``."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions!r}")
    return zlib.crc32(channel.lower().encode()) % partitions


def tag(partition: int) -> str:
    """The hash tag of ``partition``, with its braces: ``{p07}`` (``{p123}`` past 99)."""
    if partition < 0:
        raise ValueError(f"a partition is not negative, got {partition!r}")
    return f"{{p{partition:02d}}}"


@dataclass(frozen=True)
class Partitions:
    """The partitioning of one deployment: ``count`` partitions (``PARTITIONS``)."""

    count: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"PARTITIONS must be at least 1, got {self.count!r}")

    def of(self, channel: str) -> int:
        """The partition of ``channel``."""
        return partition_of(channel, self.count)

    def tag_of(self, channel: str) -> str:
        """The hash tag every key of ``channel`` carries."""
        return tag(self.of(channel))

    def all(self) -> range:
        """Every partition, in order."""
        return range(self.count)

    def phase(self, partition: int) -> float:
        """``partition``'s share of a cycle, in ``[0, 1)``, the same in every process.

        Periodic work started for every partition at once (a consumer runner each)
        shifts its cycle by this share, so 64 runners do not all act in the same instant.
        """
        return (partition % self.count) / self.count

    def channels_by_partition(self, channels: list[str]) -> dict[int, list[str]]:
        """``channels`` grouped by partition (only partitions holding one appear)."""
        grouped: dict[int, list[str]] = {}
        for channel in channels:
            grouped.setdefault(self.of(channel), []).append(channel)
        return grouped


def main(argv: list[str]) -> int:
    """``python -m shared.partitions CHANNEL...``: print each channel's hash tag, one a line.

    ``PARTITIONS`` is read as the services read it (environment, then ``.env``), so
    ``"metrics:$(python -m shared.partitions demo):demo"`` names the key they write.
    """
    if not argv or any(arg.startswith("-") for arg in argv):
        print("usage: python -m shared.partitions CHANNEL...", file=sys.stderr)
        return 2
    from shared.settings import BaseServiceSettings  # here: settings imports this module

    partitioning = BaseServiceSettings().partitioning
    for channel in argv:
        print(partitioning.tag_of(channel))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
