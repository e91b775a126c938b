"""``make soak``: every service under a steady live load for minutes; memory must stay flat.

Starts its own ``redis-server`` (AOF off unless ``--aof``, no RDB saves), the four
services as subprocesses the way ``make run`` does (``tools.run_local``), on free
ports, with the simulator off (ingest runs its webhooks only) and the orchestrator
on the bandit alone. The load comes from this process: a realistic mix (the
simulator's own event makers and the default scenario's relative rates: mostly
chat, some donations, bits, subs, resubs, gifts and follows, a viewer count every
``viewer_count_interval_s``) on 1 to 3 channels, opened with ``stream_started``
and closed with ``stream_ended``, published through :class:`shared.publisher.Publisher`
at a steady ``--rate`` paced per 100 ms tick, every ``ts`` read off the wall clock
so the services' event-time windows behave as live. Activity changes the
orchestrator publishes switch the mix, as they would switch the simulator's.

Every ``--sample-s`` it records Redis ``used_memory``, key counts, stream
lengths, consumer-group lag, each process's RSS and CPU time and the achieved
publish rate; at a quarter of the run and at its end it takes a census of the
keys (``MEMORY USAGE`` of every key but the per-event dedupe markers, which are
counted and sampled). At the end it publishes ``stream_ended``, waits for the
consumers to drain and the retro report, stops the services with SIGINT (each
exits 0 with a summary line) and writes section ``soak`` of
``docs/benchmarks.md``. A service that dies stops the run with exit code 1 and
nothing written.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from redis.asyncio import Redis

from services.ingest.recording import stream_entries
from services.ingest.scenario import Scenario, default_scenario
from services.ingest.settings import IngestSettings
from services.ingest.simulator import (
    ChannelState,
    channel_rng,
    closing_event,
    make_chat,
    make_cheer,
    make_donation,
    make_follow,
    make_gift,
    make_resub,
    make_sub,
    new_state,
    opening_events,
    switch_activity,
    ts_within,
)
from shared.clock import utc_now
from shared.events import EventBase, ViewerCountEvent
from shared.keys import DECISIONS_PREFIX, DEDUPE_PREFIX, EVENT_STREAMS, Keys, Stream
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_server import RedisServer, free_port
from shared.settings import BaseServiceSettings
from tools.bench import write_section
from tools.bench_analytics import machine_cpu_s
from tools.health import wait_healthy
from tools.run_local import SERVICES, STOP_ORDER, Service, start, stop

DEFAULT_RATE = 5_000
DEFAULT_DURATION_S = 600.0
DEFAULT_SAMPLE_S = 10.0
TICK_S = 0.1
CHANNELS = ("alpha", "bravo", "charlie")
CHANNEL_SHARES = {1: (1.0,), 2: (0.7, 0.3), 3: (0.6, 0.3, 0.1)}
SEED = 42
FLAT_PCT_PER_MIN = 1.0
"""Redis memory is "flat" when its least-squares slope over the second half of the run is
under this share of its mean over that half, per minute (10 minutes at 1 %/min: < 10 %)."""
RSS_FLAT_PCT = 5.0
"""A process's RSS is "flat" when it grew less than this over the last 5 minutes."""
TAIL_S = 300.0
DRAIN_TIMEOUT_S = 120.0
REPORT_TIMEOUT_S = 60.0
MAX_CATCH_UP_S = 1.0
"""A late tick publishes what was due, but at most this many seconds' worth at once."""
SERVICE_NAMES = tuple(service.name for service in SERVICES)
LOG_TAIL_LINES = 40
MB = 1024 * 1024

Maker = Callable[[ChannelState, np.random.Generator, datetime], EventBase]
MAKERS: tuple[tuple[str, Maker], ...] = (
    ("chat_msgs", make_chat),
    ("donations", make_donation),
    ("cheers", make_cheer),
    ("subs", make_sub),
    ("resubs", make_resub),
    ("gifts", make_gift),
    ("follows", make_follow),
)
"""Each maker with the ``{name}_per_min_per_100_viewers`` rate that weighs it."""


def say(message: str) -> None:
    """A progress line of the soak itself."""
    print(f"soak    | {message}", flush=True)


# ---------------------------------------------------------------- load


