"""What every benchmark shares: its section of ``docs/benchmarks.md``, uvloop, open files.

A benchmark is a function returning the Markdown body of one section; ``tools/bench.py``
registers it under the section's name, and :func:`write_section` rewrites that section,
between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, with a line saying when and
where it was measured. Every benchmark starts its own ``redis-server`` and stops every
process, socket and server it started, whatever happens.
"""

from __future__ import annotations

import asyncio
import platform
import re
import resource
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from shared.clock import format_ts

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
T = TypeVar("T")


def write_section(name: str, body: str) -> None:
    """Replace section ``name`` of the benchmarks doc with ``body`` (append if new)."""
    stamp = (
        f"_Measured {format_ts(datetime.now(UTC))} on {platform.node() or 'this machine'}, "
        f"Python {platform.python_version()}._"
    )
    block = f"<!-- bench:{name} -->\n{stamp}\n\n{body}\n<!-- /bench:{name} -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    DOC.write_text(text)


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
