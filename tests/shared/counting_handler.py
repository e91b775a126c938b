"""A handler for runner tests: counts each event into a hash, the way a real service would."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio.client import Pipeline

from shared.consumer import Delivery


class CountingHandler:
    """HINCRBY ``counts_key`` field ``{type}:{id}`` for each event; optionally fails or stalls."""

    def __init__(
        self, counts_key: str, *, poison_id: str = "", stall: asyncio.Event | None = None
    ) -> None:
        self.counts_key = counts_key
        self.poison_id = poison_id
        self.stall = stall
        self.calls = 0

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        self.calls += 1
        if self.stall is not None:
            await self.stall.wait()
        for delivery in batch:
            if delivery.event.id == self.poison_id:
                raise RuntimeError(f"cannot handle {delivery.event.id}")
            tx.hincrby(self.counts_key, f"{delivery.event.type}:{delivery.event.id}", 1)
