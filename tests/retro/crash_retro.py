"""A retro consumer process for the kill -9 test.

``python -m tests.retro.crash_retro URL PREFIX TMP`` runs the real runner and handler
on ``events:lifecycle`` as consumer ``crashy`` until SIGTERM. ``CRASH_AT`` makes it
kill itself with SIGKILL on the first ``stream_ended``: ``scoring`` right after the
stream-level bandit update, before the report is built; ``report`` once the report
is built, written to files and printed, before it is stored and the entry acked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from services.retro.handler import GROUP, RetroHandler
from services.retro.settings import RetroSettings
from shared.consumer import ConsumerRunner
from shared.keys import Stream
from shared.redis_client import connect


class CrashingRetro(RetroHandler):
    """The real handler, killed at the point ``CRASH_AT`` names."""

    async def score(self, channel: str, stream_id: str) -> int:
        applied = await super().score(channel, stream_id)
        crash_if("scoring")
        return applied

    async def on_ended(self, *args: Any, **kwargs: Any) -> None:
        await super().on_ended(*args, **kwargs)
        crash_if("report")


def crash_if(point: str) -> None:
    if os.environ.get("CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


async def main(url: str, prefix: str, tmp: str) -> None:
    settings = RetroSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        consumer_name="crashy",
        consumer_block_ms=50,
        min_segment_s=60,
        score_chunks=False,
        bandit_reward_sd=0.5,
        reward_revenue_prior_s=0.0,
        retro_dir=str(Path(tmp) / "retros"),
        bandit_state_path=str(Path(tmp) / "bandit.json"),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    redis = connect(url)
    handler = CrashingRetro(redis, settings, stop=stop)
    await ConsumerRunner(
        redis,
        settings,
        GROUP,
        handler,
        [Stream.LIFECYCLE],
        partition=settings.partitioning.of("demo"),
    ).run(stop)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
