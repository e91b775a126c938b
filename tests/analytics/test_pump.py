"""The per-client pumps: every client gets a frame before any client gets the next one.

A recording stand-in takes the place of the socket (the pump only calls
``send_text``); the real socket path is covered by ``test_socket.py``.
"""

from __future__ import annotations

import asyncio

from services.analytics.hub import Hub
from services.analytics.socket import pump


class RecordingSocket:
    """Appends ``(client, frame)`` to a list shared by every client."""

    def __init__(self, name: str, sent: list[tuple[str, str]]) -> None:
        self.name = name
        self.sent = sent

    async def send_text(self, text: str) -> None:
        self.sent.append((self.name, text))


async def test_a_frame_reaches_every_client_before_anyone_gets_the_next() -> None:
    hub = Hub(queue_messages=8)
    sent: list[tuple[str, str]] = []
    names = [f"c{n}" for n in range(5)]
    pumps = [
        asyncio.create_task(pump(RecordingSocket(name, sent), hub.add("demo")))  # type: ignore[arg-type]
        for name in names
    ]
    await asyncio.sleep(0)
    hub.publish("demo", "donation")
    hub.publish("demo", "revenue_point")
    for _ in range(20):
        await asyncio.sleep(0)
    for task in pumps:
        task.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    assert [frame for _, frame in sent] == ["donation"] * 5 + ["revenue_point"] * 5
    assert sorted(name for name, _ in sent[:5]) == names
