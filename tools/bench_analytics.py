"""Analytics benchmarks for ``make bench``: consumer throughput, donation latency, fan-out.

Each function here returns the Markdown body of one section of ``docs/benchmarks.md``
(``tools/bench.py`` registers them). Every benchmark starts its own ``redis-server``
and stops every process, socket and server it started, whatever happens.

Helper processes (chat load, WebSocket client crowds) are this same module run as
``python -m tools.bench_analytics ROLE ...``; they talk to the benchmark over stdout,
one line each, and time with ``time.perf_counter`` (CLOCK_MONOTONIC on Linux, so
readings compare across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import uvicorn
import uvloop
import websockets
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import broadcast as ws_broadcast
from websockets.asyncio.server import serve as ws_serve

from services.analytics.app import create_app
from services.analytics.consumer import GROUP, MetricsHandler
from services.analytics.hub import Hub
from services.analytics.settings import AnalyticsSettings
from shared.consumer import ConsumerRunner
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)
from shared.keys import EVENT_STREAMS, Keys
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer, free_port
from tools.health import wait_healthy

HELPER = "tools.bench_analytics"
ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# analytics-consume
CONSUME_EVENTS = 100_000
CONSUME_CHANNELS = ("alpha", "bravo", "charlie", "delta")
CONSUME_BATCHES = (100, 500, 2000)
CONSUME_REPEATS = 3
CONSUME_AIM = 30_000
START = datetime(2026, 2, 27, 18, 0, tzinfo=UTC)

# analytics-latency
LATENCY_CLIENTS = 500
LATENCY_COMPRESSION = "deflate"
LATENCY_REPEATS = 2
LATENCY_CHAT_RATE = 5_000
LATENCY_DONATION_RATE = 5.0
LATENCY_SECONDS = 20.0
LATENCY_WARMUP_S = 3.0
LATENCY_AIM_MS = 25.0
LATENCY_TIMEOUT_S = 3.0

# analytics-fanout
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
CONNECT_AT_ONCE = 50


def run_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop: uvicorn picks uvloop too when it is installed, as here."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def raise_fd_limit() -> None:
    """Lift this process's open-file soft limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def redis_cpu_s(redis: Redis) -> float:
    """CPU seconds (user + system) the Redis server has used so far."""
    info: dict[str, Any] = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_commands(redis: Redis) -> int:
    """Commands the Redis server has processed so far (``MULTI``/``EXEC`` and queued ones)."""
    info: dict[str, Any] = await redis.info("stats")
    return int(info["total_commands_processed"])


