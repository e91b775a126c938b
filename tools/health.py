"""Waiting for ``/healthz``: one poller for ``make run``, the benchmarks, the soak, the tests.

Every service answers ``GET /healthz`` with 200 once its workers run and Redis
answers (``shared.ops``). A starter polls it until then, and gives up early,
with the exit code, if the process it started has already died.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from typing import Any

import httpx

HEALTH_TIMEOUT_S = 30.0
POLL_S = 0.1


class NotHealthy(RuntimeError):
    """The process exited, or ``/healthz`` did not answer 200 in time."""


async def wait_healthy(
    base_url: str,
    *,
    name: str = "service",
    process: asyncio.subprocess.Process | subprocess.Popen[Any] | None = None,
    within_s: float = HEALTH_TIMEOUT_S,
    poll_s: float = POLL_S,
) -> float:
    """Poll ``{base_url}/healthz`` until it answers 200; the seconds that took.

    Raises :class:`NotHealthy` naming ``name`` when ``process`` (the service's, if
    this caller started it) exits first or ``within_s`` passes. No proxy from the
    environment is used: the service is on this machine.
    """
    url = f"{base_url.rstrip('/')}/healthz"
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
        while True:
            code = exit_code(process)
            if code is not None:
                raise NotHealthy(f"{name} exited with code {code}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return time.monotonic() - began
            if time.monotonic() - began > within_s:
                raise NotHealthy(f"{name} did not answer {url} with 200 within {within_s:.0f} s")
            await asyncio.sleep(poll_s)


def exit_code(process: asyncio.subprocess.Process | subprocess.Popen[Any] | None) -> int | None:
    """The process's exit code; ``None`` while it runs (or when there is none to watch)."""
    if process is None:
        return None
    if isinstance(process, subprocess.Popen):
        return process.poll()
    return process.returncode
