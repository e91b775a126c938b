"""What the soak looks at: samples of Redis and every process, and censuses of the keys."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.keys import DECISIONS_PREFIX, DEDUPE_PREFIX, Keys
from shared.settings import BaseServiceSettings
from tools.benchmarks.measure import machine_cpu_s, proc_cpu_s, proc_rss_kb


@dataclass
class Sample:
    """One look at Redis and the processes, ``t_s`` seconds into the load."""

    t_s: float
    published: int
    used_memory: int
    used_memory_rss: int
    keys: int
    expires: int
    stream_len: dict[str, int]
    """Entries per event stream key of the partitions holding the channels."""
    lag: dict[str, int]
    pending: dict[str, int]
    rss_kb: dict[str, int]
    cpu_s: dict[str, float]
    machine_cpu_s: float

    @property
    def stream_total(self) -> int:
        """Entries in every event stream."""
        return sum(self.stream_len.values())


def channel_streams(settings: BaseServiceSettings) -> list[str]:
    """The event streams of every partition holding one of ``settings.channels``.

    The other partitions' streams stay empty: the load publishes on these only.
    """
    by_partition = settings.partitioning.channels_by_partition(settings.channels)
    return [key for p in sorted(by_partition) for key in settings.keys.partition_streams(p)]


class Sampler:
    """Takes :class:`Sample` s of Redis and of every process."""

    def __init__(self, redis: Redis, settings: BaseServiceSettings, pids: dict[str, int]) -> None:
        self.redis = redis
        self.keys = settings.keys
        self.pids = pids
        self.samples: list[Sample] = []
        self.streams = channel_streams(settings)

    async def groups(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Per group: lag and pending summed over the event streams; entries read."""
        lag: Counter[str] = Counter()
        pending: Counter[str] = Counter()
        read: Counter[str] = Counter()
        for key in self.streams:
            if not await self.redis.exists(key):
                continue
            for group in await self.redis.xinfo_groups(key):
                name = str(group["name"])
                lag[name] += int(group.get("lag") or 0)
                pending[name] += int(group["pending"])
                read[name] += int(group.get("entries-read") or 0)
        return dict(lag), dict(pending), dict(read)

    async def take(self, t_s: float, published: int, *, record: bool = True) -> Sample:
        """One sample, kept in :attr:`samples` when ``record``."""
        memory: dict[str, Any] = await self.redis.info("memory")
        keyspace: dict[str, Any] = await self.redis.info("keyspace")
        db = keyspace.get("db0", {"keys": 0, "expires": 0})
        lengths = {key: int(await self.redis.xlen(key)) for key in self.streams}
        lag, pending, _ = await self.groups()
        sample = Sample(
            t_s=t_s,
            published=published,
            used_memory=int(memory["used_memory"]),
            used_memory_rss=int(memory["used_memory_rss"]),
            keys=int(db["keys"]),
            expires=int(db["expires"]),
            stream_len=lengths,
            lag=lag,
            pending=pending,
            rss_kb={name: proc_rss_kb(pid) for name, pid in self.pids.items()},
            cpu_s={name: proc_cpu_s(pid) for name, pid in self.pids.items()},
            machine_cpu_s=machine_cpu_s(),
        )
        if record:
            self.samples.append(sample)
        return sample


@dataclass
class KeyInfo:
    """One key in a census."""

    type: str
    length: int
    bytes: int


@dataclass
class Census:
    """Every key but the dedupe markers, measured; the markers counted and sampled."""

    t_s: float
    used_memory: int
    keys: dict[str, KeyInfo]
    dedupe_count: int
    dedupe_bytes_each: float

    @property
    def other_bytes(self) -> int:
        """Bytes of every key measured one by one."""
        return sum(info.bytes for info in self.keys.values())


LENGTH_COMMANDS = {"stream": "XLEN", "zset": "ZCARD", "hash": "HLEN", "set": "SCARD"}


async def take_census(redis: Redis, prefix: str, t_s: float) -> Census:
    """Measure every key not under ``{prefix}dedupe:`` and sample the dedupe markers."""
    memory: dict[str, Any] = await redis.info("memory")
    keys: dict[str, KeyInfo] = {}
    dedupe_glob = f"{prefix}{DEDUPE_PREFIX}*"
    for pattern in (f"{prefix}[^d]*", f"{prefix}{DECISIONS_PREFIX}*"):  # all but dedupe:
        async for key in redis.scan_iter(match=pattern, count=10_000):
            kind = str(await redis.type(key))
            command = LENGTH_COMMANDS.get(kind)
            length = int(await redis.execute_command(command, key)) if command else 1  # type: ignore[no-untyped-call]
            usage = await redis.memory_usage(key, samples=0)
            keys[key] = KeyInfo(kind, length, int(usage or 0))
    total = int(await redis.dbsize())
    sampled: list[int] = []
    async for key in redis.scan_iter(match=dedupe_glob, count=1_000):
        sampled.append(int(await redis.memory_usage(key) or 0))
        if len(sampled) >= 500:
            break
    each = statistics.fmean(sampled) if sampled else 0.0
    return Census(t_s, int(memory["used_memory"]), keys, total - len(keys), each)


CALIBRATION_MARKERS = 200_000


async def marker_cost(redis: Redis) -> float:
    """Bytes of ``used_memory`` one dedupe marker costs, measured before the load.

    ``CALIBRATION_MARKERS`` markers are set as the publisher sets them (``SET NX PX``)
    under a prefix of their own, then removed: unlike ``MEMORY USAGE``, this counts
    their entries in the server's main and expires dictionaries too.
    """
    keys = Keys("soak-calibration:")
    names = [keys.dedupe("calibration", str(n), "alpha") for n in range(CALIBRATION_MARKERS)]
    before = int((await redis.info("memory"))["used_memory"])
    for first in range(0, len(names), 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[first : first + 10_000]:
                pipe.set(name, "1", nx=True, px=3_600_000)
            await pipe.execute()
    after = int((await redis.info("memory"))["used_memory"])
    for first in range(0, len(names), 10_000):
        await redis.delete(*names[first : first + 10_000])
    return (after - before) / CALIBRATION_MARKERS
