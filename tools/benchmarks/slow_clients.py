"""``slow-clients`` for ``make bench``: readers' donation latency beside clients that never read.

The analytics service runs as ``python -m services.analytics`` (default settings:
``CLIENT_QUEUE_MESSAGES`` 256, broadcasts every 2 s) on its own ``redis-server``.
200 WebSocket clients read everything (the ``crowd`` helper of
:mod:`tools.benchmarks.roles`, which notes when each donation arrives). In the
second configuration 200 more clients complete the handshake on raw TCP sockets
and never read (:func:`stalled_sockets`), so the server's writes to them back up
until their queues overflow and they are dropped. Donations with 1,000-character
messages (the most an event allows) are published at a steady rate, each timed
from just before ``Publisher.publish`` to its ``donation`` frame on every reader.

The harness of :mod:`tools.benchmarks` (processes, scraping, percentiles, uvloop)
is imported, not repeated; this module adds the stalled sockets, the donation
loop and the section's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer, free_port
from tools.benchmarks.analytics_latency import LATENCY_COMPRESSION, timed_donation
from tools.benchmarks.children import app_env, child
from tools.benchmarks.harness import raise_fd_limit, run_uvloop
from tools.benchmarks.measure import (
    histogram_p99,
    latency_row,
    machine_cpu_s,
    percentile,
    proc_cpu_s,
    redis_cpu_s,
    scrape,
)
from tools.health import wait_healthy

READERS = 200
STALLED = 200
DONATION_RATE = 20.0
SECONDS = 20.0
WARMUP_S = 2.0
SETTLE_S = 3.0
REPEATS = 3
AIM_RATIO = 2.0
MESSAGE = ("keep it up, this stream is great! " * 30)[:1000]
CONNECTED = 'streamloop_ws_clients{channel="demo"}'
DROPPED = "streamloop_ws_clients_dropped_total"
HANDSHAKE = (
    b"GET /ws/metrics?channel=demo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


@contextlib.asynccontextmanager
async def stalled_sockets(port: int, count: int) -> AsyncIterator[list[socket.socket]]:
    """``count`` raw sockets that complete the WebSocket handshake and then never read.

    Each has a 4 KB receive buffer and 1,400-byte segments, set before connecting so
    that the server sees them, as over a real network: with loopback's 64 KB segments
    the server's kernel send buffer grows to 4 MB a socket and absorbs everything
    before the app feels any back-pressure. All are closed on the way out.
    """
    loop = asyncio.get_running_loop()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            raw = socket.socket()
            sockets.append(raw)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
            raw.setblocking(False)
            await loop.sock_connect(raw, ("127.0.0.1", port))
            await loop.sock_sendall(raw, HANDSHAKE)
        yield sockets
    finally:
        for raw in sockets:
            raw.close()


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``; NaN if unreadable)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match[1]) / 1024 if match else float("nan")


async def until_connected(base: str, count: int, timeout_s: float = 60.0) -> None:
    """Wait until the app counts ``count`` clients on ``demo``."""
    async with asyncio.timeout(timeout_s):
        while True:
            if (await scrape(base)).get(CONNECTED) == count:
                return
            await asyncio.sleep(0.1)


async def watch_drops(base: str, drops: list[float]) -> None:
    """Append a ``perf_counter`` reading for each drop as the counter rises (polled, 0.1 s)."""
    while True:
        dropped = int((await scrape(base)).get(DROPPED, 0))
        drops.extend([time.perf_counter()] * (dropped - len(drops)))
        await asyncio.sleep(0.1)


async def donate(publisher: Publisher) -> dict[str, float]:
    """Publish ``DONATION_RATE`` donations a second for ``SECONDS``; when each was sent, by id."""
    sent_at: dict[str, float] = {}
    next_at = time.perf_counter()
    for n in range(int(DONATION_RATE * SECONDS)):
        event = timed_donation(n, "slow", MESSAGE)
        sent_at[event.id] = time.perf_counter()
        assert await publisher.publish(event)
        next_at += 1 / DONATION_RATE
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return sent_at


@dataclass(frozen=True)
class Window:
    """What happened while the donations were published (``perf_counter`` times)."""

    sent_at: dict[str, float]
    started: float
    drops: list[float]
    cpu: dict[str, float]
    metrics: dict[str, float]


async def donation_window(base: str, url: str, redis: Redis, pids: dict[str, int]) -> Window:
    """Publish the donations, watching drops and the CPU of ``pids``, redis and the rest."""
    settings = AnalyticsSettings(_env_file=None, redis_url=url, redis_key_prefix="")
    publisher = Publisher(redis, settings)
    drops: list[float] = []
    watcher = asyncio.create_task(watch_drops(base, drops))
    before = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    before["redis"], machine = await redis_cpu_s(redis), machine_cpu_s()
    started = time.perf_counter()
    sent_at = await donate(publisher)
    wall = time.perf_counter() - started
    after = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    after["redis"], machine = await redis_cpu_s(redis), machine_cpu_s() - machine
    await asyncio.sleep(SETTLE_S)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    cpu = {name: (after[name] - before[name]) / wall for name in after}
    cpu["rest of machine"] = machine / wall - sum(cpu.values())
    return Window(sent_at, started, drops, cpu, await scrape(base))


@dataclass(frozen=True)
class SlowRun:
    """One run: each donation's send offset (s) and readers' latencies, and the server's figures."""

    latencies: list[tuple[float, list[float]]]
    expected: int
    dropped: int
    drops_s: tuple[float, float] | None
    readers_closed: int
    rss_mb: dict[str, float]
    cpu: dict[str, float]
    send_p99_bucket: str

    def ms(self, since_s: float = 0.0, until_s: float = float("inf")) -> list[float]:
        """Latencies (ms, sorted) of the donations sent from ``since_s`` to before ``until_s``."""
        return sorted(ms for at, each in self.latencies if since_s <= at < until_s for ms in each)


