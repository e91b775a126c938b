"""The one reconnect loop (shared.reconnect): what it retries, how long it waits, when it ends."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.reconnect import MAX_DELAY_S, Backoff, until_connected


class Flaky:
    """An action that fails with a lost connection ``failures`` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RedisConnectionError(f"Connection refused (attempt {self.calls})")
        return "answer"


async def test_connection_errors_are_retried_with_doubling_capped_delays() -> None:
    waits: list[float] = []
    action = Flaky(failures=5)
    result = await until_connected(
        action, lambda _error, delay_s: waits.append(delay_s), backoff=Backoff(0.001, 0.004)
    )
    assert result == "answer"
    assert action.calls == 6
    assert waits == [0.001, 0.002, 0.004, 0.004, 0.004]


async def test_a_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(0.001, 0.004)
    for _ in range(3):
        await backoff.wait()
    assert backoff.delay_s == 0.004
    backoff.reset()
    assert backoff.delay_s == 0.001
    assert (Backoff().first_s, Backoff().max_s) == (0.1, MAX_DELAY_S)


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await until_connected(broken, lambda _e, _d: None)
    assert calls == 1


async def test_once_stopped_the_first_failure_gives_up_with_none() -> None:
    stop = asyncio.Event()
    stop.set()
    given_up: list[Exception] = []
    action = Flaky(failures=100)
    result = await until_connected(
        action, lambda _e, _d: None, stop=stop, on_give_up=given_up.append
    )
    assert result is None
    assert action.calls == 1
    assert "attempt 1" in str(given_up[0])


async def test_once_stopped_a_few_more_attempts_are_made_when_asked() -> None:
    stop = asyncio.Event()
    stop.set()
    action = Flaky(failures=100)
    result = await until_connected(
        action,
        lambda _e, _d: None,
        stop=stop,
        attempts_once_stopped=3,
        backoff=Backoff(0.001, 0.001),
    )
    assert result is None
    assert action.calls == 3


async def test_a_stop_cuts_the_wait_short() -> None:
    stop = asyncio.Event()
    action = Flaky(failures=100)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    began = time.monotonic()
    result = await until_connected(
        action, lambda _e, _d: None, stop=stop, backoff=Backoff(30.0, 30.0)
    )
    assert result is None
    assert time.monotonic() - began < 5.0
    assert action.calls == 2
