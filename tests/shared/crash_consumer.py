"""Consumer process for the kill -9 test: ``python -m tests.shared.crash_consumer URL PREFIX NAME``.

Counts every chat event into ``{PREFIX}counts`` through the real runner until killed.
"""

from __future__ import annotations

import asyncio
import sys

from shared.consumer import ConsumerRunner
from shared.keys import Stream
from shared.redis_client import connect
from shared.settings import ConsumerSettings
from tests.shared.counting_handler import CountingHandler


async def main(url: str, prefix: str, name: str) -> None:
    settings = ConsumerSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        consumer_name=name,
        consumer_batch_size=50,
        consumer_block_ms=50,
        consumer_claim_min_idle_ms=200,
        consumer_reclaim_interval_s=0.1,
    )
    redis = connect(url)
    handler = CountingHandler(f"{prefix}counts")
    await ConsumerRunner(
        redis,
        settings,
        "crashgroup",
        handler,
        [Stream.CHAT],
        partition=settings.partitioning.of("demo"),
    ).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
