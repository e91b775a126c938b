"""Riding out a Redis outage: retry with a capped, doubling delay, written once.

Every loop that must outlive a lost connection (the consumer runner, ingest's
held-event buffer, the simulator, the recorder) calls :func:`until_connected`
with what to try and what to say while Redis is away. Only connection errors
(``CONNECTION_ERRORS``) are retried; anything else propagates at once. The
first retry waits ``FIRST_DELAY_S``, each further one twice as long, never more
than ``MAX_DELAY_S``: a restarting Redis is found again within seconds, and a
long outage costs a few attempts a minute, not a busy loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.redis_client import CONNECTION_ERRORS
from shared.waiting import wait_or_stop

T = TypeVar("T")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0


class Backoff:
    """The delay before the next attempt: doubles after each wait, up to ``max_s``."""

    def __init__(self, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.delay_s = first_s

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self.delay_s = self.first_s

    async def wait(self, stop: asyncio.Event | None = None) -> None:
        """Sleep the current delay, then double it up to the cap.

        Cut short when ``stop`` is set meanwhile; once it is set, the whole delay
        is slept, so the last attempts of a shutdown stay spaced out.
        """
        if stop is None or stop.is_set():
            await asyncio.sleep(self.delay_s)
        else:
            await wait_or_stop(stop, self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.max_s)


async def until_connected(
    action: Callable[[], Awaitable[T]],
    on_unreachable: Callable[[Exception, float], None],
    *,
    stop: asyncio.Event | None = None,
    attempts_once_stopped: int = 1,
    on_give_up: Callable[[Exception], None] | None = None,
    backoff: Backoff | None = None,
) -> T | None:
    """``await action()`` until it returns, waiting a :class:`Backoff` after each connection error.

    ``on_unreachable(error, delay_s)`` is called before each wait (to log, count,
    note the outage). With ``stop``: once it is set, a failed attempt ends the
    retries when ``attempts_once_stopped`` attempts in all have failed (1: the
    first failure after ``stop``); then ``on_give_up(error)`` is called and the
    result is ``None``. Without ``stop`` it retries until cancelled. ``backoff``:
    the delays (default: ``FIRST_DELAY_S`` doubling up to ``MAX_DELAY_S``).
    """
    backoff = backoff or Backoff()
    attempts = 0
    while True:
        try:
            return await action()
        except CONNECTION_ERRORS as error:
            attempts += 1
            if stop is not None and stop.is_set() and attempts >= attempts_once_stopped:
                if on_give_up is not None:
                    on_give_up(error)
                return None
            on_unreachable(error, backoff.delay_s)
            await backoff.wait(stop)