class ChannelLoad:
    """One channel's live broadcast at a fixed share of the rate, built by the simulator."""

    def __init__(
        self, channel: str, rate: float, start: datetime, scenario: Scenario, seed: int
    ) -> None:
        self.rate = rate
        self.rng = channel_rng(seed, channel)
        self.state = new_state(scenario, IngestSettings(_env_file=None), channel, start, self.rng)
        self.sent = 0
        self.viewer_counts = 0
        self._mix: tuple[str, list[Maker], np.ndarray[Any, np.dtype[np.float64]], float] | None
        self._mix = None

    def mix(self) -> tuple[list[Maker], np.ndarray[Any, np.dtype[np.float64]], float]:
        """Makers, their probabilities, and events per minute per 100 viewers, for the activity."""
        if self._mix is None or self._mix[0] != self.state.activity:
            behaviour = self.state.behaviour
            rates = [getattr(behaviour, f"{name}_per_min_per_100_viewers") for name, _ in MAKERS]
            total = float(sum(rates))
            probabilities = np.asarray(rates, dtype=np.float64) / total
            self._mix = (self.state.activity, [make for _, make in MAKERS], probabilities, total)
        _, makers, probabilities, total = self._mix
        return makers, probabilities, total

    @property
    def viewers(self) -> float:
        """The audience that would produce ``rate`` events/s with the activity's habits."""
        _, _, per_min_per_100 = self.mix()
        return self.rate * 60 * 100 / per_min_per_100

    def opening(self) -> list[EventBase]:
        """``stream_started`` and the initial ``activity_changed``."""
        return opening_events(self.state)

    def closing(self, elapsed_s: float) -> EventBase:
        """``stream_ended`` at ``elapsed_s``."""
        self.state.elapsed_s = elapsed_s
        return closing_event(self.state)

    def tick(self, elapsed_s: float) -> list[EventBase]:
        """The events due between the previous tick and ``elapsed_s``, with ids, by ``ts``."""
        state = self.state
        due = int(self.rate * elapsed_s) - self.sent
        due = min(due, int(self.rate * MAX_CATCH_UP_S))
        dt_s = max(elapsed_s - state.elapsed_s, 1e-3)
        state.viewers = self.viewers
        events: list[EventBase] = []
        interval_s = state.scenario.viewer_count_interval_s
        while self.viewer_counts * interval_s <= elapsed_s and due > len(events):
            count = round(state.viewers * (1 + 0.01 * float(self.rng.standard_normal())))
            events.append(
                ViewerCountEvent(
                    id="pending",
                    channel=state.channel,
                    ts=ts_within(state, self.rng, dt_s),
                    source="sim",
                    count=max(0, count),
                )
            )
            self.viewer_counts += 1
        makers, probabilities, _ = self.mix()
        picks = self.rng.choice(len(makers), size=max(0, due - len(events)), p=probabilities)
        for pick in picks:
            events.append(makers[pick](state, self.rng, ts_within(state, self.rng, dt_s)))
        state.elapsed_s = elapsed_s
        events.sort(key=lambda event: event.ts)
        self.sent += len(events)
        return [event.model_copy(update={"id": state.next_id()}) for event in events]


@dataclass
class LoadTotals:
    """What the load generator published."""

    published: int = 0
    duplicates: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    late_ticks: int = 0
    activity_switches: int = 0