def machine_cpu_s() -> float:
    """CPU seconds every process on this machine has used so far, all cores (``/proc/stat``).

    Less what the benchmark's own processes used, it shows how busy the rest of the
    machine was while a figure was measured.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return float("nan")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, round(share * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ---------------------------------------------------------------- analytics-consume


def event_mix(count: int, channels: Sequence[str], seed: int = 11) -> list[EventBase]:
    """``count`` events of a busy broadcast on each of ``channels``, interleaved.

    Per channel: a start and an activity change first, an end last; between them
    about 90 % chat (2,000 chatters), 4 % viewer counts, 3.5 % donations and bits,
    1.5 % subs, resubs and gifts, 1 % follows, raids and activity changes.
    """
    rng = random.Random(seed)
    per_channel = count // len(channels)
    events: list[list[EventBase]] = []
    for channel in channels:
        stream_id = f"{channel}-s1"
        at = START
        common = {"channel": channel, "source": "sim"}
        made: list[EventBase] = [
            StreamStartedEvent(id=f"{channel}-0", ts=at, stream_id=stream_id, **common),
            ActivityChangedEvent(
                id=f"{channel}-1", ts=at, stream_id=stream_id, activity="talk", **common
            ),
        ]
        for n in range(2, per_channel - 1):
            at += timedelta(milliseconds=rng.randint(5, 40))
            made.append(random_event(rng, f"{channel}-{n}", at, stream_id, common))
        made.append(StreamEndedEvent(id=f"{channel}-end", ts=at, stream_id=stream_id, **common))
        events.append(made)
    mixed = [event for group in zip(*events, strict=False) for event in group]
    return mixed[:count]


def random_event(
    rng: random.Random, event_id: str, at: datetime, stream_id: str, common: dict[str, str]
) -> EventBase:
    """One event of the mix described in :func:`event_mix`."""
    user = f"viewer{int(rng.paretovariate(1.2)) % 2000}"
    roll = rng.random()
    base: dict[str, Any] = {"id": event_id, "ts": at, **common}
    if roll < 0.90:
        words = rng.randint(1, 14)
        return ChatEvent(**base, user=user, text=" ".join(["pog"] * words) + " nice play")
    if roll < 0.94:
        return ViewerCountEvent(**base, count=rng.randint(800, 1200))
    if roll < 0.965:
        amount = Decimal(rng.choice(("1.00", "2.50", "5.00", "10.00", "20.00")))
        return DonationEvent(**base, user=user, amount=amount, message="keep it up")
    if roll < 0.975:
        return BitsEvent(**base, user=user, bits=rng.choice((100, 250, 500)), message="Cheer")
    if roll < 0.99:
        kind = rng.choice(("sub", "resub", "gift"))
        count = rng.randint(1, 5) if kind == "gift" else 1
        return SubEvent(
            **base, type=kind, user=user, tier="1000", count=count, amount=Decimal("4.99") * count
        )
    if roll < 0.996:
        return FollowEvent(**base, stream_id=stream_id, user=user)
    if roll < 0.998:
        return RaidEvent(**base, stream_id=stream_id, user=user, count=rng.randint(5, 300))
    return ActivityChangedEvent(
        **base, stream_id=stream_id, activity=rng.choice(("talk", "gameplay", "q_and_a"))
    )


def consume_settings(url: str, prefix: str, batch: int = 500) -> AnalyticsSettings:
    """Analytics settings on the benchmark's Redis under ``prefix``."""
    return AnalyticsSettings(
        _env_file=None,
        redis_url=url,
        redis_key_prefix=prefix,
        channels=list(CONSUME_CHANNELS),
        consumer_name="bench",
        consumer_batch_size=batch,
        consumer_block_ms=50,
        stream_maxlen_chat=CONSUME_EVENTS * 2,
        stream_maxlen_viewers=CONSUME_EVENTS * 2,
    )


async def publish_template(url: str) -> dict[str, int]:
    """Publish the event mix once under ``tpl:``; return entries per stream kind."""
    settings = consume_settings(url, "tpl:")
    redis = connect(url)
    try:
        events = event_mix(CONSUME_EVENTS, CONSUME_CHANNELS)
        result = await Publisher(redis, settings, batch_size=1000).publish_many(events)
        assert result.published == CONSUME_EVENTS, result.published
        return {
            kind.value: int(await redis.xlen(settings.keys.stream(kind))) for kind in EVENT_STREAMS
        }
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class ConsumeRun:
    """One timed consumer run."""

    rate: float
    client_cpu_s: float
    redis_cpu_s: float
    other_cpu_s: float
    commands: int
    elapsed_s: float


async def consume_once(url: str, batch: int, run: int) -> ConsumeRun:
    """Copy the template streams under a fresh prefix and time one runner over them.

    Timed from ``runner.run`` starting (group creation included) until the runner's
    count of handled events, which it raises only after each batch's MULTI/EXEC of
    effects + XACKs returned, reaches the total. Checked afterwards: nothing pending,
    no lag, and the per-channel versions add up to the total.
    """
    prefix = f"run{run}-b{batch}:"
    settings = consume_settings(url, prefix, batch)
    template = Keys("tpl:")
    redis = connect(url)
    try:
        for kind in EVENT_STREAMS:
            await redis.copy(template.stream(kind), settings.keys.stream(kind))
        runner = ConsumerRunner(
            redis, settings, GROUP, MetricsHandler(settings.keys, settings.state_ttl_s)
        )
        stop = asyncio.Event()
        redis_before, cpu_before = await redis_cpu_s(redis), time.process_time()
        machine_before = machine_cpu_s()
        commands_before = await redis_commands(redis)
        started = time.perf_counter()
        task = asyncio.create_task(runner.run(stop))
        while runner.summary.handled < CONSUME_EVENTS and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        machine = machine_cpu_s() - machine_before
        redis_cpu = await redis_cpu_s(redis) - redis_before
        commands = await redis_commands(redis) - commands_before
        stop.set()
        summary = await task
        assert summary.handled == CONSUME_EVENTS and not summary.dead_lettered, summary
        await check_all_acked(redis, settings)
        await delete_prefix(redis, prefix)
    finally:
        await redis.aclose()
    others = machine - cpu - redis_cpu
    return ConsumeRun(CONSUME_EVENTS / elapsed, cpu, redis_cpu, others, commands, elapsed)