async def slow_run(url: str, stalled: int) -> SlowRun:
    """The app, ``READERS`` readers and ``stalled`` non-readers; timed donations."""
    port = free_port()
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/metrics?channel=demo"
    redis = connect(url)
    command = [sys.executable, "-m", "services.analytics"]
    rss: dict[str, float] = {}
    try:
        async with child(*command, env=app_env(url, port), cwd=Path(tempfile.gettempdir())) as app:
            await wait_healthy(base, name="analytics", process=app.process)
            rss["idle"] = rss_mb(app.pid)
            async with child("crowd", ws_url, str(READERS), LATENCY_COMPRESSION) as crowd:
                await crowd.line(120)
                async with stalled_sockets(port, stalled):
                    await until_connected(base, READERS + stalled)
                    await asyncio.sleep(WARMUP_S)
                    rss["connected"] = rss_mb(app.pid)
                    pids = {"analytics": app.pid, "readers": crowd.pid}
                    window = await donation_window(base, url, redis, pids)
                    rss["after"] = rss_mb(app.pid)
                await asyncio.sleep(1.0)
                rss["stalled gone"] = rss_mb(app.pid)
                await crowd.tell("stop")
                seen = json.loads(await crowd.line(60))
    finally:
        await redis.aclose()
    return summarize(window, seen, rss)


def summarize(window: Window, seen: dict[str, Any], rss: dict[str, float]) -> SlowRun:
    """Each donation's latencies on every reader, with the run's figures."""
    drops, sent_at = window.drops, window.sent_at
    arrivals: dict[str, list[float]] = seen["arrivals"]
    return SlowRun(
        latencies=[
            (sent - window.started, [(at - sent) * 1000 for at in arrivals.get(event_id, [])])
            for event_id, sent in sent_at.items()
        ],
        expected=len(sent_at) * READERS,
        dropped=int(window.metrics.get(DROPPED, 0)),
        drops_s=(drops[0] - window.started, drops[-1] - window.started) if drops else None,
        readers_closed=seen["closed_by_server"],
        rss_mb=rss,
        cpu=window.cpu,
        send_p99_bucket=histogram_p99(window.metrics, "streamloop_ws_send_latency_seconds"),
    )


def best(runs: list[SlowRun]) -> SlowRun:
    """The run with the lowest p99 (least disturbed by the machine's other work)."""
    return min(runs, key=lambda run: p99(run.ms()))


def p99(values: list[float]) -> float:
    """p99 of sorted ``values`` (infinite when there are none)."""
    return percentile(values, 0.99) if values else float("inf")


def bench_slow_clients() -> str:
    """``slow-clients``: readers' p99 beside 200 stalled clients against readers alone."""
    raise_fd_limit()
    runs: dict[int, list[SlowRun]] = {0: [], STALLED: []}
    for _ in range(REPEATS):
        for stalled in runs:
            server = RedisServer()  # a fresh one each run: no donations left from the last
            server.start()
            try:
                runs[stalled].append(run_uvloop(slow_run(server.url, stalled)))
            finally:
                server.close()
    alone, slow = best(runs[0]), best(runs[STALLED])
    return section(alone, slow, runs)


