"""No entry stops a worker, and ``/healthz`` tells the truth while one is down (real processes).

* Poison pills: the exact entry of issue 11 (``ts 0001-01-01T00:00:00+01:00``, an
  ``OverflowError`` in the old parser) and its siblings on the lifecycle and
  donation streams are XADDed among valid entries to a running analytics and
  retro. Both dead-letter them with the reason, count every valid entry, stay
  healthy, and a SIGKILLed analytics restarts without dying on them again.
* Supervised workers: a worker's dependency is broken under a running service
  (its consumer group destroyed, the orchestrator's replica set turned into the
  wrong Redis type): ``/healthz`` answers 503 naming the worker and its error,
  the supervisor restarts it with backoff, and health is green again once it
  runs. A source that cannot work at all (the Twitch source with no
  credentials) keeps ingest at 503 naming it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared.keys import Keys, Stream
from tests.chaos.processes import Service, start, wait_healthy
from tests.chaos.reliability import record

pytestmark = pytest.mark.slow

POISON_TS = "0001-01-01T00:00:00+01:00"
WAIT_S = 30.0


def environment(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHANNELS": "demo",
        "CONSUMER_BLOCK_MS": "100",
        "ANTHROPIC_API_KEY": "",
        "LOOP_INTERVAL_S": "0.1",
        "BANDIT_STATE_PATH": str(tmp_path / "bandit.json"),
        "RETRO_DIR": str(tmp_path / "retros"),
        "RETRO_CATCHUP_TIMEOUT_S": "1",
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }


def chat(entry_id: str, ts: str = "2026-02-27T10:00:00Z") -> dict[str, str]:
    return {"v": "1", "type": "chat", "id": entry_id, "channel": "demo", "ts": ts,
            "source": "sim", "user": "u", "text": "hi"}  # fmt: skip


def started(entry_id: str, ts: str) -> dict[str, str]:
    return {"v": "1", "type": "stream_started", "id": entry_id, "channel": "demo", "ts": ts,
            "source": "sim", "stream_id": entry_id}  # fmt: skip


def donation(entry_id: str, ts: str) -> dict[str, str]:
    return {"v": "1", "type": "donation", "id": entry_id, "channel": "demo", "ts": ts,
            "source": "sim", "user": "u", "amount": "5.00"}  # fmt: skip


async def add(redis: Redis, keys: Keys, kind: Stream, fields: dict[str, str]) -> None:
    await redis.xadd(keys.channel_stream(kind, "demo"), fields)  # type: ignore[arg-type]


async def dead_by_group(redis: Redis, keys: Keys) -> dict[str, list[str]]:
    letters: dict[str, list[str]] = {}
    for _, fields in await redis.xrange(keys.channel_dead("demo")):
        letters.setdefault(fields["group"], []).append(fields["reason"])
    return letters


async def applied(redis: Redis, keys: Keys) -> int:
    return int(await redis.get(keys.analytics("demo").version) or 0)


async def until(check: Any, what: str, services: list[Service], within_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        for service in services:
            assert service.process.poll() is None, f"{service.name} exited:\n{service.output()}"
        if time.monotonic() > deadline:
            logs = "\n".join(s.output()[-3000:] for s in services)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.05)


async def health(service: Service) -> tuple[int, dict[str, Any]]:
    """``/healthz``'s status and body; (0, {}) while the process does not answer yet."""
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{service.url}/healthz", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


async def until_down(service: Service, worker: str) -> dict[str, Any]:
    """Wait for a 503 naming ``worker``; the body."""
    body: dict[str, Any] = {}

    async def named() -> bool:
        nonlocal body
        status, body = await health(service)
        return status == 503 and worker in body.get("down", {})

    await until(named, f"{service.name} 503 naming {worker}", [service])
    return body


async def until_green(service: Service) -> None:
    async def green() -> bool:
        return (await health(service))[0] == 200

    await until(green, f"{service.name} healthy again", [service])


