"""The donation tail (one blocking XREAD per partition) outlives what a failover does to
its server, and the next donation still reaches the dashboard's clients."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from services.analytics.broadcaster import Broadcaster
from services.analytics.hub import Hub
from services.analytics.metrics import MetricsComputer, Windows
from services.analytics.settings import AnalyticsSettings
from shared.events import DonationEvent
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer
from tests.shared.role_change import turn_replica_and_back, until_blocked


async def test_the_donation_tail_survives_its_server_turning_replica_and_pushes_the_next(
    restartable_redis: RedisServer, key_prefix: str
) -> None:
    url = restartable_redis.url
    settings = AnalyticsSettings(
        _env_file=None, redis_url=url, redis_key_prefix=key_prefix, channels=["demo"]
    )
    redis, admin = connect(url), Redis.from_url(url)
    hub = Hub(queue_messages=16)
    watcher = hub.add("demo")
    computer = MetricsComputer(redis, settings.keys, Windows(60_000, 300_000), ZoneInfo("UTC"))
    stop = asyncio.Event()
    tail = asyncio.create_task(Broadcaster(redis, settings, hub, computer).run_donations(stop))
    try:
        await until_blocked(admin)
        await turn_replica_and_back(url)
        donation = DonationEvent(
            id="d1",
            channel="demo",
            ts=datetime(2026, 2, 27, 10, 30, tzinfo=UTC),
            source="sim",
            user="fan",
            amount=Decimal("5.00"),
        )
        await Publisher(redis, settings).publish_many([donation])
        frame = await asyncio.wait_for(watcher.next_frame(), 15)
        running = not tail.done()
    finally:
        stop.set()
        await asyncio.wait_for(tail, 10)
        await redis.aclose()
        await admin.aclose()
    assert running
    assert '"donation"' in frame and '"d1"' in frame
