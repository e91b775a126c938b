"""Redis stopped and started again mid-stream: every service reconnects by itself, nothing is lost.

All four services run as real processes on a private ``redis-server`` with AOF
on: ingest with the simulator and the webhooks, analytics, the orchestrator and
retro. Mid-stream the server is shut down for ``OUTAGE_S`` seconds while
donations keep arriving at the webhook (ingest holds them), then started again
on the same port and data directory. Then:

* no process exited, and each one's ``/healthz`` is green again within
  ``RECOVERY_LIMIT_S`` of Redis answering (measured per service);
* every donation sent during the outage is on the stream exactly once;
* analytics' state equals that of an uninterrupted consumer fed the same streams,
  field by field; the orchestrator decides again, and retro reports the stream;
* every process stops cleanly (exit 0) afterwards.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared.events import parse_fields
from shared.keys import Keys, Stream
from shared.partitions import Partitions
from shared.redis_client import connect
from shared.redis_server import RedisServer
from tests.analytics.test_exactly_once import PARTITIONS, dump, settings_for
from tests.chaos.processes import Service, healthy, start, wait_healthy
from tests.chaos.reliability import record
from tests.chaos.test_analytics_crash import reference
from tests.ingest.donation_payloads import streamelements_tip

OUTAGE_S = 3.0
RECOVERY_LIMIT_S = 10.0
HELD_DONATIONS = 10
SECRET = "s3cret-donations"
KEYS = Keys("", Partitions(PARTITIONS))

pytestmark = pytest.mark.slow


def environment(restartable_redis: RedisServer, tmp_path: Path) -> dict[str, str]:
    return {
        "REDIS_URL": restartable_redis.url,
        "REDIS_KEY_PREFIX": "",
        "CHANNELS": "demo",
        "PARTITIONS": str(PARTITIONS),  # the layout dump() and the reference read
        "INGEST_SOURCES": "sim,webhooks",
        "SIM_SPEED": "20",
        "DONATION_WEBHOOK_SECRET": SECRET,
        "DECISION_INTERVAL_S": "30",
        "LOOP_INTERVAL_S": "0.2",
        "MIN_SEGMENT_S": "0",
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": str(tmp_path / "bandit.json"),
        "RETRO_DIR": str(tmp_path / "retros"),
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }


async def send_tips(ingest: Service, numbers: range) -> list[int]:
    """POST one StreamElements tip per number; the HTTP statuses."""
    headers = {"authorization": f"Bearer {SECRET}"}
    async with httpx.AsyncClient(base_url=ingest.url, headers=headers) as http:
        return [
            (
                await http.post("/webhooks/donations", json=streamelements_tip(n, "outage"))
            ).status_code
            for n in numbers
        ]


async def recovery_times(services: list[Service], limit_s: float) -> dict[str, float]:
    """Seconds from now until each service's ``/healthz`` is green again."""
    began, recovered = time.monotonic(), {}
    async with httpx.AsyncClient() as http:
        while len(recovered) < len(services) and time.monotonic() - began < limit_s:
            for service in services:
                if service.name not in recovered and await healthy(service, http):
                    recovered[service.name] = round(time.monotonic() - began, 2)
            await asyncio.sleep(0.05)
    return recovered


async def until(condition: Any, within_s: float, what: str) -> float:
    """Seconds until ``await condition()`` is true; fails naming ``what`` after ``within_s``."""
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < within_s, f"{what} not within {within_s} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - began


async def outage_tips_on_stream(redis: Redis) -> list[str]:
    entries = await redis.xrange(KEYS.channel_stream(Stream.DONATION, "demo"))
    return [f["id"] for _, f in entries if f["id"].startswith("outage-")]


async def uninterrupted(restartable_redis: RedisServer, redis: Redis) -> dict[str, object]:
    """Analytics state of one consumer fed, uninterrupted, every event on the streams."""
    events = [
        parse_fields(fields)
        for stream in KEYS.event_streams()
        for _, fields in await redis.xrange(stream)
    ]
    return await reference(restartable_redis.url, redis, events)


