"""What the partitioned layout needs from Redis Cluster, tried on a real local cluster.

``python -m tools.cluster_probe`` starts a six-node cluster (``shared.redis_cluster_server``)
and a single ``redis-server``, and prints, as Markdown for docs/cluster.md:

* that one XREADGROUP over five streams of one hash tag, a Lua script over keys of
  one tag (the publisher's SET NX + XADD shape) and a WATCH + MULTI commit on one tag
  (the consumer runner's shape) work through redis-py's ``RedisCluster``, with their
  median latency next to the single server's;
* the errors the same operations give on keys without a tag (redis-py's own refusal,
  and the server's CROSSSLOT when sent to a node directly);

The tagged keys are the services' own names (:class:`shared.keys.Keys` under the
prefix ``probe:``); the untagged ones are the layout before partitions, spelled
here only to show what the cluster refuses.
* how 64 partitions and 3,000 channels spread over the three masters;
* a master SIGKILLed under a writing client: time to promotion, the client's longest
  gap between two successful writes, and the errors it saw meanwhile.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from itertools import pairwise
from typing import Any

from redis.asyncio import Redis, RedisCluster

from shared.keys import Keys
from shared.partitions import Partitions, tag
from shared.redis_client import CONNECTION_ERRORS, connect, connect_cluster
from shared.redis_cluster_server import LocalCluster, local_cluster
from shared.redis_server import RedisServer

KINDS = ("chat", "donation", "sub", "viewers", "lifecycle")
KEYS = Keys("probe:")
PARTITION = 7
"""The partition the one-tag shapes run on."""
ROUNDS = 300
PUBLISH = """
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', 60000) then
    redis.call('XADD', KEYS[i + 1], 'MAXLEN', '~', 1000, '*', 'n', i)
  end
end
return #KEYS / 2
"""
COMMIT = """
-- KEYS[1] the consumer's fence, KEYS[2..6] the partition's streams, KEYS[7] a state key
-- ARGV[1] the fence value seen when the batch was read
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
for i = 2, 6 do redis.call('XACK', KEYS[i], 'g', '0-1') end
return redis.call('INCR', KEYS[7])
"""

Client = Redis | RedisCluster


def untagged_streams() -> list[str]:
    """The five event streams as named before partitions (no tag: five slots)."""
    return [f"probe:events:{kind}" for kind in KINDS]


def channels_of(partition: int, count: int) -> list[str]:
    """``count`` channel names in ``partition``."""
    names = (f"channel_{n}" for n in range(100_000))
    found = [name for name in names if KEYS.partitions.of(name) == partition][:count]
    assert len(found) == count, (partition, count)
    return found


async def median_us(action: Callable[[], Awaitable[Any]]) -> float:
    """Median wall time of ``action`` over :data:`ROUNDS` runs, in microseconds."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        await action()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


async def shapes(client: Client, partition: int) -> dict[str, float]:
    """Median µs of the one-tag shapes on ``client``, on the keys of ``partition``."""
    names = KEYS.partition_streams(partition)
    channels = channels_of(partition, 10)
    fence = KEYS.consumer_fence("g", "c", partition)
    version = KEYS.analytics(channels[0]).version
    for stream in names:
        await client.xgroup_create(stream, "g", id="0", mkstream=True)
        await client.xadd(stream, {"n": "1"})
    script = client.register_script(PUBLISH)
    counter = iter(range(10**9))

    async def read() -> Any:
        return await client.xreadgroup("g", "c", dict.fromkeys(names, "0"), count=10)

    async def publish() -> Any:
        keys = []
        for _ in range(10):
            keys += [KEYS.dedupe("probe", str(next(counter)), channels[0]), names[0]]
        return await script(keys=keys, args=[])

    async def commit() -> Any:
        async with client.pipeline(transaction=True) as tx:
            await tx.watch(fence)
            tx.multi()  # type: ignore[no-untyped-call]
            marker = KEYS.dedupe("probe", str(next(counter)), channels[0])
            await script(keys=[marker, names[1]], client=tx)  # type: ignore[arg-type]
            for stream in names:
                tx.xack(stream, "g", "0-1")
            tx.incr(version)
            return await tx.execute()

    one_script = client.register_script(COMMIT)

    async def script_commit() -> Any:
        return await one_script(keys=[fence, *names, version], args=["0"])

    def multi_of(size: int) -> Callable[[], Awaitable[Any]]:
        async def multi() -> Any:
            async with client.pipeline(transaction=True) as tx:
                for channel in channels[:size]:
                    tx.incr(KEYS.analytics(channel).version)
                return await tx.execute()

        return multi

    return {
        "XREADGROUP over 5 streams": await median_us(read),
        "Lua script, 10 events (20 keys)": await median_us(publish),
        "WATCH + MULTI: script, 5 XACK, INCR": await median_us(commit),
        "one script: fence compare, 5 XACK, INCR": await median_us(script_commit),
        "MULTI of 1 INCR": await median_us(multi_of(1)),
        "MULTI of 10 INCR": await median_us(multi_of(10)),
    }


