"""The lifespan skeleton: workers stop first, closing steps run in order, Redis closes, one line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from shared.lifespan import ServiceLifespan
from shared.settings import BaseServiceSettings

log = logging.getLogger("tests.lifespan")


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> BaseServiceSettings:
    built: BaseServiceSettings = make_settings(BaseServiceSettings)
    return built


def summary_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]


async def name_connection(life: ServiceLifespan, key_prefix: str) -> str:
    """Name the lifespan's (one, idle) Redis connection, so the server can say when it is gone."""
    name = f"lifespan-test-{key_prefix.strip(':')}"
    await life.redis.client_setname(name)
    return name


async def closed(redis: Redis, name: str) -> bool:
    """Whether the server has seen the connection named ``name`` go (waits up to 5 s)."""
    async with asyncio.timeout(5):
        while any(client["name"] == name for client in await redis.client_list()):
            await asyncio.sleep(0.02)
    return True


async def test_workers_stop_then_closing_steps_run_in_order_then_one_summary_line(
    settings: BaseServiceSettings, redis: Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    order: list[str] = []

    async def worker(stop: asyncio.Event) -> None:
        await stop.wait()
        order.append("worker stopped")

    async def step(name: str) -> None:
        assert await life.redis.ping(), "Redis is still open during the closing steps"
        order.append(name)

    async with ServiceLifespan("demo", settings, log, stop_timeout_s=2) as life:
        life.start("worker", lambda: worker(life.stop))
        life.on_close(lambda: step("first"))
        life.on_close(lambda: step("second"))
        life.summary(lambda: f"{len(order)} things done")
        name = await name_connection(life, key_prefix)

    assert order == ["worker stopped", "first", "second"]
    assert life.outcomes == {"worker": "stopped"}
    assert await closed(redis, name)
    [line] = summary_lines(caplog)
    assert line.startswith("demo stopped after ")
    assert line.endswith(" s: 3 things done; redis closed")


async def test_a_failing_closing_step_is_logged_and_the_rest_still_close(
    settings: BaseServiceSettings, redis: Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("disk full")

    async def after() -> None:
        ran.append("after")

    async with ServiceLifespan("demo", settings, log, stop_timeout_s=1) as life:
        life.on_close(broken)
        life.on_close(after)
        life.summary(lambda: "done")
        name = await name_connection(life, key_prefix)

    assert ran == ["after"]
    assert any("a closing step failed" in r.getMessage() for r in caplog.records)
    assert await closed(redis, name)
    assert len(summary_lines(caplog)) == 1


async def test_a_start_up_that_fails_still_stops_its_workers_and_closes_redis(
    settings: BaseServiceSettings, redis: Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    with pytest.raises(RuntimeError, match="bad setting"):
        async with ServiceLifespan("demo", settings, log, stop_timeout_s=1) as life:
            task = life.start("worker", life.stop.wait)
            name = await name_connection(life, key_prefix)
            raise RuntimeError("bad setting")
    assert task.done() and life.outcomes == {"worker": "stopped"}
    assert await closed(redis, name)
    [line] = summary_lines(caplog)
    assert line.startswith("demo stopped after ") and "during start-up" in line
