"""The helper processes' roles: ``python -m tools.benchmarks.roles ROLE ARGS...``.

* ``chat-load URL RATE``: chat events at ``RATE``/s through the Publisher until ``stop``;
* ``crowd URL COUNT COMPRESSION``: WebSocket clients noting when each donation arrives;
* ``count URL COUNT FRAMES SKIP COMPRESSION``: clients timing the arrival of ``FRAMES``.

Each says ``ready`` once set up, and its figures as one JSON line at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from services.analytics.settings import AnalyticsSettings
from shared.publisher import Publisher
from shared.redis_client import connect
from tools.benchmarks.harness import run_uvloop

CONNECT_AT_ONCE = 50


async def stdin_reader() -> asyncio.StreamReader:
    """This process's stdin as an asyncio stream (helpers wait for ``stop`` on it)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def connect_many(
    url: str, count: int, compression: str | None = "deflate"
) -> list[ClientConnection]:
    """``count`` WebSocket clients of ``url``, opened ``CONNECT_AT_ONCE`` at a time."""
    clients: list[ClientConnection] = []
    for start in range(0, count, CONNECT_AT_ONCE):
        size = min(CONNECT_AT_ONCE, count - start)
        clients += await asyncio.gather(
            *(
                websockets.connect(url, proxy=None, compression=compression, open_timeout=30)
                for _ in range(size)
            )
        )
    return clients


async def close_all(clients: Sequence[ClientConnection]) -> None:
    """Close every client, never raising."""
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def say(text: str) -> None:
    """One line to the benchmark that started this helper."""
    print(text, flush=True)


async def role_chat_load(url: str, rate: str) -> None:
    """Helper: publish ``rate`` chat events/s to ``demo`` through the Publisher until ``stop``."""
    redis = connect(url)
    publisher = Publisher(redis, AnalyticsSettings(_env_file=None, redis_url=url))
    stdin = await stdin_reader()
    stopped = asyncio.create_task(stdin.readline())
    tag, per_s, sent = uuid.uuid4().hex[:8], int(rate), 0
    say("ready")
    started = time.perf_counter()
    try:
        while not stopped.done():
            due = min(int((time.perf_counter() - started) * per_s), sent + 1000)
            if due > sent:
                ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                await publisher.publish_many(
                    {
                        "type": "chat",
                        "id": f"load-{tag}-{n}",
                        "channel": "demo",
                        "ts": ts,
                        "source": "sim",
                        "user": f"viewer{n % 2000}",
                        "text": "that was a great play, how did you do that?",
                    }
                    for n in range(sent, due)
                )
                sent = due
            await asyncio.sleep(0.01)
    finally:
        say(json.dumps({"published": sent, "seconds": time.perf_counter() - started}))
        await redis.aclose()


async def role_crowd(url: str, count: str, compression: str) -> None:
    """Helper: ``count`` clients that read every frame, noting when each ``donation`` came.

    On ``stop`` it says the frames read, the clients the server closed, and the
    ``perf_counter`` arrivals of each donation id on every client.
    """
    clients = await connect_many(url, int(count), None if compression == "off" else compression)
    frames = [0]
    closes: list[int] = []
    arrivals: dict[str, list[float]] = {}

    async def read(client: ClientConnection) -> None:
        try:
            async for raw in client:
                arrived = time.perf_counter()
                frames[0] += 1
                if isinstance(raw, str) and raw.startswith('{"type":"donation"'):
                    arrivals.setdefault(json.loads(raw)["data"]["id"], []).append(arrived)
        except websockets.ConnectionClosed:
            pass
        if client.close_code != 1000:
            closes.append(client.close_code or 0)

    readers = [asyncio.create_task(read(client)) for client in clients]
    stdin = await stdin_reader()
    say("ready")
    await stdin.readline()
    await close_all(clients)
    await asyncio.gather(*readers, return_exceptions=True)
    say(json.dumps({"frames": frames[0], "closed_by_server": len(closes), "arrivals": arrivals}))


async def role_count(url: str, count: str, frames: str, skip: str, compression: str) -> None:
    """Helper: ``count`` clients each read ``skip`` frames, say ready, then time ``frames``."""
    clients = await connect_many(url, int(count), compression if compression != "off" else None)
    for client in clients:
        for _ in range(int(skip)):
            await client.recv()
    last: list[float] = []
    received = [0]

    async def read(client: ClientConnection) -> None:
        for _ in range(int(frames)):
            await client.recv()
            received[0] += 1
        last.append(time.perf_counter())

    say("ready")
    try:
        await asyncio.wait_for(asyncio.gather(*(read(c) for c in clients)), 90)
        finished = max(last)
    except TimeoutError:
        finished = float("nan")
    say(json.dumps({"last": finished, "frames": received[0]}))
    await close_all(clients)


ROLES: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
    "chat-load": role_chat_load,
    "crowd": role_crowd,
    "count": role_count,
}


if __name__ == "__main__":
    run_uvloop(ROLES[sys.argv[1]](*sys.argv[2:]))
