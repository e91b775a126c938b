"""The four services as real processes on a :class:`LocalCluster`, and what the tests read back.

``start_services`` runs ingest (simulator), analytics, the orchestrator and retro
with ``REDIS_CLUSTER=true`` and ``REDIS_URL`` naming one node. The readers here go
through a ``RedisCluster`` client: every event on the partitions' streams, analytics'
state of every channel (``state``, the same raw keys and recomputed figures the chaos
tests compare) and the reference state, computed by one uninterrupted in-process
consumer on a single ``redis-server`` fed exactly the events the streams hold.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from redis.asyncio import Redis, RedisCluster

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import EventBase, parse_fields
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from shared.redis_cluster_server import LocalCluster
from tests.chaos.processes import Service, start, wait_healthy

CHANNELS = [f"cl{n:02d}" for n in range(12)]
"""Twelve channels, in 12 partitions of the default 64, spread over all three masters."""

NAMES = ("ingest", "analytics", "orchestrator", "retro")


def swap_with_replica(cluster: LocalCluster, master: str) -> str:
    """``CLUSTER FAILOVER`` on the replica of ``master`` (no write lost: the old master
    turns replica once the replica caught up); the promoted replica's address."""
    victim = next(m for m in cluster.masters() if m.address == master)
    replica = next(n for n in cluster.topology() if n.master_id == victim.node_id)
    assert cluster.node(replica.address).ask("CLUSTER", "FAILOVER") in ("OK", "True")
    deadline = time.monotonic() + 30
    while replica.address not in [m.address for m in cluster.masters()]:
        assert time.monotonic() < deadline, f"{replica.address} was not promoted"
        time.sleep(0.05)
    cluster.wait_ready()
    return replica.address


def environment(cluster: LocalCluster, tmp_path: Path) -> dict[str, str]:
    """Settings of all four services: the cluster, the channels, a fast simulator."""
    return {
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "REDIS_KEY_PREFIX": "",
        "CHANNELS": ",".join(CHANNELS),
        "INGEST_SOURCES": "sim",
        "SIM_SPEED": "20",
        "DECISION_INTERVAL_S": "30",
        "LOOP_INTERVAL_S": "0.2",
        "MIN_SEGMENT_S": "0",
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": str(tmp_path / "bandit.json"),
        "RETRO_DIR": str(tmp_path / "retros"),
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }


async def start_services(cluster: LocalCluster, tmp_path: Path) -> dict[str, Service]:
    """All four services, started and healthy."""
    env = environment(cluster, tmp_path)
    services = {name: start(name, env, tmp_path / "logs") for name in NAMES}
    for service in services.values():
        await wait_healthy(service)
    return services


def probe_settings(url: str, prefix: str = "") -> AnalyticsSettings:
    """Analytics settings for the test's own readers and reference consumer."""
    return AnalyticsSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        consumer_name="reference",
        consumer_batch_size=200,
        consumer_block_ms=20,
        channels=CHANNELS,
    )


def partitions(settings: AnalyticsSettings) -> list[int]:
    """The partitions holding the test's channels."""
    return sorted(settings.keys.partitions.channels_by_partition(CHANNELS))


def streams(settings: AnalyticsSettings) -> list[str]:
    """Every event stream of those partitions."""
    keys = settings.keys
    return [s for p in partitions(settings) for s in keys.partition_streams(p)]


async def events_on_streams(redis: RedisCluster, settings: AnalyticsSettings) -> list[EventBase]:
    """Every event the partitions' streams hold."""
    return [
        parse_fields(fields)
        for stream in streams(settings)
        for _, fields in await redis.xrange(stream)
    ]


async def applied(redis: RedisCluster | Redis, settings: AnalyticsSettings) -> int:
    """Events analytics applied: the sum of the channels' version counters."""
    keys = settings.keys
    return sum([int(await redis.get(keys.analytics(ch).version) or 0) for ch in CHANNELS])


async def caught_up(redis: RedisCluster | Redis, settings: AnalyticsSettings) -> bool:
    """Analytics' group has read and acked every entry of every stream."""
    return not await backlog(redis, settings)


async def backlog(redis: RedisCluster | Redis, settings: AnalyticsSettings) -> dict[str, Any]:
    """The streams analytics' group has not read or acked to the end: their group info.

    Unread means an entry after the group's last delivered id, not XINFO's ``lag``:
    that is an estimate, and after a failover the promoted replica's stayed off.
    """
    behind = {}
    for stream in streams(settings):
        groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
        group = groups.get(GROUP)
        unread = group is not None and await redis.xrange(
            stream, f"({group['last-delivered-id']}", "+", count=1
        )
        if group is None or group["pending"] != 0 or unread:
            behind[stream] = group
    return behind


