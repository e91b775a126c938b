"""``python -m shared.partitions``: the operator's way to find a channel's hash tag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.partitions import partition_of, tag

ROOT = Path(__file__).resolve().parents[2]


def tags(*channels: str, partitions: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    if partitions is not None:
        env["PARTITIONS"] = partitions
    return subprocess.run(
        [sys.executable, "-m", "shared.partitions", *channels],
        capture_output=True, text=True, timeout=30, check=False, env=env, cwd=ROOT.parent,
    )  # fmt: skip


def test_it_prints_each_channels_tag_as_the_services_compute_it() -> None:
    done = tags("demo", "Shroud")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [tag(partition_of("demo")), tag(partition_of("shroud"))]


def test_it_reads_partitions_from_the_environment_like_the_services() -> None:
    done = tags("demo", partitions="8")
    assert done.stdout.strip() == tag(partition_of("demo", 8))
    assert partition_of("demo", 8) != partition_of("demo")  # the setting really mattered


def test_without_a_channel_it_prints_its_usage_and_fails() -> None:
    done = tags()
    assert done.returncode == 2 and "usage: python -m shared.partitions CHANNEL" in done.stderr
