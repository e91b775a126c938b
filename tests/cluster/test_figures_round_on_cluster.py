"""The figures round on a real Redis Cluster: batches spanning partitions on several masters,
exact figures, also on nodes whose script cache is empty."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from redis.asyncio import RedisCluster

from services.analytics.figures_round import FiguresRound
from services.analytics.handler import apply_events
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import ChatEvent
from shared.redis_cluster_server import LocalCluster
from tests.analytics.streams import at, known_stream
from tests.cluster.test_scripts_after_failover import flush_scripts

CHANNELS = [f"fig{n:02d}" for n in range(12)]


def more_chat(channel: str) -> list[ChatEvent]:
    return [
        ChatEvent(
            channel=channel, source="sim", id=f"{channel}-more", user="u", text="hi", ts=at(601)
        )
    ]


async def test_batches_over_several_masters_write_one_by_one_figures_even_with_no_scripts(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    keys = AnalyticsSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=redis_cluster.url,
        redis_cluster=True,
        redis_key_prefix=key_prefix,
    ).keys
    redis = cluster_client
    for channel in CHANNELS:
        await apply_events(redis, keys, known_stream(channel))  # type: ignore[arg-type]
    windows = Windows(60_000, 300_000)
    computer = MetricsComputer(redis, keys, windows, ZoneInfo("UTC"))  # type: ignore[arg-type]
    flush_scripts(redis_cluster)

    outcome = await FiguresRound(redis, keys, computer, batch=5).run(CHANNELS)  # type: ignore[arg-type]
    flush_scripts(redis_cluster)
    for channel in CHANNELS:
        await apply_events(redis, keys, more_chat(channel))  # type: ignore[arg-type]
    left = await computer.recompute_batch(CHANNELS)

    assert (outcome.recomputed, outcome.failed) == (len(CHANNELS), 0)
    assert left == []  # every channel through the pipelines, none one by one
    one_by_one = MetricsComputer(redis, keys, windows, ZoneInfo("UTC"))  # type: ignore[arg-type]
    for channel in CHANNELS:
        written = await redis.hgetall(keys.metrics(channel))  # type: ignore[misc]
        assert written == await one_by_one.recompute(channel), channel
    assert len({keys.partitions.of(c) for c in CHANNELS}) > 3
