"""Background tasks a service's lifespan owns: supervised, restarted, reported, stopped in time.

:class:`Supervisor` runs each worker (a consumer, a source, a broadcast loop) as
a named task. A worker that raises is logged at once, loudly, and started again
after a backoff that doubles from ``first_backoff_s`` to ``max_backoff_s`` (and
starts over once a run has lasted ``stable_s``). From its death until its new run
has lasted ``stable_s``, the worker is *down*: :meth:`Supervisor.down` names it
with the error, and ``/healthz`` (``shared.ops``) answers 503 with that list, so
``docker compose``, a load balancer or an operator sees a service that cannot do
its job (a source with a bad setting keeps failing and so stays down). A worker
that returns normally has finished its work (a simulated stream of fixed length)
and is not restarted. At shutdown every task gets ``timeout_s`` to finish what it
has in hand before it is cancelled; the outcome of each feeds the service's
one-line summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from shared.waiting import wait_or_stop

log = logging.getLogger("shared.tasks")

RESTARTS = Counter(
    "streamloop_task_restarts_total", "Worker tasks restarted after they died.", ["task"]
)

Work = Callable[[], Coroutine[Any, Any, Any]]


@dataclass
class WorkerState:
    """What the supervisor knows of one worker."""

    failures: int = 0
    last_error: str = ""
    running_since: float | None = None  # monotonic time of the current run; None while down


class Supervisor:
    """Runs and restarts a service's workers; says which are down (see module doc)."""

    def __init__(
        self, *, first_backoff_s: float = 0.5, max_backoff_s: float = 30.0, stable_s: float = 5.0
    ) -> None:
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.workers: dict[str, WorkerState] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, name: str, work: Work, stop: asyncio.Event) -> asyncio.Task[Any]:
        """Run ``work()`` as task ``name``, restarting it when it dies, until ``stop`` is set."""
        self.workers[name] = WorkerState()
        task = asyncio.create_task(self._supervise(name, work, stop), name=name)
        self.tasks[name] = task
        return task

    def down(self) -> dict[str, str]:
        """Workers dead or not yet stable again, with why; empty when all are up."""
        now = time.monotonic()
        return {
            name: state.last_error
            for name, state in self.workers.items()
            if state.failures
            and (state.running_since is None or now - state.running_since < self.stable_s)
        }

    async def _supervise(self, name: str, work: Work, stop: asyncio.Event) -> None:
        state = self.workers[name]
        delay = self.first_backoff_s
        while True:
            state.running_since = time.monotonic()
            try:
                await work()
                return  # finished its work
            except Exception as error:
                ran_s = time.monotonic() - state.running_since
                state.running_since = None
                state.failures += 1
                if ran_s >= self.stable_s:
                    delay = self.first_backoff_s
                state.last_error = f"died after {ran_s:.1f} s: {describe(error)}"
                log.error(
                    "%s died (%d so far): %s; restarting in %.1f s",
                    name,
                    state.failures,
                    describe(error),
                    delay,
                    exc_info=error,
                )
            if await wait_or_stop(stop, delay):
                return
            RESTARTS.labels(name).inc()
            log.warning("%s: restarting", name)
            delay = min(delay * 2, self.max_backoff_s)


def describe(error: BaseException) -> str:
    """``Type: message``, readable whatever the exception's own ``repr`` looks like."""
    return f"{type(error).__name__}: {error}"[:500]


async def finish_tasks(tasks: Iterable[asyncio.Task[Any]], timeout_s: float) -> dict[str, str]:
    """Wait up to ``timeout_s`` for the tasks, cancel any that overstay; outcome by task name."""
    tasks = list(tasks)
    if not tasks:
        return {}
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {task.get_name(): outcome(task, task in done, timeout_s) for task in tasks}


def outcome(task: asyncio.Task[Any], finished: bool, timeout_s: float) -> str:
    """``stopped``, ``failed (...)`` or ``cancelled after N s``."""
    if not finished:
        return f"cancelled after {timeout_s:.0f} s"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return f"failed ({error!r})" if error is not None else "stopped"