class Load:
    """Publishes every channel's events at the asked rate until stopped."""

    def __init__(
        self, redis: Redis, settings: BaseServiceSettings, rate: float, channels: Sequence[str]
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.publisher = Publisher(redis, settings, batch_size=500)
        self.start = utc_now()
        shares = CHANNEL_SHARES[len(channels)]
        scenario = default_scenario()
        self.channels = {
            name: ChannelLoad(name, rate * share, self.start, scenario, SEED)
            for name, share in zip(channels, shares, strict=True)
        }
        self.totals = LoadTotals()
        self.lifecycle_key = settings.keys.stream(Stream.LIFECYCLE)
        self.cursor = "0-0"
        self.began = 0.0

    def elapsed_s(self) -> float:
        """Seconds since the load began (monotonic clock)."""
        return time.monotonic() - self.began

    async def publish(self, events: list[EventBase]) -> None:
        """Publish ``events`` and count them."""
        if not events:
            return
        result = await self.publisher.publish_many(events)
        self.totals.published += result.published
        self.totals.duplicates += len(result.duplicates)
        self.totals.by_type.update(event.type for event in events)

    async def run(self, stop: asyncio.Event) -> None:
        """Open every channel, then publish each tick's events until ``stop``.

        Ticks are counted from ``began`` (set it just before; now if it is not set).
        """
        self.began = self.began or time.monotonic()
        await self.publish([e for load in self.channels.values() for e in load.opening()])
        tick = 0
        while not stop.is_set():
            tick += 1
            delay = self.began + tick * TICK_S - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            else:
                self.totals.late_ticks += 1
            await self.follow_activity()
            elapsed = self.elapsed_s()
            await self.publish([e for load in self.channels.values() for e in load.tick(elapsed)])

    async def close(self) -> None:
        """Publish every channel's ``stream_ended``, now."""
        elapsed = self.elapsed_s()
        await self.publish([load.closing(elapsed) for load in self.channels.values()])

    async def follow_activity(self) -> None:
        """Switch a channel's mix when the orchestrator changed its activity."""
        reply = await self.redis.xread({self.lifecycle_key: self.cursor}, count=1000)
        for _stream, entry_id, fields in stream_entries(reply):
            self.cursor = entry_id
            load = self.channels.get(str(fields.get("channel", "")))
            if (
                load is not None
                and fields.get("type") == "activity_changed"
                and switch_activity(load.state, str(fields.get("activity", "")))
            ):
                self.totals.activity_switches += 1


# ---------------------------------------------------------------- sampling


def proc_rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in kB (``/proc/PID/status`` VmRSS), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (``/proc/PID/stat``), 0 if gone."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One look at Redis and the processes, ``t_s`` seconds into the load."""

    t_s: float
    published: int
    used_memory: int
    used_memory_rss: int
    keys: int
    expires: int
    stream_len: dict[str, int]
    lag: dict[str, int]
    pending: dict[str, int]
    rss_kb: dict[str, int]
    cpu_s: dict[str, float]
    machine_cpu_s: float

    @property
    def stream_total(self) -> int:
        """Entries in every event stream."""
        return sum(self.stream_len.values())


class Sampler:
    """Takes :class:`Sample` s of Redis and of every process."""

    def __init__(self, redis: Redis, settings: BaseServiceSettings, pids: dict[str, int]) -> None:
        self.redis = redis
        self.keys = settings.keys
        self.pids = pids
        self.samples: list[Sample] = []

    async def groups(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Per group: lag and pending summed over the event streams; entries read."""
        lag: Counter[str] = Counter()
        pending: Counter[str] = Counter()
        read: Counter[str] = Counter()
        for kind in EVENT_STREAMS:
            key = self.keys.stream(kind)
            if not await self.redis.exists(key):
                continue
            for group in await self.redis.xinfo_groups(key):
                name = str(group["name"])
                lag[name] += int(group.get("lag") or 0)
                pending[name] += int(group["pending"])
                read[name] += int(group.get("entries-read") or 0)
        return dict(lag), dict(pending), dict(read)

    async def take(self, t_s: float, published: int, *, record: bool = True) -> Sample:
        """One sample, kept in :attr:`samples` when ``record``."""
        memory: dict[str, Any] = await self.redis.info("memory")
        keyspace: dict[str, Any] = await self.redis.info("keyspace")
        db = keyspace.get("db0", {"keys": 0, "expires": 0})
        lengths = {}
        for kind in EVENT_STREAMS:
            lengths[kind.value] = int(await self.redis.xlen(self.keys.stream(kind)))
        lag, pending, _ = await self.groups()
        sample = Sample(
            t_s=t_s,
            published=published,
            used_memory=int(memory["used_memory"]),
            used_memory_rss=int(memory["used_memory_rss"]),
            keys=int(db["keys"]),
            expires=int(db["expires"]),
            stream_len=lengths,
            lag=lag,
            pending=pending,
            rss_kb={name: proc_rss_kb(pid) for name, pid in self.pids.items()},
            cpu_s={name: proc_cpu_s(pid) for name, pid in self.pids.items()},
            machine_cpu_s=machine_cpu_s(),
        )
        if record:
            self.samples.append(sample)
        return sample


@dataclass
class KeyInfo:
    """One key in a census."""

    type: str
    length: int
    bytes: int


@dataclass
class Census:
    """Every key but the dedupe markers, measured; the markers counted and sampled."""

    t_s: float
    used_memory: int
    keys: dict[str, KeyInfo]
    dedupe_count: int
    dedupe_bytes_each: float

    @property
    def other_bytes(self) -> int:
        """Bytes of every key measured one by one."""
        return sum(info.bytes for info in self.keys.values())


LENGTH_COMMANDS = {"stream": "XLEN", "zset": "ZCARD", "hash": "HLEN", "set": "SCARD"}


async def take_census(redis: Redis, prefix: str, t_s: float) -> Census:
    """Measure every key not under ``{prefix}dedupe:`` and sample the dedupe markers."""
    memory: dict[str, Any] = await redis.info("memory")
    keys: dict[str, KeyInfo] = {}
    dedupe_glob = f"{prefix}{DEDUPE_PREFIX}*"
    for pattern in (f"{prefix}[^d]*", f"{prefix}{DECISIONS_PREFIX}*"):  # all but dedupe:
        async for key in redis.scan_iter(match=pattern, count=10_000):
            kind = str(await redis.type(key))
            command = LENGTH_COMMANDS.get(kind)
            length = int(await redis.execute_command(command, key)) if command else 1  # type: ignore[no-untyped-call]
            usage = await redis.memory_usage(key, samples=0)
            keys[key] = KeyInfo(kind, length, int(usage or 0))
    total = int(await redis.dbsize())
    sampled: list[int] = []
    async for key in redis.scan_iter(match=dedupe_glob, count=1_000):
        sampled.append(int(await redis.memory_usage(key) or 0))
        if len(sampled) >= 500:
            break
    each = statistics.fmean(sampled) if sampled else 0.0
    return Census(t_s, int(memory["used_memory"]), keys, total - len(keys), each)


# ---------------------------------------------------------------- the run


@dataclass
class ServiceRun:
    """A running service, where its output goes, and its last lines."""

    service: Service
    process: asyncio.subprocess.Process
    log_path: Path
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))


async def capture(run: ServiceRun) -> None:
    """Copy a service's output to its log file, keep the last lines, echo warnings."""
    stream = run.process.stdout
    assert stream is not None  # piped by run_local.start
    partial = ""
    with run.log_path.open("w") as out:
        while chunk := await stream.read(65_536):
            text = chunk.decode(errors="replace")
            out.write(text)
            out.flush()
            lines = (partial + text).split("\n")
            partial = lines.pop()
            for line in lines:
                run.tail.append(line)
                if " WARNING " in line or " ERROR " in line or " CRITICAL " in line:
                    say(f"{run.service.name}: {line}")
        if partial:
            run.tail.append(partial)


def dead(runs: dict[str, ServiceRun]) -> list[str]:
    """Services whose process has exited."""
    return [name for name, run in runs.items() if run.process.returncode is not None]


@dataclass
class Outcome:
    """Everything the section is written from."""

    args: argparse.Namespace
    settings: BaseServiceSettings
    redis_version: str
    samples: list[Sample]
    censuses: list[Census]
    totals: LoadTotals
    load_s: float
    end_of_load: Sample
    drained: Sample
    drain_s: float
    consumed: dict[str, int]
    applied: int
    entries_added: int
    reports: int
    exits: dict[str, str]
    summaries: dict[str, str]
    log_dir: Path
    marker_bytes: float = 0.0


def service_env(redis_url: str, channels: Sequence[str], workdir: Path) -> dict[str, str]:
    """The services' environment: this Redis, these channels, free ports, no sim, no Claude."""
    for service in SERVICES:
        os.environ[service.port_env] = str(free_port())  # run_local reads ports from here
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
        "CHANNELS": ",".join(channels),
        "INGEST_SOURCES": "webhooks",
        "ANTHROPIC_API_KEY": "",
        "RETRO_DIR": str(workdir / "retros"),
        "BANDIT_STATE_PATH": str(workdir / "bandit_state.json"),
        "LOG_FORMAT": "text",
    }


CALIBRATION_MARKERS = 200_000


async def marker_cost(redis: Redis) -> float:
    """Bytes of ``used_memory`` one dedupe marker costs, measured before the load.

    ``CALIBRATION_MARKERS`` markers are set as the publisher sets them (``SET NX PX``)
    under a prefix of their own, then removed: unlike ``MEMORY USAGE``, this counts
    their entries in the server's main and expires dictionaries too.
    """
    keys = Keys("soak-calibration:")
    names = [keys.dedupe("calibration", str(n)) for n in range(CALIBRATION_MARKERS)]
    before = int((await redis.info("memory"))["used_memory"])
    for first in range(0, len(names), 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[first : first + 10_000]:
                pipe.set(name, "1", nx=True, px=3_600_000)
            await pipe.execute()
    after = int((await redis.info("memory"))["used_memory"])
    for first in range(0, len(names), 10_000):
        await redis.delete(*names[first : first + 10_000])
    return (after - before) / CALIBRATION_MARKERS


async def soak(args: argparse.Namespace, redis_url: str, workdir: Path) -> Outcome | str:
    """Run the whole soak; the outcome, or a message saying why it failed."""
    channels = list(CHANNELS[: args.channels])
    env = service_env(redis_url, channels, workdir)
    settings = BaseServiceSettings(redis_url=redis_url, channels=channels)
    runs: dict[str, ServiceRun] = {}
    services = [service for service in SERVICES if service.available]
    redis = connect(redis_url)
    marker_bytes = await marker_cost(redis)
    say(f"one dedupe marker costs {marker_bytes:.0f} B of used_memory")
    async with asyncio.TaskGroup() as pipes:
        try:
            for service in services:
                process = await start(service, env)
                run = runs[service.name] = ServiceRun(
                    service, process, workdir / f"{service.name}.log"
                )
                pipes.create_task(capture(run))
            await asyncio.gather(
                *(
                    wait_healthy(r.service.url, name=r.service.name, process=r.process)
                    for r in runs.values()
                )
            )
            say("services healthy: " + ", ".join(f"{n} :{r.service.port}" for n, r in runs.items()))
            result = await drive(args, settings, redis, runs, workdir)
        except RuntimeError as error:
            result = f"FAILED TO START: {error}"
        finally:
            ordered = sorted(runs.values(), key=lambda r: STOP_ORDER.index(r.service.name))
            exits = {r.service.name: await stop(r.service, r.process) for r in ordered}
            say("stopped: " + ", ".join(exits.values()))
            await redis.aclose()
    if isinstance(result, str):
        return result + "\n" + last_lines(runs)
    result.exits = exits
    result.marker_bytes = marker_bytes
    result.summaries = {
        name: next((line for line in reversed(run.tail) if " stopped after " in line), "")
        for name, run in runs.items()
    }
    bad = [text for text in exits.values() if not text.endswith("exit 0")]
    if bad:
        return "SERVICE DID NOT EXIT 0: " + ", ".join(bad) + "\n" + last_lines(runs)
    return result


def last_lines(runs: dict[str, ServiceRun]) -> str:
    """The last log lines of every service, for a failure message."""
    parts = []
    for name, run in runs.items():
        lines = list(run.tail)[-15:]
        parts.append(f"--- {name} (log {run.log_path}), last lines:\n" + "\n".join(lines))
    return "\n".join(parts)


async def drive(
    args: argparse.Namespace,
    settings: BaseServiceSettings,
    redis: Redis,
    runs: dict[str, ServiceRun],
    workdir: Path,
) -> Outcome | str:
    """Load, sample, drain, check the reports: the part between start and stop."""
    server: dict[str, Any] = await redis.info("server")
    pids = {name: run.process.pid or 0 for name, run in runs.items()}
    pids["redis-server"] = int(server["process_id"])
    pids["soak (load)"] = os.getpid()
    sampler = Sampler(redis, settings, pids)
    load = Load(redis, settings, args.rate, settings.channels)
    prefix = settings.redis_key_prefix
    censuses: list[Census] = []
    await sampler.take(0.0, 0)
    stop_load = asyncio.Event()
    say(
        f"load: {args.rate:,} events/s for {args.duration_s:.0f} s on "
        + ", ".join(f"{c} ({load.channels[c].rate:,.0f}/s)" for c in load.channels)
        + f"; service logs in {workdir}"
    )
    load.began = time.monotonic()
    load_task = asyncio.create_task(load.run(stop_load))
    census_at = args.duration_s / 4
    next_sample = min(args.sample_s, args.duration_s)
    try:
        while True:
            await asyncio.sleep(max(0.0, load.began + next_sample - time.monotonic()))
            if load_task.done():
                load_task.result()  # raises what stopped it
                return "the load generator stopped by itself"
            gone = dead(runs)
            if gone:
                return "SERVICE DIED during the load: " + ", ".join(
                    f"{name} (exit code {runs[name].process.returncode})" for name in gone
                )
            last = next_sample >= args.duration_s
            if last:
                stop_load.set()
                await load_task
            sample = await sampler.take(load.elapsed_s(), load.totals.published)
            progress(sample, sampler.samples)
            if (not censuses and next_sample >= census_at) or last:
                censuses.append(await take_census(redis, prefix, sample.t_s))
            if last:
                break
            next_sample = min(next_sample + args.sample_s, args.duration_s)
    finally:
        stop_load.set()
        await load_task
    end_of_load = sampler.samples[-1]
    load_s = end_of_load.t_s
    await load.close()
    say(f"load stopped after {load_s:.1f} s; stream_ended published; draining")
    drained_at = time.monotonic()
    while True:
        lag, pending, _ = await sampler.groups()
        if not any(lag.values()) and not any(pending.values()):
            break
        if time.monotonic() - drained_at > DRAIN_TIMEOUT_S:
            return (
                f"consumers did not drain within {DRAIN_TIMEOUT_S:.0f} s: "
                f"lag {lag}, pending {pending}"
            )
        if dead(runs):
            return "SERVICE DIED while draining: " + ", ".join(dead(runs))
        await asyncio.sleep(0.2)
    drain_s = time.monotonic() - drained_at
    reports = await wait_reports(redis, settings, load, runs)
    if isinstance(reports, str):
        return reports
    drained = await sampler.take(load.elapsed_s(), load.totals.published, record=False)
    _, _, consumed = await sampler.groups()
    applied = 0
    for channel in settings.channels:
        applied += int(await redis.get(settings.keys.analytics(channel).version) or 0)
    added = 0
    for kind in EVENT_STREAMS:
        added += int((await redis.xinfo_stream(settings.keys.stream(kind)))["entries-added"])
    return Outcome(
        args=args,
        settings=settings,
        redis_version=str(server["redis_version"]),
        samples=sampler.samples,
        censuses=censuses,
        totals=load.totals,
        load_s=load_s,
        end_of_load=end_of_load,
        drained=drained,
        drain_s=drain_s,
        consumed=consumed,
        applied=applied,
        entries_added=added,
        reports=reports,
        exits={},
        summaries={},
        log_dir=workdir,
    )


async def wait_reports(
    redis: Redis, settings: BaseServiceSettings, load: Load, runs: dict[str, ServiceRun]
) -> int | str:
    """Wait for the retro report of every channel's stream; how many there are."""
    if "retro" not in runs:
        return 0
    keys = [settings.keys.retro(c, load.channels[c].state.stream_id) for c in load.channels]
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while (found := int(await redis.exists(*keys))) < len(keys):
        if time.monotonic() > deadline:
            return f"only {found} of {len(keys)} retro reports within {REPORT_TIMEOUT_S:.0f} s"
        if dead(runs):
            return "SERVICE DIED while waiting for the reports: " + ", ".join(dead(runs))
        await asyncio.sleep(0.5)
    return found


def progress(sample: Sample, samples: list[Sample]) -> None:
    """One line per sample on stdout."""
    previous = samples[-2] if len(samples) > 1 else samples[0]
    span = sample.t_s - previous.t_s or 1.0
    rate = (sample.published - previous.published) / span
    rss = " ".join(f"{name[:4]} {kb / 1024:.0f}" for name, kb in sample.rss_kb.items())
    say(
        f"t {sample.t_s:5.0f} s | {rate:6,.0f} ev/s | redis {sample.used_memory / MB:7.1f} MB "
        f"| keys {sample.keys:,} | streams {sample.stream_total:,} | lag {sample.lag} "
        f"| RSS MB {rss}"
    )


# ---------------------------------------------------------------- the section


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    if len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope * 60


def halves(samples: Sequence[Sample], load_s: float) -> tuple[list[Sample], list[Sample]]:
    """Samples of the first and the second half of the load (t = 0 idle sample left out)."""
    loaded = [s for s in samples if 0 < s.t_s <= load_s + 1]
    half = load_s / 2
    return [s for s in loaded if s.t_s <= half], [s for s in loaded if s.t_s >= half]


def at_or_before(samples: Sequence[Sample], t_s: float) -> Sample:
    """The last sample taken at or before ``t_s`` (the first one if none)."""
    times = [s.t_s for s in samples]
    return samples[max(0, bisect.bisect_right(times, t_s + 0.5) - 1)]


def cpu_share(first: Sample, last: Sample, name: str) -> float:
    """Share of one core process ``name`` used between two samples."""
    span = last.t_s - first.t_s
    return (last.cpu_s[name] - first.cpu_s[name]) / span if span > 0 else 0.0


def rest_share(first: Sample, last: Sample) -> float:
    """Share of one core used by everything on the machine but the soak's processes."""
    span = last.t_s - first.t_s
    if span <= 0:
        return 0.0
    ours = sum(last.cpu_s[n] - first.cpu_s[n] for n in last.cpu_s)
    return (last.machine_cpu_s - first.machine_cpu_s - ours) / span


def memory_verdict(outcome: Outcome) -> tuple[str, bool]:
    """The Redis memory paragraph and whether memory was flat."""
    first, second = halves(outcome.samples, outcome.load_s)
    parts = []
    flat = True
    for label, part in (("first half", first), ("second half", second)):
        points = [(s.t_s, s.used_memory / MB) for s in part]
        slope = slope_per_min(points)
        mean = statistics.fmean(y for _, y in points) if points else 0.0
        pct = slope / mean * 100 if mean else 0.0
        parts.append(f"{label} {slope:+.2f} MB/min ({pct:+.2f} %/min of its mean {mean:.1f} MB)")
        if label == "second half":
            flat = pct < FLAT_PCT_PER_MIN
    start, end = first[0] if first else outcome.samples[0], outcome.end_of_load
    verdict = "**flat**" if flat else "**NOT flat**"
    text = (
        f"Redis `used_memory` from {start.used_memory / MB:.1f} MB at {start.t_s:.0f} s to "
        f"{end.used_memory / MB:.1f} MB at the end of the load; least-squares slope "
        + "; ".join(parts)
        + f". Flat means a second-half slope under {FLAT_PCT_PER_MIN:g} %/min of the mean: "
        f"{verdict}."
    )
    return text, flat


RECORD_KEYS = ("paid", "paid_data", "social")
"""Per-channel analytics keys holding one record per paid event or follow: the stream's
record, which the retro report reads once at its end; they expire ``STATE_TTL_S`` after
the channel's last event."""


def growth_accounting(outcome: Outcome) -> tuple[str, bool]:
    """Redis growth between the censuses split into what is bounded by design and the rest.

    Streams below their caps grow until their cap; the per-stream records grow with
    the paid events and follows of the stream (bounded by its length and the state
    TTL); dedupe markers grow until their TTL. Everything else must not grow.
    """
    early, late = outcome.censuses[0], outcome.censuses[-1]
    minutes = (late.t_s - early.t_s) / 60 or 1.0
    keys = outcome.settings.keys
    streams = {keys.stream(kind) for kind in EVENT_STREAMS}
    records = {
        getattr(keys.analytics(ch), name)
        for ch in outcome.settings.channels
        for name in RECORD_KEYS
    }

    def grown(names: set[str]) -> float:
        return (
            sum(
                late.keys[k].bytes - (early.keys[k].bytes if k in early.keys else 0)
                for k in names
                if k in late.keys
            )
            / MB
            / minutes
        )

    in_streams, in_records = grown(streams), grown(records)
    markers = ((late.dedupe_count - early.dedupe_count) * outcome.marker_bytes) / MB / minutes
    total = (late.used_memory - early.used_memory) / MB / minutes
    rest = total - in_streams - in_records - markers
    bounded = rest / (late.used_memory / MB) * 100 < FLAT_PCT_PER_MIN
    text = (
        f"Growth between the censuses, {total:+.2f} MB/min in all: event streams below their caps "
        f"{in_streams:+.2f}, the streams' paid and follow records (`{'`, `'.join(RECORD_KEYS)}`, "
        f"read by the retro report) {in_records:+.2f}, dedupe markers {markers:+.2f} (each "
        f"{outcome.marker_bytes:.0f} B of `used_memory`, measured before the load), everything "
        f"else {rest:+.2f} MB/min: "
        + ("**bounded**" if bounded else "**NOT bounded**")
        + f" (everything else under {FLAT_PCT_PER_MIN:g} %/min of `used_memory`)."
    )
    return text, bounded


def census_rows(outcome: Outcome) -> list[str]:
    """Where Redis memory went: the dedupe markers and the largest keys, early vs at the end."""
    early, late = outcome.censuses[0], outcome.censuses[-1]
    rows = [
        f"| key | type | entries at {early.t_s:.0f} s | entries at {late.t_s:.0f} s "
        f"| MB at {early.t_s:.0f} s | MB at {late.t_s:.0f} s | growth MB/min |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    minutes = (late.t_s - early.t_s) / 60 or 1.0
    dedupe_early = early.dedupe_count * early.dedupe_bytes_each
    dedupe_late = late.dedupe_count * late.dedupe_bytes_each
    rows.append(
        f"| `dedupe:*` ({late.dedupe_bytes_each:.0f} B each by `MEMORY USAGE`, "
        f"TTL {outcome.settings.dedupe_chat_ttl_s:,} s for chat, follows, viewer counts; "
        f"{outcome.settings.dedupe_ttl_s:,} s for the rest) | string | {early.dedupe_count:,} "
        f"| {late.dedupe_count:,} | {dedupe_early / MB:.1f} | {dedupe_late / MB:.1f} "
        f"| {(dedupe_late - dedupe_early) / MB / minutes:+.2f} |"
    )
    ranked = sorted(late.keys.items(), key=lambda item: item[1].bytes, reverse=True)
    shown = 0
    rest_early = early.other_bytes
    rest_late = late.other_bytes
    for key, info in ranked:
        before = early.keys.get(key, KeyInfo(info.type, 0, 0))
        if shown >= 16 or info.bytes < 64 * 1024:
            continue
        shown += 1
        rest_early -= before.bytes
        rest_late -= info.bytes
        rows.append(
            f"| `{key}` | {info.type} | {before.length:,} | {info.length:,} "
            f"| {before.bytes / MB:.2f} | {info.bytes / MB:.2f} "
            f"| {(info.bytes - before.bytes) / MB / minutes:+.3f} |"
        )
    others = len(late.keys) - shown
    rows.append(
        f"| {others} other keys | | | | {rest_early / MB:.2f} | {rest_late / MB:.2f} "
        f"| {(rest_late - rest_early) / MB / minutes:+.3f} |"
    )
    accounted_early = early.other_bytes + dedupe_early
    accounted_late = late.other_bytes + dedupe_late
    rows.append(
        f"| `used_memory` (all, with allocator overhead) | | | | {early.used_memory / MB:.1f} "
        f"| {late.used_memory / MB:.1f} "
        f"| {(late.used_memory - early.used_memory) / MB / minutes:+.2f} |"
    )
    rows.append("")
    rows.append(
        f"`MEMORY USAGE` accounts for {accounted_early / MB:.1f} MB then {accounted_late / MB:.1f} "
        "MB of it (the rest is the server's own structures: the main dictionary, the expires "
        "dictionary, client buffers, the Lua and replication machinery)."
    )
    return rows


def process_rows(outcome: Outcome) -> tuple[list[str], list[str]]:
    """The per-process RSS and CPU table, and the names of processes that grew."""
    samples = [s for s in outcome.samples if s.t_s <= outcome.load_s + 1]
    loaded = [s for s in samples if s.t_s > 0]
    first_loaded = loaded[0]
    end = outcome.end_of_load
    tail_from = max(0.0, outcome.load_s - TAIL_S)
    tail_start = at_or_before(samples, tail_from)
    mid = at_or_before(samples, outcome.load_s / 2)
    tail_label = (
        f"last {TAIL_S / 60:.0f} min" if outcome.load_s >= 2 * TAIL_S else f"from {tail_from:.0f} s"
    )
    rows = [
        f"| process | RSS idle MB | RSS at {first_loaded.t_s:.0f} s | RSS end | RSS max "
        f"| growth {tail_label} | slope {tail_label} MB/min | CPU 1st half | CPU 2nd half |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    grew = []
    for name in end.rss_kb:
        tail = [(s.t_s, s.rss_kb[name] / 1024) for s in samples if s.t_s >= tail_start.t_s]
        start_mb = tail_start.rss_kb[name] / 1024
        end_mb = end.rss_kb[name] / 1024
        growth = end_mb - start_mb
        pct = growth / start_mb * 100 if start_mb else 0.0
        if pct >= RSS_FLAT_PCT and name in SERVICE_NAMES:
            grew.append(f"{name} (+{growth:.1f} MB, {pct:+.1f} %)")
        rows.append(
            f"| {name} | {samples[0].rss_kb[name] / 1024:.1f} "
            f"| {first_loaded.rss_kb[name] / 1024:.1f} | {end_mb:.1f} "
            f"| {max(s.rss_kb[name] for s in samples) / 1024:.1f} "
            f"| {growth:+.1f} ({pct:+.1f} %) | {slope_per_min(tail):+.2f} "
            f"| {cpu_share(samples[0], mid, name):.0%} | {cpu_share(mid, end, name):.0%} |"
        )
    rows.append(
        f"| rest of the machine (other people's work) | | | | | | "
        f"| {rest_share(samples[0], mid):.0%} | {rest_share(mid, end):.0%} |"
    )
    return rows, grew


def sample_rows(outcome: Outcome) -> list[str]:
    """The samples table: every sample, or one a minute for runs of 5 minutes or more."""
    samples = [s for s in outcome.samples if s.t_s <= outcome.load_s + 1]
    step = 60.0 if outcome.load_s >= 300 else outcome.args.sample_s
    chosen: list[Sample] = []
    for sample in samples:
        if not chosen or sample.t_s >= chosen[-1].t_s + step - 1 or sample is samples[-1]:
            chosen.append(sample)
    names = [n for n in samples[0].rss_kb if n not in ("soak (load)",)]
    rows = [
        "| t s | events/s | Redis MB | keys | event-stream entries | analytics lag | "
        + " | ".join(f"{n} RSS MB" for n in names)
        + " |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    previous = samples[0]
    for sample in chosen:
        span = sample.t_s - previous.t_s
        rate = (sample.published - previous.published) / span if span > 0 else 0.0
        rows.append(
            f"| {sample.t_s:.0f} | {rate:,.0f} | {sample.used_memory / MB:.1f} | {sample.keys:,} "
            f"| {sample.stream_total:,} | {sample.lag.get('analytics', 0):,} | "
            + " | ".join(f"{sample.rss_kb[n] / 1024:.1f}" for n in names)
            + " |"
        )
        previous = sample
    return rows


def stream_rows(outcome: Outcome) -> list[str]:
    """Each event stream's length against its cap."""
    end = outcome.end_of_load
    minutes = outcome.load_s / 60
    rows = ["| stream | cap (MAXLEN ~) | entries at the end | state |", "|---|---:|---:|---|"]
    for kind in EVENT_STREAMS:
        cap = outcome.settings.stream_maxlen(kind)
        length = end.stream_len[kind.value]
        if length >= cap:
            state = "at its cap (trimmed)"
        else:
            per_min = length / minutes if minutes else 0.0
            hours = cap / per_min / 60 if per_min else float("inf")
            state = f"below its cap: {per_min:,.0f} entries/min, cap reached after ~{hours:,.1f} h"
        rows.append(f"| `events:{kind.value}` | {cap:,} | {length:,} | {state} |")
    return rows


def render(outcome: Outcome) -> str:
    """The Markdown body of section ``soak``."""
    args, settings, totals = outcome.args, outcome.settings, outcome.totals
    achieved = outcome.end_of_load.published / outcome.load_s
    channels = ", ".join(
        f"`{c}` {share:.0%}"
        for c, share in zip(settings.channels, CHANNEL_SHARES[len(settings.channels)], strict=True)
    )
    mix = ", ".join(
        f"{kind} {count:,} ({count / max(1, sum(totals.by_type.values())):.2%})"
        for kind, count in totals.by_type.most_common()
    )
    caps = ", ".join(f"{k.value} {settings.stream_maxlen(k):,}" for k in Stream)
    memory_text, flat = memory_verdict(outcome)
    accounting, bounded = growth_accounting(outcome)
    process_table, grew = process_rows(outcome)
    end, drained = outcome.end_of_load, outcome.drained
    consumed = outcome.consumed.get("analytics", 0)
    lines = [
        f"`make soak` (`tools/soak.py`): {args.rate:,} events/s asked for {args.duration_s:.0f} s "
        f"against an embedded redis-server {outcome.redis_version} (AOF "
        f"{'on, appendfsync everysec' if args.aof else 'off'}, no RDB saves), the four services "
        "as subprocesses (`python -m services.<name>`, default settings; ingest with "
        "`INGEST_SOURCES=webhooks`, so the simulator is off; the orchestrator on the bandit "
        "alone). The load comes from the soak process through `Publisher` (validate, dedupe, "
        "XADD), paced per 100 ms tick, every `ts` the wall clock, built by the simulator's own "
        "event makers with the default scenario's relative rates for the activity on air (the "
        "orchestrator's activity changes switch the mix). **Ran on 2 CPU cores shared with other "
        "people's test runs**: see the last row of the process table.",
        "",
        "| setting | value |",
        "|---|---|",
        f"| rate | {args.rate:,} events/s asked, {achieved:,.0f} achieved "
        f"({outcome.end_of_load.published:,} events in {outcome.load_s:.0f} s; "
        f"{totals.late_ticks} late ticks) |",
        f"| channels | {channels} of the rate, each opened with `stream_started` and closed "
        "with `stream_ended` |",
        f"| mix published | {mix} |",
        f"| activity switches followed | {totals.activity_switches} |",
        f"| stream caps (`STREAM_MAXLEN_*`) | {caps} |",
        f"| dedupe marker TTL | `DEDUPE_CHAT_TTL_S` {settings.dedupe_chat_ttl_s:,} s "
        f"(chat, follows, viewer counts), `DEDUPE_TTL_S` {settings.dedupe_ttl_s:,} s (the rest) |",
        f"| sampling | every {args.sample_s:g} s; census of the keys at "
        f"{outcome.censuses[0].t_s:.0f} s and {outcome.censuses[-1].t_s:.0f} s |",
        "",
        "Samples (the first row is before the load; the events/s column is the rate since "
        "the row above):",
        "",
        *sample_rows(outcome),
        "",
        "### Redis memory",
        "",
        memory_text,
        "",
        accounting,
        "",
        *stream_rows(outcome),
        "",
        "Where the memory is (`MEMORY USAGE ... SAMPLES 0` of every key but the dedupe "
        "markers, which are counted and 500 of them measured):",
        "",
        *census_rows(outcome),
        "",
        "### Processes",
        "",
        "RSS from `/proc/PID/status` (VmRSS); CPU as a share of one core.",
        "",
        *process_table,
        "",
        f"RSS growth over the last {TAIL_S / 60:.0f} minutes under {RSS_FLAT_PCT:g} % counts as "
        "flat: " + (("**grew**: " + ", ".join(grew)) if grew else "**every process flat**") + ".",
        "",
        "### Consumers",
        "",
        f"At the end of the load: analytics lag {end.lag.get('analytics', 0):,}, pending "
        f"{end.pending.get('analytics', 0):,}; retro lag {end.lag.get('retro', 0):,}. "
        f"Drained (lag and pending 0 in every group) {outcome.drain_s:.1f} s after the last "
        f"publish; {outcome.reports} retro report(s) written.",
        "",
        f"Published by the load: {totals.published:,} ({totals.duplicates} duplicates); "
        f"entries added to the event streams: {outcome.entries_added:,} (the "
        f"{outcome.entries_added - totals.published:,} more are the orchestrator's activity "
        f"changes); read by the analytics group: {consumed:,}; "
        f"applied to analytics state (sum of the channel versions): {outcome.applied:,}; "
        f"left pending: {drained.pending.get('analytics', 0)}.",
        "",
        "Every service stopped on SIGINT: "
        + "; ".join(f"{text}" for text in outcome.exits.values())
        + ". Their summary lines:",
        "",
        *[
            f"    {line.split(': ', 1)[-1] if line else f'{name}: (no summary line)'}"
            for name, line in outcome.summaries.items()
        ],
        "",
        "Verdict: Redis memory "
        + ("flat" if flat else "**NOT flat**")
        + (
            "; its growth outside capped streams, per-stream records and dedupe markers "
            + ("bounded" if bounded else "**NOT bounded**")
        )
        + "; process memory "
        + ("flat" if not grew else "**grew** (" + ", ".join(grew) + ")")
        + ".",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__)
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="events/s to publish")
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S, help="load time")
    parser.add_argument("--sample-s", type=float, default=DEFAULT_SAMPLE_S, help="sample interval")
    parser.add_argument("--channels", type=int, choices=(1, 2, 3), default=3, help="channels")
    parser.add_argument("--aof", action="store_true", help="run redis-server with AOF on")
    parser.add_argument(
        "--no-write", action="store_true", help="print the section, leave docs/benchmarks.md"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make soak``."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="streamloop-soak-"))
    server = RedisServer(appendonly=args.aof)
    server.start()
    say(f"redis-server on port {server.port} (AOF {'on' if args.aof else 'off'})")
    try:
        outcome = asyncio.run(soak(args, server.url, workdir))
    finally:
        server.close()
    if isinstance(outcome, str):
        say(f"\033[31mSOAK FAILED: {outcome}\033[0m")
        return 1
    body = render(outcome)
    print(body, flush=True)
    if not args.no_write:
        write_section("soak", body)
        say("wrote section soak of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
