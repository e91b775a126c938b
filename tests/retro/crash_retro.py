"""A retro consumer process for the kill -9 test.

``python -m tests.retro.crash_retro URL PREFIX TMP`` runs the real runner and handler
on ``events:lifecycle`` as consumer ``crashy`` until SIGTERM. With
``CRASH_AFTER_SCORING=1`` it kills itself with SIGKILL right after the stream-level
bandit update, before the report is stored and the entry acked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from services.retro.consumer import GROUP, RetroHandler
from services.retro.settings import RetroSettings
from shared.consumer import ConsumerRunner
from shared.keys import Stream
from shared.redis_client import connect


class CrashAfterScoring(RetroHandler):
    async def score(self, channel: str, stream_id: str) -> int:
        applied = await super().score(channel, stream_id)
        if os.environ.get("CRASH_AFTER_SCORING") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return applied


async def main(url: str, prefix: str, tmp: str) -> None:
    settings = RetroSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        consumer_name="crashy",
        consumer_block_ms=50,
        min_segment_s=60,
        retro_dir=str(Path(tmp) / "retros"),
        bandit_state_path=str(Path(tmp) / "bandit.json"),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    redis = connect(url)
    handler = CrashAfterScoring(redis, settings, stop=stop)
    await ConsumerRunner(redis, settings, GROUP, handler, [Stream.LIFECYCLE]).run(stop)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
