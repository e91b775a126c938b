"""The consumer runner's counts: its Prometheus metrics, the lag gauge's reading, and
the summary of a runner's life."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from shared.keys import Keys

CONSUMED = Counter(
    "streamloop_events_consumed_total", "Entries handled and acked.", ["group", "stream"]
)
DEAD_LETTERED = Counter(
    "streamloop_dead_letters_total", "Entries sent to events:dead.", ["group", "stream"]
)
LAG = Gauge(
    "streamloop_consumer_lag",
    "Entries not yet read by the group, per partition's stream.",
    ["group", "stream", "partition"],
)


async def update_lag(
    redis: Redis, group: str, streams: list[str], keys: Keys, partition: int
) -> None:
    """The LAG gauge from XINFO GROUPS; 0 when nothing follows the last delivered id.

    Redis estimates ``lag`` from counters, and after a Redis Cluster failover the
    promoted replica's estimate stayed off (22 with nothing left to read, measured
    on 7.0): the gauge would show a stuck consumer. An entry after
    ``last-delivered-id`` is what lag really means, so its absence wins.
    """
    for stream in streams:
        for info in await redis.xinfo_groups(stream):
            if info.get("name") == group and info.get("lag") is not None:
                lag = info["lag"]
                if lag and not await redis.xrange(
                    stream, f"({info['last-delivered-id']}", "+", count=1
                ):
                    lag = 0
                kind = keys.kind_of(stream).value
                LAG.labels(group, kind, str(partition)).set(lag)


@dataclass
class RunSummary:
    """Counts of one runner's life, logged in one line when it stops."""

    handled: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    fenced_batches: int = 0
    reconnects: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, group: str, consumer: str) -> str:
        """The one-line summary printed at shutdown."""
        elapsed = time.monotonic() - self.started
        return (
            f"consumer {group}/{consumer} stopped after {elapsed:.1f} s: "
            f"{self.handled} handled, {self.dead_lettered} dead-lettered, "
            f"{self.claimed} claimed from dead consumers, {self.fenced_batches} batches "
            f"dropped after a takeover, {self.reconnects} reconnects"
        )
