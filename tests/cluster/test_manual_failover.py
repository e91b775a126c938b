"""A manual failover (``CLUSTER FAILOVER``: the old master turns replica, as for
maintenance or when a failed master comes back): the blocked readers on the old master
get ``UNBLOCKED``, and the donation tail rides it out like a lost connection."""

from __future__ import annotations

import asyncio
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
from tests.cluster.services import swap_with_replica

CHANNEL = "demo"


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
        slot = key_slot(stream.encode())
        master = next(m for m in fresh_cluster.masters() if any(a <= slot <= b for a, b in m.slots))
        await asyncio.to_thread(swap_with_replica, fresh_cluster, master.address)
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
