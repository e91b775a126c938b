"""Real service processes for the chaos tests: start, wait for health, kill, stop.

Each service runs as ``python -m services.<name>`` (or a test harness module)
with its settings in the environment, exactly as an operator would start it;
its output goes to a log file the test can show when something fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.redis_server import free_port
from tools import health

PORT_SETTING = {
    "ingest": "INGEST_PORT",
    "analytics": "ANALYTICS_PORT",
    "orchestrator": "ORCHESTRATOR_PORT",
    "retro": "RETRO_PORT",
}


@dataclass
class Service:
    """One running process, its HTTP port and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL of its HTTP app."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait for the orderly exit; the exit code (SIGKILL after ``timeout_s``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(name: str, env: dict[str, str], log_dir: Path, *, module: str | None = None) -> Service:
    """Start service ``name`` (or ``module``) with ``env`` on top of this process's environment."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **env, PORT_SETTING[name]: str(port), "LOG_LEVEL": "INFO"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module or f"services.{name}"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Service(name, process, port, log_path)


async def healthy(service: Service, http: httpx.AsyncClient) -> bool:
    """Whether ``/healthz`` answers 200 now (the process up and Redis reachable)."""
    try:
        return (await http.get(f"{service.url}/healthz", timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


async def wait_healthy(service: Service, within_s: float = 30.0) -> float:
    """Seconds until ``/healthz`` answers 200; fails with the log if it exits or times out."""
    try:
        return await health.wait_healthy(
            service.url, name=service.name, process=service.process, within_s=within_s, poll_s=0.05
        )
    except health.NotHealthy as error:
        raise AssertionError(f"{error}:\n{service.output()[-3000:]}") from None
