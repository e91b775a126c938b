"""The dead-letter tool and the recorder on a real Redis Cluster, with partitions on two masters.

Each reads every partition's streams, one key (or one partition's keys) per
command, and the requeue script touches one partition's keys: none may meet a
CROSSSLOT, and dead letters of partitions on different nodes (whose entry ids come
from different clocks, and may be equal) must stay apart.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import RedisCluster

from services.ingest.settings import IngestSettings
from services.ingest.sources.recording import record
from shared.dead_letters import cli as dead_letters
from shared.events import ChatEvent, DeadLetter, dead_letter_fields, to_fields
from shared.keys import Keys, Stream
from shared.publisher import Publisher
from shared.redis_client import connect_settings
from shared.redis_cluster_server import LocalCluster
from shared.settings import BaseServiceSettings

TS = datetime(2026, 2, 27, 10, 30, tzinfo=UTC)


async def master_of(client: RedisCluster, cluster: LocalCluster, key: str) -> str:
    slot = await client.cluster_keyslot(key)
    return next(m.address for m in cluster.masters() if any(a <= slot <= b for a, b in m.slots))


async def two_channels_on_two_masters(
    client: RedisCluster, cluster: LocalCluster, keys: Keys
) -> tuple[str, str]:
    first = "demo"
    home = await master_of(client, cluster, keys.channel_stream(Stream.CHAT, first))
    for n in range(200):
        other = f"ch{n}"
        if await master_of(client, cluster, keys.channel_stream(Stream.CHAT, other)) != home:
            return first, other
    raise AssertionError("no channel on another master")


def chat(n: int, channel: str, ts: datetime = TS) -> ChatEvent:
    return ChatEvent(id=f"c{n}", channel=channel, ts=ts, source="sim", user="u", text="hi")


async def add_dead(client: RedisCluster, keys: Keys, event: ChatEvent, ts: datetime) -> str:
    """A dead letter of ``event`` with entry id ``1000-0`` in its partition's dead stream."""
    stream = keys.channel_stream(Stream.CHAT, event.channel)
    letter = DeadLetter(
        reason="handler failed 1 times", stream=stream, entry_id="1-0",
        raw=json.dumps(to_fields(event)), group="analytics", ts=ts,
    )  # fmt: skip
    partition = keys.partition_of_stream(stream)
    await client.xadd(keys.dead(partition), dead_letter_fields(letter), id="1000-0")  # type: ignore[arg-type]
    return f"p{partition:02d}/1000-0"


async def cli(settings: BaseServiceSettings, *argv: str) -> tuple[int, str]:
    args = dead_letters.parse_args(argv)
    dead_letters.check_args(args)
    out = io.StringIO()
    return await dead_letters.run(settings, args, out), out.getvalue()


async def test_dead_letters_of_partitions_on_two_masters_are_listed_and_requeued(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    settings = BaseServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=redis_cluster.url, redis_cluster=True, redis_key_prefix=key_prefix,
    )  # fmt: skip
    keys = settings.keys
    demo, other = await two_channels_on_two_masters(cluster_client, redis_cluster, keys)
    older = await add_dead(cluster_client, keys, chat(1, demo), TS)
    newer = await add_dead(cluster_client, keys, chat(2, other), TS + timedelta(minutes=1))

    code, out = await cli(settings, "list")
    assert code == 0, out
    assert out.startswith("2 dead letters, newest first (the 64 ")
    assert out.index(newer) < out.index(older)

    code, out = await cli(settings, "requeue", "1000-0")
    assert code == 1 and "ambiguous: 2 partitions hold that id" in out

    code, out = await cli(settings, "requeue", "--all")
    assert code == 0, out
    assert "2 requeued, 0 not requeued" in out
    for channel in (demo, other):
        [(_, fields)] = await cluster_client.xrange(keys.channel_stream(Stream.CHAT, channel))
        assert fields["channel"] == channel
    assert sum([await cluster_client.xlen(key) for key in keys.dead_streams()]) == 0


async def test_follow_records_new_entries_of_partitions_on_two_masters(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str, tmp_path: Path
) -> None:
    settings = IngestSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=redis_cluster.url, redis_cluster=True, redis_key_prefix=key_prefix,
    )  # fmt: skip
    demo, other = await two_channels_on_two_masters(cluster_client, redis_cluster, settings.keys)
    redis = connect_settings(settings)
    publisher = Publisher(redis, settings)
    path = tmp_path / "live.jsonl"
    stop = asyncio.Event()
    try:
        await publisher.publish_many([chat(0, demo), chat(1, other)])
        task = asyncio.create_task(record(redis, settings, path, follow=True, stop=stop))
        try:
            await asyncio.sleep(0.5)
            await publisher.publish_many([chat(2, demo), chat(3, other)])
            async with asyncio.timeout(10):
                while len(path.read_text().splitlines()) < 4:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            written = await asyncio.wait_for(task, timeout=5)
    finally:
        await redis.aclose()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert written == 4
    assert sorted((f["fields"]["channel"], f["fields"]["id"]) for f in lines) == sorted(
        [(demo, "c0"), (other, "c1"), (demo, "c2"), (other, "c3")]
    )
    assert {line["stream"] for line in lines} == {"chat"}
