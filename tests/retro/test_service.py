"""``python -m services.retro`` as a real process: health, metrics, and the report of a
stream that ends just before the process is told to stop."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.retro.app import drain
from services.retro.handler import GROUP, RetroHandler
from shared.events import StreamEndedEvent
from shared.keys import Stream
from shared.partitioned_consumer import PartitionedConsumer
from shared.publisher import Publisher
from shared.redis_server import free_port
from shared.settings import BaseServiceSettings
from tests.analytics.streams import STREAM
from tests.orchestrator.driver import apply
from tests.readmodel.summary_streams import extended_stream
from tests.retro.helpers import retro_settings, until
from tools.health import wait_healthy


def start_retro(redis_url: str, prefix: str, port: int, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "RETRO_PORT": str(port),
        "RETRO_DIR": str(tmp_path / "retros"),
        "BANDIT_STATE_PATH": str(tmp_path / "bandit.json"),
        "MIN_SEGMENT_S": "60",
        "SCORE_CHUNKS": "false",
        "BANDIT_REWARD_SD": "0.5",
        "REWARD_REVENUE_PRIOR_S": "0",
        "CHANNELS": "demo",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.retro"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_stream_ended_just_before_the_signal_is_reported_before_exit(
    redis_url: str, redis: Redis, key_prefix: str, tmp_path: Path, signum: int
) -> None:
    settings = BaseServiceSettings(_env_file=None, redis_url=redis_url, redis_key_prefix=key_prefix)
    events = extended_stream()
    end = next(e for e in events if isinstance(e, StreamEndedEvent) and e.stream_id == STREAM)
    # Analytics' state as its handler writes it; the lifecycle on the stream for retro.
    await apply(redis, settings.keys, events)
    lifecycle = [e for e in events if e.stream == Stream.LIFECYCLE]
    port = free_port()
    process = start_retro(redis_url, key_prefix, port, tmp_path)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", name="retro", process=process, within_s=20)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
        assert "streamloop_retro_reports_total" in metrics
        publisher = Publisher(redis, settings)
        await publisher.publish_many([e for e in lifecycle if e is not end])
        snapshot = settings.keys.retro("demo", STREAM)
        await until(lambda: redis.hexists(snapshot, "bandit_before"))  # it saw the start
        await publisher.publish_many([end])
        process.send_signal(signum)  # at once: the end is on the stream, maybe not yet read
        stdout, stderr = await asyncio.to_thread(process.communicate, timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stdout.startswith("# Stream retro: demo / s-known\n")
    assert stdout.count("# Stream retro") == 1
    assert await redis.hget(snapshot, "complete") == "1"
    assert (tmp_path / "retros" / "demo" / "s-known.html").exists()
    summary = [line for line in stderr.splitlines() if "retro stopped after" in line]
    assert len(summary) == 1 and "1 report(s) written (demo/s-known)" in summary[0], stderr
    assert "3 segment(s) scored at stream end" in summary[0]


async def test_what_was_published_before_the_stop_is_drained_at_exit(
    redis: Redis, make_settings: Any, tmp_path: Path
) -> None:
    """The runner may be between two reads when the signal comes: the lifespan drains."""
    settings = retro_settings(make_settings, tmp_path)
    events = extended_stream()
    await apply(redis, settings.keys, events)
    out = io.StringIO()
    runner = PartitionedConsumer(
        redis, settings, GROUP, RetroHandler(redis, settings, out=out), [Stream.LIFECYCLE]
    )
    lifecycle = [e for e in events if e.stream == Stream.LIFECYCLE]
    await Publisher(redis, settings).publish_many(lifecycle)
    stop = asyncio.Event()
    stop.set()
    assert (await runner.run(stop)).handled == 0  # stopped before its first read
    assert await drain(runner) == len(lifecycle)
    assert out.getvalue().startswith("# Stream retro: demo / s-known\n")
    assert await drain(runner) == 0  # nothing left, and no read waits for more
