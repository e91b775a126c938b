"""Issue 11's newcomer sequence: a sped-up stream, stopped, then a normal one on the same Redis.

Real processes (ingest's simulator, analytics, orchestrator, retro) on the test
Redis. A simulated stream runs at 240x for a few seconds, so its events run about
half an hour ahead of the wall clock, and is stopped (``stream_ended``); the retro
reports it. Then ingest starts again at 1x: a new stream, dated by the wall clock,
so "in the past" of the first one. With per-stream clocks:

* decisions flow for the new stream (several, at its own pace), not one;
* the bandit is not touched by the old stream's segments: every segment applied
  after the old stream's report belongs to the new stream, and the bandit's
  update count grew by exactly those;
* the dashboard's figures are the new stream's: its id, live, its uptime (not the
  old stream's), its clock near the wall clock, and its subs and revenue: those of
  ``[its start, now]``, which hold a tip posted to the webhook with a months-old
  ``createdAt`` (counted on arrival) and none of the old stream's money dated
  later; old-stream events dated inside the new stream's first seconds would
  count (the overlap a clock that ran ahead leaves; counted and reported).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared.clock import parse_ts, utc_now
from shared.keys import Keys
from tests.chaos.processes import Service, start, wait_healthy
from tests.chaos.reliability import record
from tests.ingest.donation_payloads import streamelements_tip

pytestmark = pytest.mark.slow

CHANNEL = "demo"
FAST_RUN_S = 6.0
WAIT_S = 120.0
SECRET = "s3cret-donations"


def environment(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHANNELS": CHANNEL,
        "INGEST_SOURCES": "sim",
        "CONSUMER_BLOCK_MS": "100",
        "DECISION_INTERVAL_S": "20",
        "MIN_SEGMENT_S": "60",
        "REWARD_GRACE_S": "0",
        "LOOP_INTERVAL_S": "0.05",
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": str(tmp_path / "bandit.json"),
        "RETRO_DIR": str(tmp_path / "retros"),
        "RETRO_CATCHUP_TIMEOUT_S": "10",
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }


async def until(check: Any, what: str, services: list[Service], within_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + within_s
    while not (found := await check()):
        for service in services:
            assert service.process.poll() is None, f"{service.name} exited:\n{service.output()}"
        if time.monotonic() > deadline:
            logs = "\n".join(s.output()[-2000:] for s in services)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.1)
    return found


async def decisions_of(redis: Redis, keys: Keys, stream_id: str) -> int:
    entries = await redis.xrange(keys.decisions(CHANNEL))
    return sum(1 for _, fields in entries if fields.get("stream_id") == stream_id)


async def applied_segments(redis: Redis, keys: Keys) -> set[str]:
    prefix = keys.bandit_applied(CHANNEL, "")
    return {key.removeprefix(prefix) async for key in redis.scan_iter(match=f"{prefix}*")}


async def live_stream_id(redis: Redis, keys: Keys) -> str:
    return str(await redis.hget(keys.metrics(CHANNEL), "stream_id") or "")


async def paid_records(redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    raw = await redis.hvals(keys.analytics(CHANNEL).paid_data)
    return [json.loads(record) for record in raw]


# One end-to-end scenario, read top to bottom: a sped-up stream, then a normal one, then checks.
async def test_a_normal_stream_after_a_sped_up_one_runs_on_its_own_clock(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    keys = Keys(key_prefix)
    env = environment(redis_url, key_prefix, tmp_path)
    logs = tmp_path / "logs"
    services = [start(name, env, logs) for name in ("analytics", "orchestrator", "retro")]
    analytics = services[0]
    try:
        for service in services:
            await wait_healthy(service)
        fast = start("ingest", env | {"SIM_SPEED": "240"}, logs)
        first = await until(lambda: live_stream_id(redis, keys), "the fast stream", [fast])
        await asyncio.sleep(FAST_RUN_S)
        assert fast.stop() == 0
        await until(
            lambda: redis.zscore(keys.retro_index(CHANNEL), first), "the fast stream's retro",
            services,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # the orchestrator's last look at the ended stream
        bandit_before = await redis.hgetall(keys.bandit(CHANNEL))
        applied_before = await applied_segments(redis, keys)
        old_decisions = await decisions_of(redis, keys, first)
        ahead_s = (await redis.zscore(keys.analytics(CHANNEL).clock, "now")) / 1000 - time.time()
        assert ahead_s > 600, "the fast stream's events ran well ahead of the wall clock"
        assert applied_before, "the fast stream's segments were scored"

        normal_env = env | {"SIM_SPEED": "1", "INGEST_SOURCES": "sim,webhooks"}
        normal = start("ingest", normal_env | {"DONATION_WEBHOOK_SECRET": SECRET}, logs)
        services.append(normal)

        async def second_stream() -> str:
            sid = await live_stream_id(redis, keys)
            return sid if sid and sid != first else ""

        second = await until(second_stream, "the normal stream on the dashboard", services)
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {SECRET}"}) as http:
            tip = await http.post(f"{normal.url}/webhooks/donations", json=streamelements_tip(7))
        assert tip.status_code == 202, tip.text  # its createdAt is months old: counts on arrival
        began = time.monotonic()
        await until(
            lambda: _at_least(decisions_of(redis, keys, second), 3), "3 decisions", services
        )
        decisions_s = time.monotonic() - began

        bandit_after = await redis.hgetall(keys.bandit(CHANNEL))
        new_segments = (await applied_segments(redis, keys)) - applied_before
        assert all(segment.startswith(f"{second}:") for segment in new_segments), new_segments
        assert int(bandit_after.get("updates", 0)) == int(bandit_before.get("updates", 0)) + len(
            new_segments
        ), "the bandit grew by the new stream's segments only"

        async with httpx.AsyncClient() as http:
            response = await http.get(f"{analytics.url}/api/channels/{CHANNEL}/metrics")
        figures = response.json()
        now, started = parse_ts(figures["now"]), parse_ts(figures["stream_started_at"])
        uptime_s = (now - started).total_seconds()
        assert figures["stream_id"] == second and figures["is_live"] is True
        assert 0 <= uptime_s < 60, figures
        assert abs((utc_now() - now).total_seconds()) < 30, "the clock follows the new stream"

        started_ms, now_ms = started.timestamp() * 1000, now.timestamp() * 1000
        records = await paid_records(redis, keys)
        window = [r for r in records if started_ms <= r["ts"] <= now_ms]
        overlap = [r for r in window if r["id"].startswith(f"{first}:")]
        own = [r for r in window if not r["id"].startswith(f"{first}:")]
        later = [r for r in records if r["id"].startswith(f"{first}:") and r["ts"] > now_ms]
        assert "tip-7" in {r["id"] for r in own}, "the tip counts toward the new stream"
        assert later, "the old stream left paid events dated after the new stream's now"
        subs = sum(r.get("count", 1) for r in window if r["type"] in {"sub", "resub", "gift"})
        assert int(figures["subs_count"]) == subs
        cents = sum(r["cents"] for r in window)
        assert round(float(figures["revenue_stream"]) * 100) == cents
        record(
            "stream-after-fast-stream",
            "a 240x simulated stream stopped, then a 1x stream on the same Redis",
            1,
            "decisions flow for the new stream; the bandit gets only the new stream's "
            "segments; the dashboard shows the new stream's id, uptime, clock, subs and revenue "
            "(a months-old tip counted on arrival; the old stream's later money not counted)",
            lost=0,
            doubled=0,
            old_stream_ahead_of_wall_clock_s=round(ahead_s),
            old_stream_decisions=old_decisions,
            new_stream_3_decisions_after_s=round(decisions_s, 1),
            new_stream_segments_scored=len(new_segments),
            new_stream_uptime_s=round(uptime_s, 1),
            paid_events_own=len(own),
            paid_events_of_the_old_stream_in_the_overlap=len(overlap),
            old_stream_paid_events_dated_later_not_counted=len(later),
        )
    finally:
        for service in services:
            service.stop()


async def _at_least(count: Any, minimum: int) -> bool:
    return bool(await count >= minimum)
