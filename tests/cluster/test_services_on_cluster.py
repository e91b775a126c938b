"""The four services on a real Redis Cluster: every master used, figures exact, failover survived.

Each test starts its own six-node cluster (``fresh_cluster``) and runs ingest
(simulator, 12 channels at 20x), analytics, the orchestrator and retro as real
processes with ``REDIS_CLUSTER=true``. Analytics' state of every channel (raw keys
and recomputed figures) is compared, field by field, with that of one uninterrupted
consumer fed, on a single ``redis-server``, exactly the events the cluster's streams
hold; the sum of the version counters (one per application) equals that number of
events, so nothing was applied twice or skipped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis, RedisCluster

from shared.redis_client import connect_cluster
from shared.redis_cluster_server import LocalCluster
from tests.chaos.processes import Service
from tests.chaos.reliability import record
from tests.cluster.services import (
    CHANNELS,
    NAMES,
    HealthSampler,
    applied,
    backlog,
    caught_up,
    events_on_streams,
    keys_per_master,
    metrics_current,
    probe_settings,
    reference,
    start_services,
    state,
    swap_with_replica,
    until,
)

pytestmark = pytest.mark.slow

SIM_ENDED = re.compile(
    r"simulated stream \S+ ended after .*: (\d+) events published, (\d+) duplicates"
)


async def decided(redis: RedisCluster, channels: list[str]) -> bool:
    keys = probe_settings("redis://unused").keys
    return all([await redis.xlen(keys.decisions(ch)) > 0 for ch in channels])


async def reported(redis: RedisCluster) -> bool:
    keys = probe_settings("redis://unused").keys
    return all([await redis.zcard(keys.retro_index(ch)) > 0 for ch in CHANNELS])


async def finish(
    services: dict[str, Service], client: RedisCluster, *, look: Any = None
) -> dict[str, int]:
    """Stop ingest (every simulated stream ends), wait for the work to drain, ``await
    look()`` if given (the services still up), stop the rest; the exit codes."""
    settings = probe_settings("redis://unused")
    codes = {"ingest": services["ingest"].stop()}
    await until(lambda: reported(client), 40, "a retro report of every channel")

    async def drained() -> bool:
        total = len(await events_on_streams(client, settings))
        return await applied(client, settings) >= total and await caught_up(client, settings)

    try:
        await until(drained, 40, "analytics to apply every event")
    except AssertionError as error:
        raise AssertionError(f"{error}: {await backlog(client, settings)}") from None
    await until(lambda: metrics_current(client, settings), 20, "the figures of the last version")
    if look is not None:
        await look()
    for name in ("retro", "orchestrator", "analytics"):
        codes[name] = services[name].stop()
    return codes


async def dashboard(analytics: Service, answers: dict[str, int]) -> None:
    """GET every dashboard API of every channel, and its first retro page; the statuses.

    Not ``/bandit``: it answers 404 until the orchestrator stored a channel's bandit in
    Redis, which a short run does not reach on a single server either.
    """
    async with httpx.AsyncClient(base_url=analytics.url) as http:
        paths = ["/api/channels?limit=50", "/channels"]
        for channel in CHANNELS:
            api = f"/api/channels/{channel}"
            paths += [f"{api}/{n}" for n in ("metrics", "summary", "timeline", "donations")]
            paths += [f"{api}/retros"]
            retros = (await http.get(f"{api}/retros")).json()
            paths += [link["url"] for link in retros[:1]]
        for path in paths:
            answers[path] = (await http.get(path)).status_code


def sim_published(ingest: Service) -> int:
    """Events the simulator saw acknowledged (its per-stream closing lines): published,
    plus those a retry found already there (its events are all distinct, so a duplicate
    is a publish whose reply was lost, then retried)."""
    return sum(int(new) + int(dup) for new, dup in SIM_ENDED.findall(ingest.output()))


async def test_the_services_on_a_cluster_use_every_master_and_count_every_event_once(
    fresh_cluster: LocalCluster, redis_url: str, redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    services = await start_services(fresh_cluster, tmp_path)
    client = connect_cluster(fresh_cluster.url)
    settings = probe_settings(fresh_cluster.url)
    try:
        await until(lambda: decided(client, CHANNELS), 60, "a decision on every channel")
        answers: dict[str, int] = {}
        codes = await finish(
            services, client, look=lambda: dashboard(services["analytics"], answers)
        )
        events = await events_on_streams(client, settings)
        actual = await state(client, settings)
        total_applied = await applied(client, settings)
        sizes = await keys_per_master(fresh_cluster)
    finally:
        for service in services.values():
            service.stop()
        await client.aclose()
    expected = await reference(redis_url, redis, key_prefix, events)

    assert codes == dict.fromkeys(NAMES, 0), {n: services[n].output()[-2000:] for n in NAMES}
    assert answers and {p: s for p, s in answers.items() if s != 200} == {}
    assert len(sizes) == 3 and min(sizes.values()) > 0, sizes
    assert {e.channel for e in events} == set(CHANNELS)
    assert sim_published(services["ingest"]) == Counter(e.source for e in events)["sim"]
    assert total_applied == len(events)
    assert actual == expected


def kill_master(cluster: LocalCluster, *, fenced: bool) -> float:
    """SIGKILL the first master; seconds until its replica was promoted and the cluster ok.

    ``fenced``: first pause writes on it (``CLIENT PAUSE WRITE``) and wait until its
    replica holds every acknowledged write. Replication is asynchronous: without the
    fence a write acknowledged in the last milliseconds before the kill can be missing
    on the promoted replica (docs/cluster.md, "Failover"), a publish included. Paused
    clients see their connection die and retry on the new master.
    """
    victim = cluster.masters()[0].address
    if fenced:
        node = SyncRedis.from_url(f"redis://{victim}", decode_responses=True)
        try:
            node.execute_command("CLIENT", "PAUSE", "20000", "WRITE")  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + 10
            while not _replica_caught_up(node):
                assert time.monotonic() < deadline, "the replica did not catch up"
                time.sleep(0.01)
        finally:
            node.close()
    began = time.monotonic()
    cluster.kill_master(victim)
    return time.monotonic() - began


def _replica_caught_up(node: SyncRedis) -> bool:
    info = node.info("replication")
    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    offsets = [replica["offset"] for replica in replicas]
    return bool(offsets) and min(offsets) >= info["master_repl_offset"]


@dataclass
class Failover:
    """What the services did around the kill (seconds from the kill)."""

    health: HealthSampler
    killed_at: float
    cluster_ok_s: float
    healthy_s: float
    applying_s: float

    @property
    def recovered_at(self) -> float:
        """When every service answered 200 again, on the sampler's clock."""
        return self.killed_at + self.healthy_s