async def untagged_errors(client: RedisCluster, cluster: LocalCluster) -> dict[str, str]:
    """The error each shape gives on untagged keys, through redis-py and sent raw to a node."""
    names = untagged_streams()
    errors: dict[str, str] = {}

    async def attempt(label: str, action: Callable[[], Awaitable[Any]]) -> None:
        try:
            await action()
            errors[label] = "no error"
        except Exception as error:
            errors[label] = f"{type(error).__name__}: {error}"

    async def commit() -> Any:
        async with client.pipeline(transaction=True) as tx:
            for stream in names:
                tx.xack(stream, "g", "0-1")
            return await tx.execute()

    script = client.register_script(PUBLISH)
    await attempt(
        "XREADGROUP (redis-py)", lambda: client.xreadgroup("g", "c", {n: ">" for n in names})
    )
    await attempt("Lua script (redis-py)", lambda: script(keys=names[:2], args=[]))
    await attempt("MULTI (redis-py)", commit)
    fresh = client.register_script("return redis.call('INCR', KEYS[1])")

    async def fresh_script_in_multi() -> Any:
        async with client.pipeline(transaction=True) as tx:
            key = KEYS.analytics(channels_of(9, 1)[0]).version
            await fresh(keys=[key], client=tx)  # type: ignore[arg-type]
            return await tx.execute()

    await attempt(
        "a script never loaded on that node, in a MULTI on one tag", fresh_script_in_multi
    )
    node = cluster.node(cluster.masters()[0].address).client()
    try:
        for label, command in (
            (
                "XREADGROUP (raw, one node)",
                ["XREADGROUP", "GROUP", "g", "c", "STREAMS", *names, *[">"] * len(names)],
            ),
            ("EVAL (raw, one node)", ["EVAL", "return 1", "2", names[0], names[1]]),
        ):
            try:
                node.execute_command(*command)  # type: ignore[no-untyped-call]
                errors[label] = "no error"
            except Exception as error:
                errors[label] = f"{type(error).__name__}: {error}"
    finally:
        node.close()
    return errors


async def spread(client: RedisCluster, cluster: LocalCluster) -> tuple[list[int], list[int]]:
    """Partitions (of 64) and channels (of 3,000) per master, smallest first."""
    ranges = [(first, last, m.address) for m in cluster.masters() for first, last in m.slots]

    async def owner(key: str) -> str:
        slot = await client.cluster_keyslot(key)
        return next(address for first, last, address in ranges if first <= slot <= last)

    partitions = Partitions(64)
    per_partition = Counter([await owner(tag(p)) for p in partitions.all()])
    names = [f"channel_{n}" for n in range(3000)]
    per_channel = Counter([await owner(partitions.tag_of(name)) for name in names])
    return sorted(per_partition.values()), sorted(per_channel.values())


async def failover(cluster: LocalCluster) -> dict[str, str]:
    """Kill the master of ``{p00}`` under a client writing to it every 10 ms."""
    client = connect_cluster(cluster.url)
    key = KEYS.analytics(channels_of(0, 1)[0]).version
    slot = await client.cluster_keyslot(key)
    victim = next(m for m in cluster.masters() if any(a <= slot <= b for a, b in m.slots))
    errors: Counter[str] = Counter()
    stamps: list[float] = []
    done = asyncio.Event()

    async def write() -> None:
        while not done.is_set():
            try:
                await client.incr(key)
                stamps.append(time.monotonic())
            except CONNECTION_ERRORS as error:
                errors[type(error).__name__] += 1
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.5)
    killed = time.monotonic()
    await asyncio.to_thread(cluster.kill_master, victim.address)
    promoted_s = time.monotonic() - killed
    await asyncio.sleep(1.0)
    done.set()
    await writer
    await client.aclose()
    gap = max(b - a for a, b in pairwise(stamps))
    return {
        "promotion and cluster_state:ok after the kill": f"{promoted_s:.2f} s",
        "longest gap between two successful writes": f"{gap:.2f} s",
        "errors the writer saw (after redis-py's retries)": dict(errors).__repr__() or "none",
    }


async def main() -> None:
    """Run every probe and print the Markdown."""
    server = RedisServer()
    server.start()
    single = connect(server.url)
    try:
        with local_cluster() as cluster:
            client = connect_cluster(cluster.url)
            print("| operation (median of 300) | single redis-server | Redis Cluster, one tag |")
            print("|---|---|---|")
            alone = await shapes(single, PARTITION)
            spread_out = await shapes(client, PARTITION)
            for name, micros in alone.items():
                print(f"| {name} | {micros:.0f} µs | {spread_out[name]:.0f} µs |")
            print("\nUntagged keys on the cluster:\n")
            for name, text in (await untagged_errors(client, cluster)).items():
                print(f"- {name}: `{text}`")
            partitions, channels = await spread(client, cluster)
            print(f"\nPartitions per master (64 over 3): {partitions}")
            print(f"Channels per master (3,000 over 3): {channels}")
            await client.aclose()
            print("\nA master SIGKILLed (cluster-node-timeout 1000 ms):\n")
            for name, value in (await failover(cluster)).items():
                print(f"- {name}: {value}")
    finally:
        await single.aclose()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
