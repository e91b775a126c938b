"""Helpers that put a channel's analytics state in Redis through the real analytics handler."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from services.analytics.handler import apply_events
from shared.events import EventBase
from shared.keys import Keys


async def apply(redis: Redis, keys: Keys, events: Sequence[EventBase]) -> None:
    """Write ``events`` into analytics' raw state exactly as its consumer would."""
    await apply_events(redis, keys, events)


async def new_lifecycle(redis: Redis, keys: Keys, after: str) -> tuple[str, list[EventBase]]:
    """Entries of ``events:lifecycle`` after id ``after`` (parsed), and the last id read."""
    from shared.events import parse_fields

    entries = await redis.xrange(
        keys.channel_stream("lifecycle", "demo"), min=f"({after}" if after else "-"
    )
    last = entries[-1][0] if entries else after
    return last, [parse_fields(fields) for _, fields in entries]
