"""The skeleton every service's lifespan is written on: what it owns, and the order it stops.

Each ``services/<svc>/app.py`` lifespan opens one :class:`ServiceLifespan` and,
inside it, builds its own objects, starts its workers with :meth:`~ServiceLifespan.start`,
sets its typed state (:mod:`shared.app_state`), says how it closes
(:meth:`~ServiceLifespan.on_close`) and what its summary line reports
(:meth:`~ServiceLifespan.summary`), then yields to the server. The skeleton owns
the rest, in starlette's spirit of a lifespan that owns its resources:

- at start: the start time, the Redis client (``shared.redis_client.connect_settings``),
  the :class:`shared.tasks.Supervisor` and the ``stop`` event the workers watch;
- at stop, in this order, whether the server stopped or start-up failed: set ``stop``;
  give the workers ``stop_timeout_s`` to finish (how each ended goes to
  :attr:`~ServiceLifespan.outcomes`); run the closing steps in the order they were
  added; close Redis; log one line, ``<service> stopped after N s: <summary>; redis closed``.

A closing step that raises is logged and the next one still runs, so Redis is
always closed and the summary always written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from shared.redis_client import connect_settings
from shared.settings import BaseServiceSettings
from shared.tasks import Supervisor, Work, finish_tasks

Step = Callable[[], Awaitable[Any]]


class ServiceLifespan:
    """Redis, the supervisor, ``stop``, the workers and the ordered close of one service."""

    def __init__(
        self,
        service: str,
        settings: BaseServiceSettings,
        log: logging.Logger,
        *,
        stop_timeout_s: float,
    ) -> None:
        self.service = service
        self.log = log
        self.stop_timeout_s = stop_timeout_s
        self.started = time.monotonic()
        self.redis = connect_settings(settings)
        self.supervisor = Supervisor()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.outcomes: dict[str, str] = {}
        """How each worker ended (``stopped``, ``failed (...)``, ``cancelled after N s``)."""
        self._closing: list[Step] = []
        self._summary: Callable[[], str] | None = None

    def start(self, name: str, work: Work) -> asyncio.Task[Any]:
        """Run ``work()`` as worker ``name`` under the supervisor until ``stop`` is set."""
        task = self.supervisor.start(name, work, self.stop)
        self.tasks.append(task)
        return task

    def on_close(self, step: Step) -> None:
        """Run ``step()`` once the workers have finished, before Redis closes (in order added)."""
        self._closing.append(step)

    def summary(self, describe: Callable[[], str]) -> None:
        """``describe()`` is called after the close; it fills the one summary line."""
        self._summary = describe

    async def __aenter__(self) -> ServiceLifespan:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the workers, run the closing steps, close Redis, log the summary line."""
        self.stop.set()
        self.outcomes = await finish_tasks(self.tasks, self.stop_timeout_s)
        for step in self._closing:
            try:
                await step()
            except Exception:
                self.log.exception("%s: a closing step failed; closing the rest", self.service)
        await self.redis.aclose()
        elapsed_s = time.monotonic() - self.started
        if self._summary is None:
            self.log.warning(
                "%s stopped after %.1f s, during start-up; redis closed", self.service, elapsed_s
            )
            return
        self.log.info(
            "%s stopped after %.1f s: %s; redis closed", self.service, elapsed_s, self._summary()
        )
