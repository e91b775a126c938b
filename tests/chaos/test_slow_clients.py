"""200 dashboard clients that never read beside 200 that do, on a real analytics process.

``python -m services.analytics`` runs as its own process on the test Redis with
``CLIENT_QUEUE_MESSAGES`` = 16. 200 WebSocket clients read everything; 200 more
complete the handshake on a raw TCP socket (4 KB receive buffer, 1,400-byte
segments as over a real network) and then never call ``recv``, so the server's
writes to them really back up. Donations with 1,000-character messages are
published until every stalled client has been dropped. The test proves that:

* every reader received every donation frame, in the order published, and was
  never dropped: 200 stalled clients push no reader into a drop;
* every non-reader was dropped, and only they: ``streamloop_ws_clients_dropped_total``
  on ``/metrics`` counts exactly 200, and when a stalled client reads its socket at
  last, seconds after its drop, it finds an in-order prefix of the donations and
  then a close frame with code 1008 and a "too slow" reason (not a bare end of
  stream, which is what it got while the server gave its close frame only 1 s);
* the server's memory stayed bounded: its RSS grew by less than a generous bound
  derived from the per-client queue limit and the transport's write buffer;
* the server still serves afterwards: a new client gets its snapshot and the next
  donation, as do all 200 readers, and the process then stops cleanly.

How fast the readers get their frames beside stalled clients is measured, not
asserted: ``make bench`` (``slow-clients``, ``tools/benchmarks/slow_clients.py``) writes
it to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import websockets
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from services.analytics.settings import AnalyticsSettings
from shared.events import DonationEvent
from shared.publisher import Publisher
from tests.chaos.processes import Service, start, wait_healthy
from tests.chaos.reliability import record
from tools.benchmarks.measure import scrape
from tools.benchmarks.slow_clients import rss_mb, stalled_sockets

READERS = 200
STALLED = 200
QUEUE_MESSAGES = 16
ROUND = 50  # donations published between two looks at the drop counter
MAX_DONATIONS = 1_000  # far more than it takes (about 140 here): fail rather than loop
MESSAGE = "slow clients must not hold anyone back " * 25  # 1,000 characters
FRAME_MAX_KIB = 2  # a donation frame with MESSAGE is about 1,200 bytes
WRITE_BUFFER_KIB = 64  # uvloop's high-water mark: past it, a send waits
ALLOCATOR_FACTOR = 2  # frames freed among frames held: RSS grows about twice what is held
RSS_SLACK_MIB = 32  # interpreter, the readers' traffic, allocator noise
STILL_STALLED_S = 3.0  # how long the stalled clients stay stalled after the last drop
CONNECT_AT_ONCE = 50
CONNECTED = 'streamloop_ws_clients{channel="demo"}'
DROPPED = "streamloop_ws_clients_dropped_total"


@pytest.fixture
def settings(make_settings) -> AnalyticsSettings:
    return make_settings(AnalyticsSettings, channels=["demo"])


@pytest.fixture
def server(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Service]:
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "CHANNELS": "demo",
        "CONSUMER_NAME": "chaos",
        "DASHBOARD_TOKEN": "",
        "CLIENT_QUEUE_MESSAGES": str(QUEUE_MESSAGES),
        "BROADCAST_INTERVAL_S": "1.0",
    }
    service = start("analytics", env, tmp_path)
    try:
        yield service
    finally:
        service.stop()


async def test_stalled_clients_are_dropped_and_counted_while_readers_get_everything(
    server: Service, redis: Redis, settings: AnalyticsSettings
) -> None:
    began = time.monotonic()
    url = server.url.replace("http://", "ws://") + "/ws/metrics?channel=demo"
    publisher = Publisher(redis, settings)
    await wait_healthy(server)
    async with (
        asyncio.timeout(50),
        readers(url) as (clients, seen),
        stalled_sockets(server.port, STALLED) as stalled,
    ):
        await until(server.url, CONNECTED, READERS + STALLED)
        rss_before = rss_mb(server.process.pid)
        ids = await donate_until_all_dropped(publisher, server.url, seen)
        rss_after = rss_mb(server.process.pid)
        await asyncio.sleep(STILL_STALLED_S)
        closes = await asyncio.gather(*(read_until_close(raw) for raw in stalled))

        async with websockets.connect(url, compression=None, proxy=None) as fresh:
            first = json.loads(await fresh.recv())
            await publisher.publish(donation("after"))
            fresh_ids = await donation_ids(fresh, until_id="after")
        await until_each_has(seen, len(ids) + 1)
        metrics = await scrape(server.url)
        still_open = sum(client.state is websockets.State.OPEN for client in clients)

    assert all(each == [*ids, "after"] for each in seen), "a reader missed or reordered frames"
    assert still_open == READERS
    for code, reason, got in closes:
        assert code == 1008 and "too slow" in reason, (code, reason)
        assert got == ids[: len(got)], "a stalled client got donations out of order"
    assert metrics[DROPPED] == STALLED
    assert metrics[CONNECTED] == READERS
    per_client_kib = ALLOCATOR_FACTOR * (WRITE_BUFFER_KIB + (QUEUE_MESSAGES + 1) * FRAME_MAX_KIB)
    bound_mib = STALLED * per_client_kib / 1024 + RSS_SLACK_MIB
    assert rss_after - rss_before < bound_mib, (rss_before, rss_after, bound_mib)
    assert first["type"] == "stream_state"
    # A new client's connect snapshot carries the latest donations, then the new one.
    recent = AnalyticsSettings.model_fields["dashboard_recent_donations"].default
    assert fresh_ids == [*ids[-recent:], "after"]
    assert server.stop() == 0, server.output()[-3000:]
    got_each = [len(got) for *_, got in closes]
    record(
        "slow-clients",
        "WebSocket clients that never read, beside 200 that do",
        STALLED,
        "every reader got every donation in order; every stalled client dropped with 1008 "
        "and counted; RSS bounded; new clients served",
        lost=sum(len(set(ids) - set(each)) for each in seen),
        doubled=sum(len(each) - len(set(each)) for each in seen),
        donations=len(ids),
        donations_a_stalled_client_got=f"{min(got_each)} to {max(got_each)}",
        rss_growth_mib=round(rss_after - rss_before, 1),
        rss_bound_mib=round(bound_mib, 1),
        wall_s=round(time.monotonic() - began, 1),
    )


def donation(event_id: str) -> DonationEvent:
    return DonationEvent(
        id=event_id,
        channel="demo",
        source="sim",
        ts=datetime.now(UTC),
        user="patron",
        amount=Decimal("1.00"),
        message=MESSAGE,
    )


async def donate_until_all_dropped(
    publisher: Publisher, base: str, seen: list[list[str]]
) -> list[str]:
    """Publish donations until every stalled client is dropped; their ids, in order.

    ``ROUND`` at a time, each round waited out until every reader has it (so the
    server's pushes keep pace), then the drop counter looked at. Stops at
    ``MAX_DONATIONS`` so that a server that never drops anyone fails the test.
    """
    ids: list[str] = []
    while len(ids) < MAX_DONATIONS:
        for _ in range(ROUND):
            ids.append(f"slow-{len(ids):04d}")
            await publisher.publish(donation(ids[-1]))
        await until_each_has(seen, len(ids))
        if (await scrape(base)).get(DROPPED) == STALLED:
            return ids
    await until(base, DROPPED, STALLED)
    return ids


@contextlib.asynccontextmanager
async def readers(url: str) -> AsyncIterator[tuple[list[ClientConnection], list[list[str]]]]:
    """``READERS`` clients reading every frame; yields them and the donation ids each saw."""
    clients: list[ClientConnection] = []
    seen: list[list[str]] = [[] for _ in range(READERS)]
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(0, READERS, CONNECT_AT_ONCE):
            clients += await asyncio.gather(
                *(
                    websockets.connect(url, compression=None, proxy=None, open_timeout=20)
                    for _ in range(CONNECT_AT_ONCE)
                )
            )
        tasks = [asyncio.create_task(note(c, ids)) for c, ids in zip(clients, seen, strict=True)]
        yield clients, seen
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def note(client: ClientConnection, ids: list[str]) -> None:
    """Append the id of every ``donation`` frame ``client`` receives, in order."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for raw in client:
            message = json.loads(raw)
            if message["type"] == "donation":
                ids.append(message["data"]["id"])


async def donation_ids(client: ClientConnection, until_id: str) -> list[str]:
    """Donation ids ``client`` receives, up to and including ``until_id``."""
    ids: list[str] = []
    while not ids or ids[-1] != until_id:
        message = json.loads(await client.recv())
        if message["type"] == "donation":
            ids.append(message["data"]["id"])
    return ids


async def read_until_close(raw: socket.socket) -> tuple[int, str, list[str]]:
    """Read a stalled socket at last: (close code, close reason, donation ids before it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await receive(raw)
    data = data.split(b"\r\n\r\n", 1)[1]
    ids: list[str] = []
    while True:
        frame = next_frame(data)
        if frame is None:
            data += await receive(raw)
            continue
        opcode, payload, data = frame
        if opcode == 0x8:
            (code,) = struct.unpack("!H", payload[:2])
            return code, payload[2:].decode(), ids
        message = json.loads(payload)
        if message["type"] == "donation":
            ids.append(message["data"]["id"])


async def receive(raw: socket.socket) -> bytes:
    """The next bytes on ``raw``; fails if the server ended the stream first."""
    chunk = await asyncio.get_running_loop().sock_recv(raw, 65536)
    assert chunk, "the server ended the stream without a close frame"
    return chunk


def next_frame(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(opcode, payload, rest) of the first whole unmasked frame in ``data``, or None."""
    if len(data) < 2:
        return None
    opcode, length, start = data[0] & 0x0F, data[1] & 0x7F, 2
    if length >= 126:
        start = 4 if length == 126 else 10
        if len(data) < start:
            return None
        length = int.from_bytes(data[2:start], "big")
    if len(data) < start + length:
        return None
    return opcode, data[start : start + length], data[start + length :]


async def until(base: str, sample: str, value: float, timeout_s: float = 20) -> None:
    """Poll ``/metrics`` until ``sample`` reads ``value``; fail with what it read last."""
    last: float | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while (last := (await scrape(base)).get(sample)) != value:
                await asyncio.sleep(0.1)
    assert last == value, f"{sample} is {last} after {timeout_s} s, not {value}"


async def until_each_has(seen: list[list[str]], count: int, timeout_s: float = 20) -> None:
    """Wait until every reader has seen ``count`` donations; fail saying how far some are."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while any(len(ids) < count for ids in seen):
                await asyncio.sleep(0.05)
    behind = sorted(len(ids) for ids in seen if len(ids) < count)
    assert not behind, f"{len(behind)} readers short of {count} donations: {behind[:10]}"


SHUTDOWN_STALLED = 20
SHUTDOWN_LIMIT_S = 15.0
"""uvicorn's graceful-shutdown timeout (5 s) plus the lifespan's own orderly stop."""


async def test_sigterm_exits_cleanly_while_stalled_clients_hold_full_buffers(
    server: Service, redis: Redis, settings: AnalyticsSettings
) -> None:
    """Stalled sockets whose buffers are full must not keep the process from exiting."""
    publisher = Publisher(redis, settings)
    await wait_healthy(server)
    async with stalled_sockets(server.port, SHUTDOWN_STALLED):
        await until(server.url, CONNECTED, SHUTDOWN_STALLED)
        for n in range(MAX_DONATIONS):
            await publisher.publish(donation(f"fill-{n:04d}"))
            if n % ROUND == ROUND - 1 and (await scrape(server.url)).get(DROPPED):
                break  # writes to them back up: some were dropped, all still open
        began = time.monotonic()
        code = await asyncio.to_thread(server.stop, SHUTDOWN_LIMIT_S + 5)
        took_s = time.monotonic() - began
    assert code == 0, server.output()[-3000:]
    assert took_s < SHUTDOWN_LIMIT_S, f"SIGTERM took {took_s:.1f} s"
