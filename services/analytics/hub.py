"""Connected dashboard clients, each with a bounded queue, so a slow one never delays the rest.

Publishing only enqueues (``put_nowait``); each connection drains its own queue.
A client whose queue is full is marked for dropping: its connection closes with
1008 and a reason, and ``streamloop_ws_clients_dropped_total`` counts it.

New clients read their snapshot from Redis through :attr:`Hub.joining`, at most
``JOINING_AT_ONCE`` at a time: redis-py's async pool holds 100 connections and
fails any command that would need another, so a burst of hundreds of dashboards
connecting at once would otherwise fail their own snapshots (and the consumer's
and broadcaster's commands) with "Too many connections".
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

CONNECTED = Gauge("streamloop_ws_clients", "Dashboard WebSocket clients connected.", ["channel"])
DROPPED = Counter("streamloop_ws_clients_dropped_total", "Clients dropped for falling behind.")
SEND_LATENCY = Histogram(
    "streamloop_ws_send_latency_seconds",
    "From enqueue to the frame being written.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
JOINING_AT_ONCE = 16


@dataclass(eq=False)
class Client:
    """One WebSocket connection's outbox."""

    channel: str
    queue: asyncio.Queue[tuple[float, str]]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_frame(self) -> str:
        """The next frame to send (waits); records how long it queued."""
        queued_at, frame = await self.queue.get()
        SEND_LATENCY.observe(time.perf_counter() - queued_at)
        return frame


class Hub:
    """Clients by channel; :meth:`publish` fans a frame out without ever waiting."""

    def __init__(self, queue_messages: int, joining_at_once: int = JOINING_AT_ONCE) -> None:
        self.queue_messages = queue_messages
        self.joining = asyncio.Semaphore(joining_at_once)
        self._clients: dict[str, set[Client]] = defaultdict(set)

    def add(self, channel: str) -> Client:
        """Register a new client of ``channel``."""
        client = Client(channel, asyncio.Queue(self.queue_messages))
        self._clients[channel].add(client)
        CONNECTED.labels(channel).inc()
        return client

    def remove(self, client: Client) -> None:
        """Forget ``client`` (idempotent)."""
        if client in self._clients[client.channel]:
            self._clients[client.channel].discard(client)
            CONNECTED.labels(client.channel).dec()

    def publish(self, channel: str, frame: str) -> None:
        """Queue ``frame`` for every client of ``channel``; overflowing clients are dropped."""
        queued_at = time.perf_counter()
        for client in list(self._clients[channel]):
            try:
                client.queue.put_nowait((queued_at, frame))
            except asyncio.QueueFull:
                self._drop(client)

    def has_clients(self, channel: str) -> bool:
        """True when someone watches ``channel``."""
        return bool(self._clients[channel])

    def count(self) -> int:
        """Clients connected, all channels."""
        return sum(len(clients) for clients in self._clients.values())

    def _drop(self, client: Client) -> None:
        self.remove(client)
        client.overflowed.set()
        DROPPED.inc()
