"""Readings the benchmarks and the soak take: CPU and memory of processes, Redis, percentiles.

CPU is read from ``/proc`` and Redis ``INFO`` so a figure can be set beside what the
rest of the machine was doing (two cores shared with other people's work).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis


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


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in kB (``/proc/PID/status`` VmRSS), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def redis_cpu_s(redis: Redis) -> float:
    """CPU seconds (user + system) the Redis server has used so far."""
    info: dict[str, Any] = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_commands(redis: Redis) -> int:
    """Commands the Redis server has processed so far (``MULTI``/``EXEC`` and queued ones)."""
    info: dict[str, Any] = await redis.info("stats")
    return int(info["total_commands_processed"])


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, round(share * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_row(name: str, values: list[float], count: str = "") -> str:
    """A table row: p50, p99, max and count of sorted ``values``."""
    if not values:
        return f"| {name} | - | - | - | 0 |"
    return (
        f"| {name} | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} "
        f"| {max(values):.1f} | {count or f'{len(values):,}'} |"
    )


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
