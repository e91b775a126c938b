"""The soak's run: start the services, load, sample, drain, check the reports, stop.

A service that dies, a consumer that does not drain or a report that does not come
ends the run with a message saying why (and the services' last log lines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from shared.redis_client import connect
from shared.redis_server import free_port
from shared.settings import BaseServiceSettings
from tools.health import wait_healthy
from tools.run_local import SERVICES, STOP_ORDER, Service, start, stop
from tools.soak import MB, say
from tools.soak.load import CHANNELS, Load, LoadTotals
from tools.soak.sampling import Census, Sample, Sampler, marker_cost, take_census

DRAIN_TIMEOUT_S = 120.0
REPORT_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 40


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


@dataclass(frozen=True)
class Tally:
    """What the consumers made of the load, counted once they drained."""

    drained: Sample
    consumed: dict[str, int]
    applied: int
    entries_added: int


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
    await sampler.take(0.0, 0)
    say(
        f"load: {args.rate:,} events/s for {args.duration_s:.0f} s on "
        + ", ".join(f"{c} ({load.channels[c].rate:,.0f}/s)" for c in load.channels)
        + f"; service logs in {workdir}"
    )
    censuses = await load_and_sample(args, load, sampler, settings.redis_key_prefix, runs)
    if isinstance(censuses, str):
        return censuses
    end_of_load = sampler.samples[-1]
    await load.close()
    say(f"load stopped after {end_of_load.t_s:.1f} s; stream_ended published; draining")
    drain_s = await drain(sampler, runs)
    if isinstance(drain_s, str):
        return drain_s
    reports = await wait_reports(redis, settings, load, runs)
    if isinstance(reports, str):
        return reports
    counted = await tally(sampler, load)
    return Outcome(
        args=args,
        settings=settings,
        redis_version=str(server["redis_version"]),
        samples=sampler.samples,
        censuses=censuses,
        totals=load.totals,
        load_s=end_of_load.t_s,
        end_of_load=end_of_load,
        drain_s=drain_s,
        reports=reports,
        exits={},
        summaries={},
        log_dir=workdir,
        drained=counted.drained,
        consumed=counted.consumed,
        applied=counted.applied,
        entries_added=counted.entries_added,
    )


async def load_and_sample(
    args: argparse.Namespace,
    load: Load,
    sampler: Sampler,
    prefix: str,
    runs: dict[str, ServiceRun],
) -> list[Census] | str:
    """Run the load for ``--duration-s``, sampling every ``--sample-s``; the censuses taken.

    One census at a quarter of the run, one at its end. A service that dies, or a
    load generator that stops by itself, ends it with a message instead.
    """
    stop_load = asyncio.Event()
    load.began = time.monotonic()
    load_task = asyncio.create_task(load.run(stop_load))  # awaited below, whatever happens
    censuses: list[Census] = []
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
                censuses.append(await take_census(sampler.redis, prefix, sample.t_s))
            if last:
                return censuses
            next_sample = min(next_sample + args.sample_s, args.duration_s)
    finally:
        stop_load.set()
        await load_task


async def drain(sampler: Sampler, runs: dict[str, ServiceRun]) -> float | str:
    """Seconds until every group has no lag and nothing pending (or why it did not)."""
    began = time.monotonic()
    while True:
        lag, pending, _ = await sampler.groups()
        if not any(lag.values()) and not any(pending.values()):
            return time.monotonic() - began
        if time.monotonic() - began > DRAIN_TIMEOUT_S:
            return (
                f"consumers did not drain within {DRAIN_TIMEOUT_S:.0f} s: "
                f"lag {lag}, pending {pending}"
            )
        if dead(runs):
            return "SERVICE DIED while draining: " + ", ".join(dead(runs))
        await asyncio.sleep(0.2)


async def tally(sampler: Sampler, load: Load) -> Tally:
    """After the drain: a last sample, entries read, applied and added."""
    redis, keys = sampler.redis, load.settings.keys
    drained = await sampler.take(load.elapsed_s(), load.totals.published, record=False)
    _, _, consumed = await sampler.groups()
    applied = 0
    for channel in load.settings.channels:
        applied += int(await redis.get(keys.analytics(channel).version) or 0)
    added = 0
    for key in sampler.streams:
        added += int((await redis.xinfo_stream(key))["entries-added"])
    return Tally(drained=drained, consumed=consumed, applied=applied, entries_added=added)


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