async def fail_over(
    cluster: LocalCluster, services: dict[str, Service], client: RedisCluster, *, fenced: bool
) -> Failover:
    """Kill a master mid-stream while sampling health; wait for health and work to resume."""
    settings = probe_settings("redis://unused")
    before = await applied(client, settings)
    async with HealthSampler(services) as health:
        await asyncio.sleep(1.0)
        killed_at = time.monotonic() - health.began
        cluster_ok_s = await asyncio.to_thread(kill_master, cluster, fenced=fenced)
        await until(lambda: _all_healthy(services), 30, "every service healthy again")
        healthy_s = time.monotonic() - health.began - killed_at
        more = before + 200
        await until(lambda: _more_than(applied(client, settings), more), 30, "applying again")
        applying_s = time.monotonic() - health.began - killed_at
        await asyncio.sleep(5.0)  # streaming goes on after the failover
    return Failover(health, killed_at, cluster_ok_s, healthy_s, applying_s)


@pytest.mark.parametrize("fenced", [True, False], ids=["writes-fenced", "unfenced"])
async def test_a_master_killed_mid_stream_is_survived_with_exact_figures(
    fresh_cluster: LocalCluster,
    redis_url: str,
    redis: Redis,
    key_prefix: str,
    tmp_path: Path,
    fenced: bool,
) -> None:
    services = await start_services(fresh_cluster, tmp_path)
    client = connect_cluster(fresh_cluster.url)
    settings = probe_settings(fresh_cluster.url)
    try:
        await until(lambda: decided(client, CHANNELS[:3]), 60, "first decisions")
        failover = await fail_over(fresh_cluster, services, client, fenced=fenced)
        exits = {name: s.process.poll() for name, s in services.items()}
        codes = await finish(services, client)
        events = await events_on_streams(client, settings)
        actual = await state(client, settings)
        total_applied = await applied(client, settings)
    finally:
        for service in services.values():
            service.stop()
        await client.aclose()
    expected = await reference(redis_url, redis, key_prefix, events)
    published = sim_published(services["ingest"])
    on_streams = Counter(e.source for e in events)["sim"]
    health = failover.health

    assert exits == dict.fromkeys(NAMES), "no service may exit during the failover"
    assert codes == dict.fromkeys(NAMES, 0), {n: services[n].output()[-2000:] for n in NAMES}
    during = [n for t, n, _ in health.samples if failover.killed_at <= t <= failover.recovered_at]
    assert set(during) == set(NAMES), "health must be sampled during the failover"
    late = health.refused_after(failover.recovered_at)
    assert not late, (failover.recovered_at, late, workers_died(services))
    assert all(health.last(name) == 200 for name in NAMES)
    assert len({(e.source, e.id) for e in events}) == len(events), "a publish landed twice"
    assert on_streams <= published
    if fenced:
        assert on_streams == published, "an acknowledged publish was lost"
    assert total_applied == len(events), "an entry was applied twice or not at all"
    assert actual == expected
    record_failover(failover, fenced, len(events), total_applied, published - on_streams)