async def test_poison_entries_are_dead_lettered_and_every_valid_entry_counted(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    keys = Keys(key_prefix)
    env = environment(redis_url, key_prefix, tmp_path)
    analytics = start("analytics", env, tmp_path / "logs")
    retro = start("retro", env, tmp_path / "logs")
    services = [analytics, retro]
    try:
        await wait_healthy(analytics)
        await wait_healthy(retro)
        await add(redis, keys, Stream.CHAT, chat("c1"))
        await add(redis, keys, Stream.CHAT, chat("p1", POISON_TS))
        await add(redis, keys, Stream.LIFECYCLE, started("p2", POISON_TS))
        await add(redis, keys, Stream.DONATION, donation("p3", POISON_TS))
        await add(redis, keys, Stream.LIFECYCLE, started("s1", "2026-02-27T09:59:00Z"))
        await add(redis, keys, Stream.DONATION, donation("d1", "2026-02-27T10:00:01Z"))
        await add(redis, keys, Stream.CHAT, chat("c2"))

        async def settled() -> bool:
            dead = await dead_by_group(redis, keys)
            done = len(dead.get("analytics", [])) == 3 and len(dead.get("retro", [])) == 1
            return done and await applied(redis, keys) == 4

        await until(settled, "3 + 1 dead letters and 4 valid entries applied", services)
        dead = await dead_by_group(redis, keys)
        assert all(
            "has no UTC equivalent" in reason for reason in dead["analytics"] + dead["retro"]
        )
        assert (await health(analytics))[0] == 200 and (await health(retro))[0] == 200

        analytics.kill()
        began = time.monotonic()
        analytics = services[0] = start("analytics", env, tmp_path / "logs")
        await wait_healthy(analytics)
        await add(redis, keys, Stream.CHAT, chat("c3"))
        await until(lambda: _applied_is(redis, keys, 5), "c3 applied after the restart", services)
        restart_s = time.monotonic() - began
        assert len((await dead_by_group(redis, keys))["analytics"]) == 3, "not again"
        assert "died" not in analytics.output() and "Traceback" not in analytics.output()
        record(
            "poison-entries",
            "unrepresentable `ts` entries (issue 11's) among valid ones; analytics SIGKILLed after",
            4,
            "every poison entry dead-lettered with its reason by each group reading it; every "
            "valid entry applied once; health 200 throughout; the restart does not die again",
            lost=0,
            doubled=0,
            dead_letters=4,
            applied=5,
            restart_to_applied_s=round(restart_s, 2),
        )
    finally:
        for service in services:
            service.stop()


async def _applied_is(redis: Redis, keys: Keys, count: int) -> bool:
    return await applied(redis, keys) == count


# One end-to-end scenario, read top to bottom: kill a worker, see 503 naming it, restart, see 200.
async def test_a_dead_worker_makes_health_503_naming_it_until_it_runs_again(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    keys = Keys(key_prefix)
    env = environment(redis_url, key_prefix, tmp_path)
    services = [
        start(name, env, tmp_path / "logs") for name in ("analytics", "retro", "orchestrator")
    ]
    analytics, retro, orchestrator = services
    figures: dict[str, float] = {}
    try:
        for service in services:
            await wait_healthy(service)

        async def break_and_heal(
            service: Service, worker: str, breaking: Any, healing: Any, says: str
        ) -> None:
            began = time.monotonic()
            await breaking()
            body = await until_down(service, worker)
            assert says in body["down"][worker], body
            figures[f"{service.name} 503 after s"] = round(time.monotonic() - began, 2)
            await healing()
            await until_green(service)
            figures[f"{service.name} green again after s"] = round(time.monotonic() - began, 2)
            assert service.process.poll() is None

        async def nothing() -> None:
            return None

        await break_and_heal(
            analytics,
            "consumer",
            lambda: redis.xgroup_destroy(keys.channel_stream(Stream.CHAT, "demo"), "analytics"),
            nothing,
            "ConsumerGroupMissing",
        )
        await break_and_heal(
            retro,
            "consumer",
            lambda: redis.xgroup_destroy(keys.channel_stream(Stream.LIFECYCLE, "demo"), "retro"),
            nothing,
            "ConsumerGroupMissing",
        )
        await break_and_heal(
            orchestrator,
            "decisions",
            lambda: redis.set(keys.orchestrator_replicas(), "not a sorted set"),
            lambda: redis.delete(keys.orchestrator_replicas()),
            "WRONGTYPE",
        )
        record(
            "dead-worker",
            "a worker's dependency broken under it (consumer group destroyed; wrong Redis type)",
            3,
            "/healthz 503 naming the worker and its error while it is down; restarted with "
            "backoff; 200 once it runs again; no process exited",
            lost=0,
            doubled=0,
            **{name.replace(" ", "_"): value for name, value in figures.items()},
        )
    finally:
        for service in services:
            service.stop()


async def test_a_source_that_cannot_work_keeps_ingest_unhealthy_naming_it(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    env = environment(redis_url, key_prefix, tmp_path) | {"INGEST_SOURCES": "twitch"}
    ingest = start("ingest", env, tmp_path / "logs")
    try:
        body = await until_down(ingest, "twitch")
        assert "TWITCH_CLIENT_ID" in body["down"]["twitch"]
        await asyncio.sleep(6)  # past the time a restarted worker needs to count as up
        status, body = await health(ingest)
        assert status == 503 and "TWITCH_CLIENT_ID" in body["down"]["twitch"]
        assert ingest.process.poll() is None
        record(
            "bad-source-setting",
            "ingest started with the Twitch source and no credentials",
            1,
            "/healthz 503 naming the twitch source and the missing settings, for as long as "
            "they are missing; the process keeps serving",
            lost=0,
            doubled=0,
        )
    finally:
        ingest.stop()
