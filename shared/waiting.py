"""Waiting that a shutdown can cut short, for the long-running loops of every service."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_or_stop(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` seconds, or less if ``stop`` is set meanwhile; True if it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
    return stop.is_set()
