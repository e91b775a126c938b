"""A manual failover (``CLUSTER FAILOVER``: the old master turns replica, as for
maintenance or when a failed master comes back): the blocked readers on the old master
get ``UNBLOCKED``, and the donation tail rides it out like a lost connection."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from redis.crc import key_slot

from services.analytics.broadcaster import Broadcaster
from services.analytics.hub import Hub
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import DonationEvent
from shared.keys import Stream
from shared.publisher import Publisher
from shared.redis_client import connect_cluster
from shared.redis_cluster_server import LocalCluster

CHANNEL = "demo"


def fail_over_manually(cluster: LocalCluster, key: str) -> str:
    """``CLUSTER FAILOVER`` on the replica of ``key``'s master; its address once promoted."""
    slot = key_slot(key.encode())
    master = next(m for m in cluster.masters() if any(a <= slot <= b for a, b in m.slots))
    replica = next(n for n in cluster.topology() if n.master_id == master.node_id)
    assert cluster.node(replica.address).ask("CLUSTER", "FAILOVER") in ("OK", "True")
    deadline = time.monotonic() + 30
    while replica.address not in [m.address for m in cluster.masters()]:
        assert time.monotonic() < deadline, "the replica was not promoted"
        time.sleep(0.05)
    cluster.wait_ready()
    return replica.address


async def test_the_donation_tail_rides_out_a_manual_failover_and_pushes_the_next_donation(
    fresh_cluster: LocalCluster,
) -> None:
    settings = AnalyticsSettings(
        _env_file=None,
        redis_url=fresh_cluster.url,
        redis_cluster=True,
        redis_key_prefix="",
        channels=[CHANNEL],
    )
    redis = connect_cluster(fresh_cluster.url)
    hub = Hub(queue_messages=16)
    watcher = hub.add(CHANNEL)
    computer = MetricsComputer(redis, settings.keys, Windows(60_000, 300_000), ZoneInfo("UTC"))  # type: ignore[arg-type]
    broadcaster = Broadcaster(redis, settings, hub, computer)  # type: ignore[arg-type]
    stop = asyncio.Event()
    tail = asyncio.create_task(broadcaster.run_donations(stop))
    stream = settings.keys.channel_stream(Stream.DONATION, CHANNEL)
    try:
        await asyncio.sleep(1.0)  # the tail is blocked in its XREAD on the master
        await asyncio.to_thread(fail_over_manually, fresh_cluster, stream)
        donation = DonationEvent(
            id="after-failover",
            channel=CHANNEL,
            ts=datetime(2026, 2, 27, 10, 30, tzinfo=UTC),
            source="sim",
            user="fan",
            amount=Decimal("5.00"),
        )
        await Publisher(redis, settings).publish_many([donation])  # type: ignore[arg-type]
        frame = await asyncio.wait_for(watcher.next_frame(), 20)
        running = not tail.done()
    finally:
        stop.set()
        await asyncio.wait_for(tail, 10)
        await redis.aclose()
    assert running
    assert '"after-failover"' in frame
