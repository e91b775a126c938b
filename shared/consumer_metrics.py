"""The consumer runner's Prometheus metrics, and the lag gauge's reading."""

from __future__ import annotations

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
