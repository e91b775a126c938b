"""``make run``: every service as a local process, on a real Redis, with readable logs.

Uses the Redis at ``REDIS_URL`` when it answers, else starts an embedded
``redis-server`` on a free port. Starts each service (ingest on the simulator by
default), prefixes its log lines with its name, waits for every ``/healthz``, and
on Ctrl-C stops them in order (``STOP_ORDER``): ingest first, so the simulated
stream ends, then retro, which prints the report while analytics still runs, then
the rest. A service that dies on its own is reported loudly and stops the rest.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.keys import Stream
from shared.redis_client import redact_url
from shared.redis_server import RedisUnavailable, ensure_redis
from shared.settings import BaseServiceSettings
from tools.health import NotHealthy, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0
COLOURS = {"ingest": 36, "analytics": 32, "orchestrator": 35, "retro": 33}


@dataclass(frozen=True)
class Service:
    """One service process: its name, and the port setting its ``/healthz`` listens on."""

    name: str
    port_env: str
    default_port: int

    @property
    def port(self) -> int:
        """The port, from the environment or the settings' default."""
        return int(os.environ.get(self.port_env, self.default_port))

    @property
    def url(self) -> str:
        """Base URL of its HTTP app on this machine."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def available(self) -> bool:
        """True when ``python -m services.<name>`` exists in this checkout."""
        return (ROOT / "services" / self.name / "__main__.py").exists()


SERVICES = [  # start order
    Service("ingest", "INGEST_PORT", 8001),
    Service("analytics", "ANALYTICS_PORT", 8000),
    Service("orchestrator", "ORCHESTRATOR_PORT", 8002),
    Service("retro", "RETRO_PORT", 8003),
]
STOP_ORDER = ["ingest", "retro", "orchestrator", "analytics"]
"""Ingest first (the simulated stream ends), then retro (it reports the stream, reading
figures analytics is still keeping current), the orchestrator, and analytics last."""


def say(message: str) -> None:
    """A line from the supervisor itself."""
    print(f"\033[1mrun     |\033[0m {message}", flush=True)


async def pipe_output(name: str, stream: asyncio.StreamReader) -> None:
    """Copy a child's output line by line, prefixed with its coloured name."""
    prefix = f"\033[{COLOURS.get(name, 37)}m{name:<8}|\033[0m "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def start(service: Service, env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start ``python -m services.<name>`` in its own session (Ctrl-C reaches only us)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.{service.name}",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


async def stop(service: Service, process: asyncio.subprocess.Process) -> str:
    """SIGINT, wait, then SIGKILL if it overstays; returns how it ended."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            return f"{service.name} killed after {STOP_TIMEOUT_S:.0f} s"
    return f"{service.name} exit {process.returncode}"


async def supervise(redis_url: str) -> int:
    """Start the services, wait for Ctrl-C or a death, stop them in order."""
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    services = [service for service in SERVICES if service.available]
    processes: dict[str, asyncio.subprocess.Process] = {}
    async with asyncio.TaskGroup() as pipes:
        for service in services:
            process = processes[service.name] = await start(service, env)
            assert process.stdout is not None  # piped by start()
            pipes.create_task(pipe_output(service.name, process.stdout))
        code = await run_until_interrupted(services, processes, redis_url)
        ordered = sorted(services, key=lambda s: STOP_ORDER.index(s.name))
        say("stopping: " + ", ".join([await stop(s, processes[s.name]) for s in ordered]))
    return code


async def run_until_interrupted(
    services: list[Service], processes: dict[str, asyncio.subprocess.Process], redis_url: str
) -> int:
    """Wait until healthy, then until Ctrl-C (exit 0) or a service dies (exit 1)."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    try:
        await asyncio.gather(
            *(wait_healthy(s.url, name=s.name, process=processes[s.name]) for s in services)
        )
    except NotHealthy as error:
        say(f"\033[31mFAILED TO START: {error}\033[0m")
        return 1
    announce(services, redis_url)
    deaths = [asyncio.create_task(processes[s.name].wait(), name=s.name) for s in services]
    interrupt = asyncio.create_task(interrupted.wait())
    done, _ = await asyncio.wait([*deaths, interrupt], return_when=asyncio.FIRST_COMPLETED)
    for task in [*deaths, interrupt]:
        task.cancel()
    dead = [task.get_name() for task in done if task is not interrupt]
    if dead:
        say(f"\033[31mSERVICE DIED: {', '.join(dead)}; stopping the rest\033[0m")
        return 1
    return 0


def announce(services: list[Service], redis_url: str) -> None:
    """Tell the person where to look."""
    port = redis_url.split(":")[-1].split("/")[0]
    say("all services healthy: " + ", ".join(f"{s.name} :{s.port}" for s in services))
    if any(s.name == "analytics" for s in services):
        say(f"dashboard: http://127.0.0.1:{os.environ.get('ANALYTICS_PORT', 8000)}")
    settings = BaseServiceSettings(redis_url=redis_url)
    channel = settings.channels[0]
    chat = shlex.quote(settings.keys.channel_stream(Stream.CHAT, channel))
    say(f"watch {channel}'s chat arrive: redis-cli -p {port} XREAD BLOCK 0 STREAMS {chat} '$'")
    say("Ctrl-C ends the stream and stops everything")


def main() -> int:
    """Entry point of ``make run``; 2 when Redis cannot be used (the reason is printed)."""
    try:
        with ensure_redis(os.environ.get("REDIS_URL", "redis://localhost:6379/0")) as redis_url:
            say(f"Redis at {redact_url(redis_url)}")
            return asyncio.run(supervise(redis_url))
    except RedisUnavailable as error:
        say(f"cannot start: {str(error).rstrip('.')}. Fix REDIS_URL (password, TLS) or unset it.")
        return 2


if __name__ == "__main__":
    sys.exit(main())
