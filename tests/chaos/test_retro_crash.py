"""Retro killed with SIGKILL mid-report, then restarted: one report, every segment scored once.

A real retro process (the real runner and handler, ``tests.retro.crash_retro``)
kills itself on ``stream_ended`` at one of two points: right after the
stream-level bandit update, or once the report is built, written and printed but
before it is stored and the entry acked. A restarted process must finish the job
with the bandit holding exactly the stream's scorable segments, one stored and
indexed report, the report printed once in all, and nothing left pending.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.retro.handler import GROUP
from services.retro.settings import RetroSettings
from tests.analytics.streams import STREAM
from tests.chaos.reliability import record
from tests.readmodel.summary_streams import extended_stream
from tests.retro.helpers import retro_settings, until
from tests.retro.test_exactly_once import SCORABLE, published, total_updates

CRASH_POINTS = ["scoring", "report"]
TITLE = "# Stream retro: demo / s-known"

pytestmark = pytest.mark.slow


def spawn(redis_url: str, prefix: str, tmp_path: Path, crash_at: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.retro.crash_retro", redis_url, prefix, str(tmp_path)]
    env = {**os.environ, "CRASH_AT": crash_at}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )


async def settled(redis: Redis, settings: RetroSettings) -> bool:
    """The report is indexed and the lifecycle group has nothing pending."""
    lifecycle = settings.keys.channel_stream("lifecycle", "demo")
    indexed = await redis.exists(settings.keys.retro_index("demo"))
    return bool(indexed) and (await redis.xpending(lifecycle, GROUP))["pending"] == 0


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_retro_killed_mid_report_and_restarted_counts_the_stream_once(
    crash_at: str,
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    make_settings: Any,
    tmp_path: Path,
) -> None:
    await published(redis, make_settings, extended_stream())
    settings = retro_settings(make_settings, tmp_path)
    crashed = spawn(redis_url, key_prefix, tmp_path, crash_at)
    first_output, _ = await asyncio.to_thread(crashed.communicate, timeout=30)
    assert crashed.returncode == -signal.SIGKILL
    assert not await redis.exists(settings.keys.retro_index("demo")), "killed before the commit"
    assert (TITLE in first_output) == (crash_at == "report"), "printed only past the report"

    began = time.monotonic()
    restarted = spawn(redis_url, key_prefix, tmp_path, "")
    try:
        await until(lambda: settled(redis, settings), within=30)
        recovered_s = time.monotonic() - began
    finally:
        restarted.send_signal(signal.SIGTERM)
        second_output, _ = await asyncio.to_thread(restarted.communicate, timeout=30)
    assert restarted.returncode == 0
    assert await total_updates(redis, settings) == SCORABLE
    assert (first_output + second_output).count(TITLE) == 1
    assert await redis.zcard(settings.keys.retro_index("demo")) == 1
    assert await redis.hget(settings.keys.retro("demo", STREAM), "complete") == "1"
    assert (tmp_path / "retros").is_dir()
    record(
        f"crash-retro-{crash_at}",
        f"retro SIGKILL after the {'bandit update' if crash_at == 'scoring' else 'report'}",
        1,
        "one report stored, indexed and printed; every segment scored once",
        bandit_updates=(updates := await total_updates(redis, settings)),
        expected_updates=SCORABLE,
        lost=max(0, SCORABLE - updates),
        doubled=max(0, updates - SCORABLE),
        restart_to_report_s=round(recovered_s, 2),
    )