async def check_all_acked(redis: Redis, settings: AnalyticsSettings) -> None:
    """Every entry acked and counted once in the per-channel versions."""
    keys = settings.keys
    for kind in EVENT_STREAMS:
        pending: dict[str, Any] = await redis.xpending(keys.stream(kind), GROUP)
        assert pending["pending"] == 0, (kind, pending)
        for group in await redis.xinfo_groups(keys.stream(kind)):
            assert group["lag"] == 0, (kind, group)
    versions = [await redis.get(keys.analytics(c).version) for c in settings.channels]
    assert sum(int(v or 0) for v in versions) == CONSUME_EVENTS, versions


async def delete_prefix(redis: Redis, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])


def bench_consume() -> str:
    """``analytics-consume``: one consumer over pre-published events, several batch sizes."""
    server = RedisServer()
    server.start()
    try:
        counts = run_uvloop(publish_template(server.url))
        best: dict[int, ConsumeRun] = {}
        for run in range(CONSUME_REPEATS):
            for batch in CONSUME_BATCHES:
                result = run_uvloop(consume_once(server.url, batch, run))
                if batch not in best or result.rate > best[batch].rate:
                    best[batch] = result
    finally:
        server.close()
    top = max(run.rate for run in best.values())
    verdict = "met" if top >= CONSUME_AIM else "NOT met"
    mix = ", ".join(f"{kind} {count:,}" for kind, count in counts.items() if count)
    rows = [
        f"| {batch:,} | {run.rate:,.0f} | {run.elapsed_s:.2f} "
        f"| {run.client_cpu_s / run.elapsed_s:.0%} | {run.redis_cpu_s / run.elapsed_s:.0%} "
        f"| {run.other_cpu_s / run.elapsed_s:.0%} | {run.client_cpu_s / CONSUME_EVENTS * 1e6:.0f} "
        f"| {run.commands / CONSUME_EVENTS:.2f} |"
        for batch, run in best.items()
    ]
    return "\n".join(
        [
            f"One analytics consumer (`ConsumerRunner` + `MetricsHandler`, effects and XACKs in "
            f"one MULTI/EXEC per batch) over {CONSUME_EVENTS:,} pre-published events on "
            f"{len(CONSUME_CHANNELS)} channels ({mix}), timed from start until every event is "
            f"handled and acked; uvloop; best of {CONSUME_REPEATS} per batch size (runs "
            "interleaved). CPU columns: share of one core over the run for the consumer "
            "process, redis-server, and everything else on the machine (other work sharing "
            "the 2 cores); consumer CPU time per event, which other work on the machine does not "
            "inflate (1,000,000 / it is the ceiling on one free core); Redis commands per event.",
            "",
            "| `CONSUMER_BATCH_SIZE` | events/s | seconds | consumer CPU | redis CPU "
            "| rest of machine | consumer CPU µs/event | commands/event |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Aim of {CONSUME_AIM:,} events/s: **{verdict}** (best {top:,.0f}).",
        ]
    )


# ---------------------------------------------------------------- helper processes


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def child(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> AsyncIterator[Child]:
    """A helper process (``python -m tools.bench_analytics ARGS`` unless ``env`` is given).

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


async def stdin_reader() -> asyncio.StreamReader:
    """This process's stdin as an asyncio stream (helpers wait for ``stop`` on it)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def connect_many(
    url: str, count: int, compression: str | None = "deflate"
) -> list[ClientConnection]:
    """``count`` WebSocket clients of ``url``, opened ``CONNECT_AT_ONCE`` at a time."""
    clients: list[ClientConnection] = []
    for start in range(0, count, CONNECT_AT_ONCE):
        size = min(CONNECT_AT_ONCE, count - start)
        clients += await asyncio.gather(
            *(
                websockets.connect(url, proxy=None, compression=compression, open_timeout=30)
                for _ in range(size)
            )
        )
    return clients


async def close_all(clients: Sequence[ClientConnection]) -> None:
    """Close every client, never raising."""
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def say(text: str) -> None:
    """One line to the benchmark that started this helper."""
    print(text, flush=True)


