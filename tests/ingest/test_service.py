"""``python -m services.ingest`` as a real process: starts, publishes, stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from redis.asyncio import Redis

from shared.keys import Keys, Stream
from shared.redis_server import free_port
from tools.health import wait_healthy


def start_ingest(redis_url: str, prefix: str, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "INGEST_PORT": str(port),
        "INGEST_SOURCES": "sim,webhooks",
        "SIM_SPEED": "600",
        "CHANNELS": "demo",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.ingest"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_service_publishes_the_simulated_stream_and_ends_it_on_a_signal(
    redis_url: str, redis: Redis, key_prefix: str, signum: int
) -> None:
    port = free_port()
    process = start_ingest(redis_url, key_prefix, port)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", name="ingest", process=process, within_s=20)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
        assert "streamloop_events_published_total" in metrics
        deadline = time.monotonic() + 20
        while (
            await redis.xlen(Keys(key_prefix).channel_stream(Stream.CHAT, "demo")) < 5
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.1)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    lifecycle = await redis.xrange(Keys(key_prefix).channel_stream(Stream.LIFECYCLE, "demo"))
    types = [fields["type"] for _, fields in lifecycle]
    assert types[0] == "stream_started" and types[-1] == "stream_ended"
    assert await redis.xlen(Keys(key_prefix).channel_stream(Stream.CHAT, "demo")) >= 5
    summary = [line for line in output.splitlines() if "ingest stopped after" in line]
    assert len(summary) == 1 and "sources sim stopped" in summary[0], output
    assert "Traceback" not in output
