"""An analytics consumer process for the kill -9 test.

``python -m tests.analytics.crash_analytics URL PREFIX NAME`` consumes with the real
runner and handler until killed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from redis.asyncio.client import Pipeline

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.settings import AnalyticsSettings
from shared.consumer import Delivery
from shared.partitioned_consumer import PartitionedConsumer
from shared.redis_client import connect
from tests.analytics.test_exactly_once import PARTITIONS


async def main(url: str, prefix: str, name: str) -> None:
    settings = AnalyticsSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        consumer_name=name,
        consumer_batch_size=25,
        consumer_block_ms=50,
        consumer_claim_min_idle_ms=300,
        consumer_reclaim_interval_s=0.1,
        partitions=PARTITIONS,
    )
    handler = SlowHandler(MetricsHandler(settings.keys, settings.state_ttl_s))
    await PartitionedConsumer(connect(url), settings, GROUP, handler).run(asyncio.Event())


class SlowHandler:
    """The real handler, 30 ms slower a batch, so a kill often lands mid-transaction."""

    def __init__(self, inner: MetricsHandler) -> None:
        self.inner = inner

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        await self.inner.handle(batch, tx)
        await asyncio.sleep(0.03)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
