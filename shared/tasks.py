"""Background tasks a service's lifespan owns: started with crash reporting, stopped in time.

A task that dies is logged the moment it happens (not only at shutdown), and at
shutdown every task gets ``timeout_s`` to finish what it has in hand before it is
cancelled; the outcome of each feeds the service's one-line summary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

log = logging.getLogger("shared.tasks")


def start_task(name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``work`` as task ``name``; a crash is logged at once, loudly."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_report_crash)
    return task


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "%s died: %r; the service keeps running without it, restart it to recover",
            task.get_name(),
            task.exception(),
        )


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