def workers_died(services: dict[str, Service]) -> list[str]:
    """The supervisors' lines about a worker that died or restarted, from every log."""
    return [
        line[:400]
        for service in services.values()
        for line in service.output().splitlines()
        if "shared.tasks" in line and (" died " in line or ": restarting" in line)
    ]


def record_failover(
    failover: Failover, fenced: bool, events: int, applied: int, publishes_lost: int
) -> None:
    """The reliability row: lost and doubled count entries on the streams (applied once
    each, asserted); publishes lost to asynchronous replication are a figure apart."""
    how = "writes fenced to the replica first" if fenced else "no fence"
    unhealthy = {n: len(failover.health.unhealthy(n)) for n in NAMES}
    record(
        f"cluster-failover-{'fenced' if fenced else 'unfenced'}",
        f"a Redis Cluster master SIGKILLed mid-stream, 12 channels ({how})",
        1,
        "no process exited; health 503 only until recovery; every entry on the streams "
        "applied once, analytics state exact"
        + ("; every acknowledged publish on the streams" if fenced else ""),
        cluster_ok_after_s=round(failover.cluster_ok_s, 2),
        health_green_after_s=round(failover.healthy_s, 2),
        applying_again_after_s=round(failover.applying_s, 2),
        unhealthy_samples=unhealthy,
        events=events,
        publishes_lost_to_replication=publishes_lost,
        lost=max(0, events - applied),
        doubled=max(0, applied - events),
    )


async def _all_healthy(services: dict[str, Service]) -> bool:
    async with httpx.AsyncClient() as http:
        for service in services.values():
            try:
                if (await http.get(f"{service.url}/healthz", timeout=2)).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


async def _more_than(found: object, count: int) -> bool:
    return bool(await found > count)  # type: ignore[misc, operator]


async def test_a_manual_failover_of_every_master_keeps_every_service_healthy(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    """``CLUSTER FAILOVER`` (maintenance, or a failed master coming back) turns each old
    master into a replica, which answers every read blocked on it with ``UNBLOCKED``:
    no worker may die of it, so no health sample may be anything but 200."""
    services = await start_services(fresh_cluster, tmp_path)
    client = connect_cluster(fresh_cluster.url)
    settings = probe_settings(fresh_cluster.url)
    try:
        await until(lambda: decided(client, CHANNELS[:3]), 60, "first decisions")
        async with HealthSampler(services) as health:
            for master in [m.address for m in fresh_cluster.masters()]:
                await asyncio.to_thread(swap_with_replica, fresh_cluster, master)
                await asyncio.sleep(1.0)
            more = await applied(client, settings) + 200
            await until(lambda: _more_than(applied(client, settings), more), 30, "applying")
            await asyncio.sleep(2.0)
        exits = {name: s.process.poll() for name, s in services.items()}
        died = workers_died(services)
    finally:
        for service in services.values():
            service.stop()
        await client.aclose()

    assert exits == dict.fromkeys(NAMES), "no service may exit during the failovers"
    assert set(n for _, n, _ in health.samples) == set(NAMES)
    assert not health.refused_after(0.0), (health.refused_after(0.0), died)
    assert not died
