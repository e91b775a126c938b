"""``analytics-fanout``: the app's hub and socket route beside a bare ``websockets`` server.

The same donation-sized frames go to a crowd of clients in a helper process
(the ``count`` role of :mod:`tools.benchmarks.roles`), timed until the last arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import uvicorn
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import broadcast as ws_broadcast
from websockets.asyncio.server import serve as ws_serve

from services.analytics.app import create_app
from services.analytics.hub import Hub
from services.analytics.settings import AnalyticsSettings
from services.analytics.state import AnalyticsState
from shared.app_state import state_of
from shared.redis_server import RedisServer, free_port
from tools.benchmarks.children import child
from tools.benchmarks.harness import raise_fd_limit, run_uvloop
from tools.benchmarks.measure import machine_cpu_s, proc_cpu_s

FANOUT_CLIENTS = 1_000
FANOUT_FRAMES = 100
FANOUT_REPEATS = 2
FANOUT_COMPRESSIONS = ("deflate", "off")
FANOUT_FRAME = json.dumps(
    {
        "type": "donation",
        "data": {
            "id": "d-000000",
            "username": "cosmic_otter",
            "amount": 5.0,
            "message": "great stream, keep it up!",
            "timestamp": "2026-02-27T18:00:00.123Z",
            "type": "donation",
        },
    },
    separators=(",", ":"),
)


@contextlib.asynccontextmanager
async def app_in_process(settings: AnalyticsSettings) -> AsyncIterator[tuple[int, Hub]]:
    """The real app under uvicorn on a free port in this loop; yields (port, its hub)."""
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    await task
                await asyncio.sleep(0.02)
        yield port, state_of(app, AnalyticsState).hub
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def bare_server() -> AsyncIterator[tuple[int, Callable[[str], None]]]:
    """A plain ``websockets`` server: two frames on connect, then ``broadcast`` to all."""
    port = free_port()
    connections: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        await connection.send('{"type":"stream_state","data":{}}')
        await connection.send('{"type":"metrics_update","data":{}}')
        connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            connections.discard(connection)

    async with ws_serve(handler, "127.0.0.1", port):
        yield port, lambda frame: ws_broadcast(connections, frame)


@dataclass(frozen=True)
class FanoutRun:
    """One fan-out measurement."""

    rate: float
    seconds: float
    server_cpu: float
    client_cpu: float
    other_cpu: float
    complete: bool


def fanout_frames() -> list[str]:
    """``FANOUT_FRAMES`` distinct donation-sized frames."""
    return [FANOUT_FRAME.replace("d-000000", f"d-{n:06d}") for n in range(FANOUT_FRAMES)]


async def fanout_once(port: int, publish: Callable[[str], None], compression: str) -> FanoutRun:
    """Time ``FANOUT_FRAMES`` publishes until every client of a helper process has them all.

    Timed from the first publish to the last frame's arrival on the last client; the
    loop is yielded to after each publish so sending overlaps publishing.
    """
    url = f"ws://127.0.0.1:{port}/ws/metrics?channel=demo"
    frames = fanout_frames()
    async with child("count", url, str(FANOUT_CLIENTS), str(FANOUT_FRAMES), "2", compression) as c:
        await c.line(120)
        await asyncio.sleep(0.3)
        cpu, client_cpu, machine = time.process_time(), proc_cpu_s(c.pid), machine_cpu_s()
        started = time.perf_counter()
        for frame in frames:
            publish(frame)
            await asyncio.sleep(0)
        done = json.loads(await c.line(120))
        cpu, client_cpu = time.process_time() - cpu, proc_cpu_s(c.pid) - client_cpu
        machine = machine_cpu_s() - machine - cpu - client_cpu
    seconds = done["last"] - started
    return FanoutRun(
        done["frames"] / seconds,
        seconds,
        cpu / seconds,
        client_cpu / seconds,
        machine / seconds,
        done["frames"] == FANOUT_CLIENTS * FANOUT_FRAMES,
    )


async def fanout_app(url: str, compression: str) -> FanoutRun:
    """Fan-out through the app's hub and ``/ws/metrics`` (the app in this process)."""
    settings = AnalyticsSettings(
        _env_file=None,
        redis_url=url,
        channels=["demo"],
        consumer_name="bench",
        broadcast_interval_s=3600,  # only the bench's frames during the measurement
    )
    async with app_in_process(settings) as (port, hub):
        return await fanout_once(port, lambda frame: hub.publish("demo", frame), compression)


async def fanout_bare(compression: str) -> FanoutRun:
    """The same frames through ``websockets.broadcast`` of a bare server in this process."""
    async with bare_server() as (port, publish):
        return await fanout_once(port, publish, compression)


def bench_fanout() -> str:
    """``analytics-fanout``: the app's hub + socket route beside a bare ``websockets`` server."""
    raise_fd_limit()
    server = RedisServer()
    server.start()
    best: dict[tuple[str, str], FanoutRun] = {}
    try:
        for _ in range(FANOUT_REPEATS):
            for compression in FANOUT_COMPRESSIONS:
                for name in ("app", "bare"):
                    run = run_uvloop(
                        fanout_app(server.url, compression)
                        if name == "app"
                        else fanout_bare(compression)
                    )
                    key = (name, compression)
                    if key not in best or run.rate > best[key].rate:
                        best[key] = run
    finally:
        server.close()
    labels = {
        "app": "app: `Hub.publish` → `/ws/metrics` (uvicorn, starlette)",
        "bare": "bare `websockets` server, `websockets.broadcast`",
    }
    rows = [
        f"| {labels[name]} | {compression} | {run.rate:,.0f} | {run.seconds:.2f} "
        f"| {run.server_cpu:.0%} | {run.server_cpu / run.rate * 1e6:.1f} | {run.client_cpu:.0%} "
        f"| {run.other_cpu:.0%} |"
        f"{'' if run.complete else ' (frames missing!)'}"
        for (name, compression), run in sorted(best.items(), key=lambda item: item[0][1])
    ]
    ratios = ", ".join(
        f"{mode}: **{best[('app', mode)].rate / best[('bare', mode)].rate:.2f}**"
        for mode in FANOUT_COMPRESSIONS
    )
    return "\n".join(
        [
            f"{FANOUT_FRAMES} donation-sized frames ({len(FANOUT_FRAME)} bytes) published to "
            f"{FANOUT_CLIENTS:,} WebSocket clients (`websockets`, one helper process), timed "
            "from the first publish to the last frame on the last client; server in the "
            f"benchmark process on uvloop; best of {FANOUT_REPEATS} per row (runs interleaved). "
            "`deflate`: the clients offer permessage-deflate, as browsers do, and both servers "
            "accept it; `off`: the clients do not offer it. CPU columns: share of one core over "
            "the run for the server process, the client process and everything else on the "
            "machine (other work sharing the 2 cores); server CPU time per frame delivered.",
            "",
            "| server | compression | frames/s | seconds | server CPU | server CPU µs/frame "
            "| client CPU | rest of machine |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Ratio app / bare: {ratios}. No aim was set for this one; the ratio is the figure.",
        ]
    )