async def metrics_current(redis: RedisCluster, settings: AnalyticsSettings) -> bool:
    """The service's figures (``metrics:T:{channel}``) are of every channel's last version."""
    keys = settings.keys
    for channel in CHANNELS:
        version = await redis.get(keys.analytics(channel).version)
        if version is None or await redis.hget(keys.metrics(channel), "version") != version:
            return False
    return True


async def state(redis: RedisCluster | Redis, settings: AnalyticsSettings) -> dict[str, object]:
    """Every raw analytics key's content and the recomputed figures of every channel."""
    windows = Windows(settings.chat_window_s * 1000, settings.engagement_window_s * 1000)
    computer = MetricsComputer(redis, settings.keys, windows, ZoneInfo("UTC"))  # type: ignore[arg-type]
    out: dict[str, object] = {}
    for channel in CHANNELS:
        out[f"{channel}/metrics"] = await computer.recompute(channel)
        for key in settings.keys.analytics(channel).all():
            short = key.removeprefix(settings.redis_key_prefix)
            kind = await redis.type(key)
            if kind == "hash":
                out[short] = await redis.hgetall(key)
            elif kind == "zset":
                out[short] = await redis.zrange(key, 0, -1, withscores=True)
            else:
                out[short] = await redis.get(key)
    return out


async def reference(redis_url: str, redis: Redis, prefix: str, events: list[EventBase]) -> Any:
    """The state one uninterrupted consumer makes of ``events`` on a single redis-server."""
    settings = probe_settings(redis_url, prefix)
    await Publisher(redis, settings).publish_many(events)
    consumer = PartitionedConsumer(redis, settings, GROUP, MetricsHandler(settings.keys, 3600))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(
            lambda: _done(redis, settings, len(events)), 60, "the reference consumer to finish"
        )
    finally:
        stop.set()
        await task
    return await state(redis, settings)


async def _done(redis: Redis, settings: AnalyticsSettings, total: int) -> bool:
    return await applied(redis, settings) >= total and await caught_up(redis, settings)


async def until(condition: Any, within_s: float, what: str) -> float:
    """Seconds until ``await condition()`` is true; fails naming ``what`` after ``within_s``."""
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < within_s, f"{what} not within {within_s} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - began


async def keys_per_master(cluster: LocalCluster) -> dict[str, int]:
    """DBSIZE of every master serving slots now."""
    sizes = {}
    for master in cluster.masters():
        node = Redis.from_url(f"redis://{master.address}", decode_responses=True)
        try:
            sizes[master.address] = int(await node.dbsize())
        finally:
            await node.aclose()
    return sizes


class HealthSampler:
    """Samples every service's ``/healthz`` every ``interval_s``: (seconds, name, status)."""

    def __init__(self, services: dict[str, Service], interval_s: float = 0.1) -> None:
        self.services = services
        self.interval_s = interval_s
        self.samples: list[tuple[float, str, int | None]] = []
        self.refusals: list[tuple[float, str, str]] = []
        """Every sample that was not 200: when, whose, and what it answered (body or error)."""
        self.began = time.monotonic()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        async with httpx.AsyncClient() as http:
            while not self._stop.is_set():
                now = time.monotonic() - self.began
                for name, service in self.services.items():
                    status, answer = await _status(http, service)
                    self.samples.append((now, name, status))
                    if status != 200:
                        self.refusals.append((now, name, f"{status}: {answer}"))
                await asyncio.sleep(self.interval_s)

    def unhealthy(self, name: str) -> list[float]:
        """When ``name`` answered anything but 200."""
        return [t for t, n, status in self.samples if n == name and status != 200]

    def last(self, name: str) -> int | None:
        """The latest status of ``name``."""
        return [status for _, n, status in self.samples if n == name][-1]

    def refused_after(self, at: float) -> list[str]:
        """The samples after ``at`` that were not 200, each with what was answered: a 503's
        body names the worker down and its error; ``None`` is no answer within 2 s."""
        return [f"{t:.1f} s {name} {answer}" for t, name, answer in self.refusals if t > at]


async def _status(http: httpx.AsyncClient, service: Service) -> tuple[int | None, str]:
    """``/healthz``'s status and, unless 200, its body (or why there was no answer)."""
    try:
        response = await http.get(f"{service.url}/healthz", timeout=2)
    except httpx.HTTPError as error:
        return None, repr(error)
    return response.status_code, "" if response.status_code == 200 else response.text[:500]