async def role_chat_load(url: str, rate: str) -> None:
    """Helper: publish ``rate`` chat events/s to ``demo`` through the Publisher until ``stop``."""
    redis = connect(url)
    publisher = Publisher(redis, AnalyticsSettings(_env_file=None, redis_url=url))
    stdin = await stdin_reader()
    stopped = asyncio.create_task(stdin.readline())
    tag, per_s, sent = uuid.uuid4().hex[:8], int(rate), 0
    say("ready")
    started = time.perf_counter()
    try:
        while not stopped.done():
            due = min(int((time.perf_counter() - started) * per_s), sent + 1000)
            if due > sent:
                ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                await publisher.publish_many(
                    {
                        "type": "chat",
                        "id": f"load-{tag}-{n}",
                        "channel": "demo",
                        "ts": ts,
                        "source": "sim",
                        "user": f"viewer{n % 2000}",
                        "text": "that was a great play, how did you do that?",
                    }
                    for n in range(sent, due)
                )
                sent = due
            await asyncio.sleep(0.01)
    finally:
        say(json.dumps({"published": sent, "seconds": time.perf_counter() - started}))
        await redis.aclose()


async def role_crowd(url: str, count: str, compression: str) -> None:
    """Helper: ``count`` clients that read every frame, noting when each ``donation`` came.

    On ``stop`` it says the frames read, the clients the server closed, and the
    ``perf_counter`` arrivals of each donation id on every client.
    """
    clients = await connect_many(url, int(count), None if compression == "off" else compression)
    frames = [0]
    closes: list[int] = []
    arrivals: dict[str, list[float]] = {}

    async def read(client: ClientConnection) -> None:
        try:
            async for raw in client:
                arrived = time.perf_counter()
                frames[0] += 1
                if isinstance(raw, str) and raw.startswith('{"type":"donation"'):
                    arrivals.setdefault(json.loads(raw)["data"]["id"], []).append(arrived)
        except websockets.ConnectionClosed:
            pass
        if client.close_code != 1000:
            closes.append(client.close_code or 0)

    readers = [asyncio.create_task(read(client)) for client in clients]
    stdin = await stdin_reader()
    say("ready")
    await stdin.readline()
    await close_all(clients)
    await asyncio.gather(*readers, return_exceptions=True)
    say(json.dumps({"frames": frames[0], "closed_by_server": len(closes), "arrivals": arrivals}))


async def role_count(url: str, count: str, frames: str, skip: str, compression: str) -> None:
    """Helper: ``count`` clients each read ``skip`` frames, say ready, then time ``frames``."""
    clients = await connect_many(url, int(count), compression if compression != "off" else None)
    for client in clients:
        for _ in range(int(skip)):
            await client.recv()
    last: list[float] = []
    received = [0]

    async def read(client: ClientConnection) -> None:
        for _ in range(int(frames)):
            await client.recv()
            received[0] += 1
        last.append(time.perf_counter())

    say("ready")
    try:
        await asyncio.wait_for(asyncio.gather(*(read(c) for c in clients)), 90)
        finished = max(last)
    except TimeoutError:
        finished = float("nan")
    say(json.dumps({"last": finished, "frames": received[0]}))
    await close_all(clients)


ROLES: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
    "chat-load": role_chat_load,
    "crowd": role_crowd,
    "count": role_count,
}


# ---------------------------------------------------------------- analytics-latency


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


