"""Three orchestrator processes, ten channels: one decision per channel per interval, failover.

Real processes (``python -m services.orchestrator``) on a real Redis; the test
drives each channel's event-time clock and kills one replica with SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from shared.events import ActivityChangedEvent, StreamStartedEvent, ViewerCountEvent
from shared.keys import Keys
from shared.redis_server import free_port
from tests.analytics.recorded import START
from tests.orchestrator.driver import apply
from tools.health import wait_healthy

CHANNELS = [f"c{n}" for n in range(10)]
STEP_S = 10  # event time the clock moves per drive step
INTERVAL_MS = 30_000


def spawn(redis_url: str, prefix: str, replica: str, tmp_path) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHANNELS": ",".join(CHANNELS),
        "REPLICA_ID": replica,
        "DECISION_INTERVAL_S": "30",
        "MIN_SEGMENT_S": "0",
        "LOOP_INTERVAL_S": "0.05",
        "LEASE_TTL_MS": "1500",
        "ORCHESTRATOR_PORT": str(port),
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": str(tmp_path / f"{replica}.json"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.orchestrator"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process.port = port  # type: ignore[attr-defined]
    return process


async def all_healthy(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        url = f"http://127.0.0.1:{process.port}"  # type: ignore[attr-defined]
        await wait_healthy(url, name="an orchestrator", process=process)


async def go_live(redis: Redis, keys: Keys) -> None:
    for channel in CHANNELS:
        c = {"channel": channel, "source": "sim", "ts": START}
        await apply(
            redis,
            keys,
            [
                StreamStartedEvent(**c, id="start", stream_id=f"s-{channel}"),
                ActivityChangedEvent(**c, id="a0", stream_id=f"s-{channel}", activity="talk"),
            ],
        )


async def drive(redis: Redis, keys: Keys, steps: range) -> None:
    """Move every channel's clock forward ``STEP_S`` event seconds per step, 5 steps a second."""
    for n in steps:
        ts = START + timedelta(seconds=STEP_S * n)
        await apply(
            redis,
            keys,
            [
                ViewerCountEvent(channel=ch, source="sim", id=f"v{n}", ts=ts, count=100)
                for ch in CHANNELS
            ],
        )
        await asyncio.sleep(0.2)


async def decisions(redis: Redis, keys: Keys) -> dict[str, list[dict[str, str]]]:
    return {ch: [f for _, f in await redis.xrange(keys.decisions(ch))] for ch in CHANNELS}


def assert_one_per_interval(made: dict[str, list[dict[str, str]]]) -> None:
    for channel, records in made.items():
        times = [int(r["at_ms"]) for r in records]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= INTERVAL_MS for gap in gaps), (channel, gaps)


@pytest.mark.slow
async def test_three_replicas_share_ten_channels_and_survive_a_kill_9(
    redis_url: str, redis: Redis, key_prefix: str, tmp_path
) -> None:
    keys = Keys(key_prefix)
    await go_live(redis, keys)
    replicas = {name: spawn(redis_url, key_prefix, name, tmp_path) for name in ("r0", "r1", "r2")}
    try:
        await all_healthy(list(replicas.values()))
        await drive(redis, keys, range(1, 40))
        before = await decisions(redis, keys)
        assert_one_per_interval(before)
        assert all(len(records) >= 5 for records in before.values()), before
        holders = Counter([await redis.get(keys.orchestrator_lease(ch)) for ch in CHANNELS])
        victim = holders.most_common(1)[0][0]
        replicas[victim].send_signal(signal.SIGKILL)
        replicas[victim].wait()
        await drive(redis, keys, range(40, 80))
        after = await decisions(redis, keys)
    finally:
        for process in replicas.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
    assert_one_per_interval(after)
    for channel in CHANNELS:
        late = after[channel][len(before[channel]) :]
        assert len(late) >= 5, (channel, "decisions must go on after the kill")
        assert victim not in {r["replica"] for r in late[2:]}
        assert await redis.get(keys.orchestrator_lease(channel)) != victim
    assert {r["replica"] for records in after.values() for r in records} == {"r0", "r1", "r2"}
    assert all(p.returncode == 0 for name, p in replicas.items() if name != victim)