def section(alone: SlowRun, slow: SlowRun, runs: dict[int, list[SlowRun]]) -> str:
    """The Markdown body: latencies, drops, memory, CPU, the ratios and the verdict."""
    ratio = p99(slow.ms()) / p99(alone.ms())
    first, last = slow.drops_s or (float("nan"), float("inf"))
    stalled_ratio = p99(slow.ms(until_s=last)) / p99(alone.ms(until_s=last))
    complete = all(len(r.ms()) == r.expected for r in (alone, slow))
    verdict = "met" if ratio <= AIM_RATIO and complete else "NOT met"
    each = "; ".join(
        f"{'beside stalled clients' if n else 'alone'} "
        + ", ".join(f"{p99(r.ms()):.1f}" for r in group)
        for n, group in runs.items()
    )
    beside = f"{READERS} readers beside {STALLED} stalled clients"
    return "\n".join(
        [
            intro(each),
            "",
            "| ms | p50 | p99 | max | count |",
            "|---|---:|---:|---:|---:|",
            latency_row(f"{READERS} readers alone", alone.ms(), count(alone)),
            latency_row(beside, slow.ms(), count(slow)),
            latency_row(f"… alone, donations of the first {last:.1f} s", alone.ms(until_s=last)),
            latency_row(
                f"… beside, donations of the first {last:.1f} s (stalled clients connected)",
                slow.ms(until_s=last),
            ),
            latency_row("… alone, the later donations", alone.ms(since_s=last)),
            latency_row("… beside, the later donations (all dropped)", slow.ms(since_s=last)),
            "",
            f"Stalled clients dropped: **{slow.dropped}** of {STALLED}, the first {first:.1f} s "
            f"and the last {last:.1f} s into the donations (`/metrics` polled every 0.1 s). "
            f"Readers closed by the server: {alone.readers_closed} alone, "
            f"{slow.readers_closed} beside them. 99 % of the frames were written "
            f"{alone.send_p99_bucket} alone and {slow.send_p99_bucket} beside them after being "
            "queued (`streamloop_ws_send_latency_seconds`).",
            "",
            "| server RSS, MiB | idle | clients connected | after the donations "
            "| 1 s after the stalled sockets closed |",
            "|---|---:|---:|---:|---:|",
            rss_row(f"{READERS} readers alone", alone),
            rss_row(beside, slow),
            "",
            f"CPU over the {SECONDS:g} s of donations (share of one core; the machine has "
            f"{os.cpu_count()}): alone {cpu_text(alone)}; beside stalled clients "
            f"{cpu_text(slow)}.",
            "",
            f"Ratio of the p99s, beside stalled clients / alone: **{ratio:.2f}** over the whole "
            f"run, {stalled_ratio:.2f} over the first {last:.1f} s while the stalled clients "
            f"were still connected. Aim of at most {AIM_RATIO:g} over the run: **{verdict}**"
            f"{'' if complete else ' (some donations never reached some readers)'}.",
        ]
    )


def intro(p99s: str) -> str:
    """The section's first paragraph: what ran and how it was timed."""
    return (
        "`python -m services.analytics` as a subprocess (uvicorn on uvloop, default "
        f"settings: `CLIENT_QUEUE_MESSAGES` 256, broadcasts every 2 s), {READERS} reading "
        "WebSocket clients on `demo` in one helper process (`websockets`, permessage-deflate "
        f"offered), and in the second configuration {STALLED} more that complete the "
        "handshake on raw TCP sockets (4 KB receive buffer, 1,400-byte segments, as over a "
        f"real network) and never read. {int(DONATION_RATE * SECONDS)} donations with "
        f"{len(MESSAGE):,}-character messages at {DONATION_RATE:g}/s over {SECONDS:g} s, each "
        "timed from just before `Publisher.publish` to its `donation` frame on every reader. "
        f"Shown: the run with the lower p99 of {REPEATS} per configuration, runs interleaved "
        f"(p99 of each, ms: {p99s})."
    )


def count(run: SlowRun) -> str:
    """Frames that arrived out of those expected."""
    return f"{len(run.ms()):,}/{run.expected:,}"


def rss_row(name: str, run: SlowRun) -> str:
    """A table row of the server's RSS at each point of the run."""
    return f"| {name} | " + " | ".join(f"{mb:.0f}" for mb in run.rss_mb.values()) + " |"


def cpu_text(run: SlowRun) -> str:
    """``analytics 30%, readers 20%, ...``."""
    return ", ".join(f"{name} {share:.0%}" for name, share in run.cpu.items())


if __name__ == "__main__":
    print(bench_slow_clients())