async def scrape(base: str) -> dict[str, float]:
    """The app's Prometheus metrics, ``name{labels}`` -> value."""
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        text = (await http.get("/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([-+0-9.eEinfa]+)", line)
        if match:
            found[match[1]] = float(match[2])
    return found


@dataclass(frozen=True)
class LatencyResult:
    """Figures of one latency run, milliseconds sorted ascending."""

    delivery_ms: list[float]
    first_ms: list[float]
    last_ms: list[float]
    publish_ms: list[float]
    expected: int
    load_rate: float
    crowd_frames: int
    closed_by_server: int
    lag: int
    cpu: dict[str, float]
    send_p99_bucket: str


def timed_donation(n: int, id_prefix: str, message: str) -> DonationEvent:
    """Donation ``n`` of a latency benchmark: $5 on ``demo``, a fresh id, time now."""
    return DonationEvent(
        id=f"{id_prefix}-{uuid.uuid4().hex[:10]}",
        channel="demo",
        source="sim",
        ts=datetime.now(UTC),
        user=f"donor{n}",
        amount=Decimal("5.00"),
        message=message,
    )


async def donations(publisher: Publisher) -> tuple[dict[str, float], list[float]]:
    """Publish donations at about ``LATENCY_DONATION_RATE`` for ``LATENCY_SECONDS``.

    Returns when each was about to be published (``perf_counter``, by id) and how
    long each ``Publisher.publish`` call took (ms).
    """
    rng = random.Random(5)
    sent_at: dict[str, float] = {}
    publish_ms: list[float] = []
    next_at = time.perf_counter()
    for n in range(int(LATENCY_DONATION_RATE * LATENCY_SECONDS)):
        event = timed_donation(n, "bench", "great stream, keep it up!")
        started = time.perf_counter()
        assert await publisher.publish(event)
        publish_ms.append((time.perf_counter() - started) * 1000)
        sent_at[event.id] = started
        next_at += rng.uniform(0.5, 1.5) / LATENCY_DONATION_RATE
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return sent_at, publish_ms


async def latency_run(url: str, deflate: bool = False) -> LatencyResult:
    """The app as a subprocess, a crowd of clients, a chat load, timed donations.

    ``deflate``: the app accepts the permessage-deflate its clients offer.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/ws/metrics?channel=demo"
    redis = connect(url)
    publisher = Publisher(redis, AnalyticsSettings(_env_file=None, redis_url=url))
    command = [sys.executable, "-m", "services.analytics"]
    try:
        elsewhere = Path(tempfile.gettempdir())
        async with child(*command, env=app_env(url, port, deflate), cwd=elsewhere) as app:
            await wait_healthy(base, name="analytics", process=app.process)
            async with child("crowd", ws_url, str(LATENCY_CLIENTS), LATENCY_COMPRESSION) as crowd:
                await crowd.line(120)
                async with child("chat-load", url, str(LATENCY_CHAT_RATE)) as load:
                    await load.line(30)
                    await asyncio.sleep(LATENCY_WARMUP_S)
                    pids = {"analytics": app.pid, "chat load": load.pid, "clients": crowd.pid}
                    before = {name: proc_cpu_s(pid) for name, pid in pids.items()}
                    before["redis"] = await redis_cpu_s(redis)
                    before["benchmark"] = time.process_time()
                    machine = machine_cpu_s()
                    started = time.perf_counter()
                    sent_at, publish_ms = await donations(publisher)
                    wall = time.perf_counter() - started
                    after = {name: proc_cpu_s(pid) for name, pid in pids.items()}
                    after["redis"] = await redis_cpu_s(redis)
                    after["benchmark"] = time.process_time()
                    machine = machine_cpu_s() - machine
                    await asyncio.sleep(LATENCY_TIMEOUT_S)
                    await load.tell("stop")
                    loaded = json.loads(await load.line(30))
                lag = await consumer_lag(redis)
                metrics = await scrape(base)
                await crowd.tell("stop")
                seen = json.loads(await crowd.line(60))
    finally:
        await redis.aclose()
    arrivals: dict[str, list[float]] = seen["arrivals"]
    per_donation = [
        [(arrived - sent) * 1000 for arrived in arrivals.get(event_id, [])]
        for event_id, sent in sent_at.items()
    ]
    return LatencyResult(
        delivery_ms=sorted(ms for each in per_donation for ms in each),
        first_ms=sorted(min(each) for each in per_donation if each),
        last_ms=sorted(max(each) for each in per_donation if each),
        publish_ms=sorted(publish_ms),
        expected=len(sent_at) * LATENCY_CLIENTS,
        load_rate=loaded["published"] / loaded["seconds"],
        crowd_frames=seen["frames"],
        closed_by_server=seen["closed_by_server"],
        lag=lag,
        cpu={name: (after[name] - before[name]) / wall for name in after}
        | {"rest of machine": (machine - sum(after.values()) + sum(before.values())) / wall},
        send_p99_bucket=histogram_p99(metrics, "streamloop_ws_send_latency_seconds"),
    )


async def consumer_lag(redis: Redis) -> int:
    """Chat entries the analytics group had not yet read or acked."""
    lag = 0
    for group in await redis.xinfo_groups(Keys().stream("chat")):
        if group["name"] == GROUP:
            lag += int(group.get("lag") or 0) + int(group.get("pending") or 0)
    return lag


def histogram_p99(metrics: dict[str, float], name: str) -> str:
    """The upper bound of the bucket holding the 99th percentile of histogram ``name``."""
    total = metrics.get(f"{name}_count", 0.0)
    buckets = sorted(
        (float(match[1]), value)
        for key, value in metrics.items()
        if (match := re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}}', key))
    )
    for bound, count in buckets:
        if total and count >= 0.99 * total:
            return "over 1 s" if bound == float("inf") else f"≤ {bound * 1000:g} ms"
    return "n/a"


def latency_on_fresh_redis(deflate: bool) -> LatencyResult:
    """One :func:`latency_run` against a redis-server of its own (no backlog from the last)."""
    server = RedisServer()
    server.start()
    try:
        return run_uvloop(latency_run(server.url, deflate))
    finally:
        server.close()


def delivery_p99(result: LatencyResult) -> float:
    """p99 of every client's delivery times, or infinity when none arrived."""
    return percentile(result.delivery_ms, 0.99) if result.delivery_ms else float("inf")


def bench_latency() -> str:
    """``analytics-latency``: donation XADD to the ``donation`` frame on every client.

    Runs alternate between the default (no compression) and the app accepting
    permessage-deflate; the table shows the default's better run.
    """
    raise_fd_limit()
    results, deflated = [], []
    for _ in range(LATENCY_REPEATS):
        results.append(latency_on_fresh_redis(deflate=False))
        deflated.append(latency_on_fresh_redis(deflate=True))
    p99s = [delivery_p99(r) for r in results]
    deflated_p99s = ", ".join(f"{delivery_p99(r):.1f}" for r in deflated)
    result = results[p99s.index(min(p99s))]
    delivery = result.delivery_ms
    p99 = percentile(delivery, 0.99) if delivery else float("inf")
    complete = len(delivery) == result.expected
    verdict = "met" if p99 < LATENCY_AIM_MS and complete else "NOT met"
    cpu = ", ".join(f"{name} {share:.0%}" for name, share in result.cpu.items())
    donated = int(LATENCY_DONATION_RATE * LATENCY_SECONDS)
    return "\n".join(
        [
            "`python -m services.analytics` as a subprocess (uvicorn on uvloop, broadcasts "
            f"every 2 s, default settings), {LATENCY_CLIENTS} WebSocket clients on `demo` in "
            "one helper process (`websockets`, permessage-deflate offered as browsers do, "
            "declined by the app's default `WS_PER_MESSAGE_DEFLATE=false`), "
            f"background chat from a separate `Publisher` process at "
            f"{result.load_rate:,.0f} events/s (asked {LATENCY_CHAT_RATE:,}). {donated} "
            f"donations at about {LATENCY_DONATION_RATE:g}/s over {LATENCY_SECONDS:g} s, each "
            "timed from just before `Publisher.publish` (dedupe + XADD) to the `donation` "
            "frame's arrival on every client (`perf_counter` is system-wide, so helper and "
            "benchmark clocks agree). Shown: the run with the lower p99 of "
            f"{LATENCY_REPEATS} (p99 of each: {', '.join(f'{p:.1f}' for p in p99s)} ms).",
            "",
            "| ms | p50 | p99 | max | count |",
            "|---|---:|---:|---:|---:|",
            latency_row(
                "XADD → `donation` frame, every client",
                delivery,
                f"{len(delivery):,}/{result.expected:,}",
            ),
            latency_row("… first client to get each donation", result.first_ms),
            latency_row("… last client to get each donation", result.last_ms),
            latency_row("`Publisher.publish` call (dedupe + XADD)", result.publish_ms),
            "",
            f"CPU over the {LATENCY_SECONDS:g} s (share of one core; the machine has "
            f"{os.cpu_count()}): {cpu}. Chat left unconsumed at the end: {result.lag:,}. "
            f"Clients closed by the server: {result.closed_by_server}. 99 % of all frames the "
            f"app sent were written {result.send_p99_bucket} after being queued "
            "(`streamloop_ws_send_latency_seconds`).",
            "",
            "The same runs with the app accepting the compression "
            f"(`WS_PER_MESSAGE_DEFLATE=true`, uvicorn's default): p99 {deflated_p99s} ms.",
            "",
            f"Aim of p99 under {LATENCY_AIM_MS:g} ms: **{verdict}** (p99 {p99:.1f} ms"
            f"{'' if complete else ', and some donations never arrived'}).",
        ]
    )


def latency_row(name: str, values: list[float], count: str = "") -> str:
    """A table row: p50, p99, max and count of sorted ``values``."""
    if not values:
        return f"| {name} | - | - | - | 0 |"
    return (
        f"| {name} | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} "
        f"| {max(values):.1f} | {count or f'{len(values):,}'} |"
    )


# ---------------------------------------------------------------- analytics-fanout


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
        yield port, app.state.hub
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


if __name__ == "__main__":
    run_uvloop(ROLES[sys.argv[1]](*sys.argv[2:]))