async def tips_published(redis: Redis) -> bool:
    """Every tip sent, before and during the outage, is on the donation stream."""
    return len(await outage_tips_on_stream(redis)) >= 5 + HELD_DONATIONS


async def analytics_caught_up(redis: Redis) -> bool:
    """Analytics' group has read and acked every donation, the held tips included."""
    if not await tips_published(redis):
        return False
    [group] = await redis.xinfo_groups(KEYS.channel_stream(Stream.DONATION, "demo")) or [None]
    return group is not None and group["lag"] == 0 and group["pending"] == 0


async def decisions(redis: Redis) -> int:
    return int(await redis.xlen(KEYS.decisions("demo")))


# One outage scenario, read top to bottom: start, cut Redis, send while it is down, bring it
# back, then every figure of recovery and exactness.
async def test_services_ride_out_a_redis_restart_and_lose_nothing(
    restartable_redis: RedisServer, tmp_path: Path
) -> None:
    env = environment(restartable_redis, tmp_path)
    logs = tmp_path / "logs"
    names = ["ingest", "analytics", "orchestrator", "retro"]
    services = {name: start(name, env, logs) for name in names}
    redis = connect(restartable_redis.url)
    try:
        for service in services.values():
            await wait_healthy(service)
        await until(lambda: decisions(redis), 30, "a first decision")
        assert await send_tips(services["ingest"], range(1, 6)) == [202] * 5

        restartable_redis.stop()
        held = await send_tips(services["ingest"], range(6, 6 + HELD_DONATIONS))
        await asyncio.sleep(OUTAGE_S)
        restartable_redis.start()
        made_before = await decisions(redis)
        recovered, drained_s, caught_up_s, decided_s = await asyncio.gather(
            recovery_times(list(services.values()), RECOVERY_LIMIT_S * 2),
            until(lambda: tips_published(redis), 20, "the held tips on the stream"),
            until(lambda: analytics_caught_up(redis), 20, "analytics consuming again"),
            until(lambda: _more_than(decisions(redis), made_before), 20, "a decision after"),
        )
        exits = {name: s.process.poll() for name, s in services.items()}

        assert services["ingest"].stop() == 0, services["ingest"].output()[-3000:]
        ended = await until(lambda: redis.exists(KEYS.retro_index("demo")), 30, "the retro")
        codes = {name: services[name].stop() for name in ("retro", "orchestrator", "analytics")}
        tips = await outage_tips_on_stream(redis)
        expected = await uninterrupted(restartable_redis, redis)
        actual = await dump(redis, settings_for(restartable_redis.url, "", "probe"))
    finally:
        for service in services.values():
            service.stop()
        await redis.aclose()

    assert held == [202] * HELD_DONATIONS
    assert exits == dict.fromkeys(names), "no process may exit while Redis is down"
    assert set(recovered) == set(names), recovered
    assert max(recovered.values()) <= RECOVERY_LIMIT_S, recovered
    assert max(drained_s, caught_up_s, decided_s) <= RECOVERY_LIMIT_S
    assert sorted(tips) == sorted(f"outage-{n}" for n in range(1, 6 + HELD_DONATIONS))
    assert codes == dict.fromkeys(("retro", "orchestrator", "analytics"), 0)
    assert actual == expected
    record(
        "redis-restart",
        "Redis stopped and restarted mid-stream (AOF on)",
        1,
        "no process exited; held webhook events published once; analytics state exact",
        outage_s=OUTAGE_S,
        held_events=HELD_DONATIONS,
        health_green_after_s=recovered,
        held_published_after_s=round(drained_s, 2),
        analytics_caught_up_after_s=round(caught_up_s, 2),
        first_decision_after_s=round(decided_s, 2),
        retro_after_end_s=round(ended, 2),
        lost=5 + HELD_DONATIONS - len(set(tips)),
        doubled=len(tips) - len(set(tips)),
    )


async def _more_than(found: Any, count: int) -> bool:
    return bool(await found > count)
