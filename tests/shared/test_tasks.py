"""The supervisor: a dead worker is named as down, restarted with backoff, and up once stable."""

from __future__ import annotations

import asyncio

from shared.tasks import Supervisor, finish_tasks


async def test_a_worker_that_dies_is_down_then_restarted_and_up_once_stable() -> None:
    supervisor = Supervisor(first_backoff_s=0.05, max_backoff_s=0.2, stable_s=0.3)
    stop = asyncio.Event()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"broken dependency, run {runs}")
        await stop.wait()

    task = supervisor.start("worker", flaky, stop)
    await asyncio.sleep(0.02)
    assert "RuntimeError: broken dependency, run 1" in supervisor.down()["worker"]
    async with asyncio.timeout(2):
        while runs < 3:
            await asyncio.sleep(0.01)
    assert "worker" in supervisor.down(), "down until the new run has lasted stable_s"
    await asyncio.sleep(0.35)
    assert supervisor.down() == {}
    stop.set()
    assert await finish_tasks([task], 1) == {"worker": "stopped"}
    assert supervisor.workers["worker"].failures == 2


async def test_a_worker_that_finishes_its_work_is_not_restarted_nor_down() -> None:
    supervisor = Supervisor(first_backoff_s=0.01)
    stop = asyncio.Event()
    runs = 0

    async def finite() -> None:
        nonlocal runs
        runs += 1

    task = supervisor.start("sim", finite, stop)
    await asyncio.wait_for(task, 1)
    assert runs == 1 and supervisor.down() == {}


async def test_a_worker_that_keeps_failing_stays_down_and_stop_ends_the_backoff() -> None:
    supervisor = Supervisor(first_backoff_s=0.01, max_backoff_s=60, stable_s=0.05)
    stop = asyncio.Event()

    async def hopeless() -> None:
        raise ValueError("TWITCH_CLIENT_ID is not set")

    task = supervisor.start("twitch", hopeless, stop)
    await asyncio.sleep(0.3)
    assert "TWITCH_CLIENT_ID" in supervisor.down()["twitch"]
    failures = supervisor.workers["twitch"].failures
    assert 3 <= failures <= 8, "backoff doubles: a handful of tries, not a busy loop"
    stop.set()
    assert await finish_tasks([task], 1) == {"twitch": "stopped"}
