"""Helper processes of a benchmark: started, talked to over stdin/stdout, always stopped.

A helper is a role of :mod:`tools.benchmarks.roles` (``python -m tools.benchmarks.roles
ROLE ...``) or, with an environment of its own, any command (the analytics service).
Helpers say one line each to the benchmark on stdout and time with
``time.perf_counter`` (CLOCK_MONOTONIC on Linux, so readings compare across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.analytics.settings import AnalyticsSettings

HELPER = "tools.benchmarks.roles"
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def child(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> AsyncIterator[Child]:
    """A helper process (``python -m tools.benchmarks.roles ARGS`` unless ``env`` is given).

    With ``env``, ``args`` is the whole command. Its stderr goes to a temporary file,
    quoted when it fails; it is terminated (then killed) on the way out, whatever happened.
    """
    command = list(args) if env is not None else [sys.executable, "-m", HELPER, *args]
    with tempfile.TemporaryFile("w+") as errors:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            cwd=cwd,
            env=env,
            limit=64 * 1024 * 1024,
        )
        helper = Child(process, errors)
        try:
            yield helper
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@dataclass
class Child:
    """A running helper process and where its stderr goes."""

    process: asyncio.subprocess.Process
    errors: IO[str]

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    async def line(self, timeout_s: float) -> str:
        """Its next stdout line; fails, quoting its stderr, if it ends or stays silent."""
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            raw = b""
        if not raw:
            self.errors.seek(0)
            tail = self.errors.read()[-2000:]
            raise RuntimeError(f"helper {self.pid} said nothing in {timeout_s} s:\n{tail}")
        return raw.decode().strip()

    async def tell(self, text: str) -> None:
        """Write one line to its stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{text}\n".encode())
        await self.process.stdin.drain()


def app_env(redis_url: str, port: int, deflate: bool = False) -> dict[str, str]:
    """Environment of the analytics subprocess: our environment less any analytics setting.

    ``deflate`` sets ``WS_PER_MESSAGE_DEFLATE`` (the app's default is off).

    Settings are defaults but for those named here; the app runs outside the checkout
    (``PYTHONPATH`` points at it) so that no ``.env`` there changes them either.
    """
    fields = AnalyticsSettings.model_fields
    inherited = {name: value for name, value in os.environ.items() if name.lower() not in fields}
    return inherited | {
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": "",
        "CHANNELS": "demo",
        "BIND_HOST": "127.0.0.1",
        "ANALYTICS_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "CONSUMER_NAME": "bench",
        "DASHBOARD_TOKEN": "",
        "CORS_ORIGINS": "",
        "BROADCAST_INTERVAL_S": "2.0",
        "CLIENT_QUEUE_MESSAGES": "256",
        "WS_PER_MESSAGE_DEFLATE": "true" if deflate else "false",
    }
