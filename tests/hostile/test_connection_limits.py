"""Idle, slow and too many connections cannot hold a service's sockets or file descriptors.

A real ``python -m services.ingest`` (webhooks on) with small limits:
``HTTP_MAX_CONNECTIONS`` 200 and ``HTTP_HEADER_TIMEOUT_S`` / ``WEBHOOK_BODY_TIMEOUT_S``
of 1 s. 500 loopback sockets that never send a byte are all closed by the server
(those past the bound at once, the rest when the header deadline passes) while
its open descriptors stay under the bound; a slowloris trickling a header byte
every 200 ms is cut; a body that stalls gets a 408; and the service answers
normally afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.chaos.processes import Service, start, wait_healthy
from tests.chaos.reliability import record

IDLE_SOCKETS = 500
MAX_CONNECTIONS = 200
HEADER_TIMEOUT_S = 1.0
CLOSE_WITHIN_S = 10.0
"""Generous bound on when every idle socket must be closed (the deadline is 1 s)."""

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")


@pytest.fixture
async def ingest(redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path) -> Service:  # type: ignore[misc]
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "CHANNELS": "demo",
        "INGEST_SOURCES": "webhooks",
        "DONATION_WEBHOOK_SECRET": "s3cret-donations",
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
        "HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "WEBHOOK_BODY_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    }
    service = start("ingest", env, tmp_path)
    await wait_healthy(service)
    yield service
    assert service.stop() == 0


def open_descriptors(service: Service) -> int:
    return len(os.listdir(f"/proc/{service.process.pid}/fd"))


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Wait until the server closes the connection (EOF or reset)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass
    return True


async def test_idle_slow_and_surplus_connections_are_closed_and_descriptors_stay_bounded(
    ingest: Service,
) -> None:
    baseline = open_descriptors(ingest)
    began = time.monotonic()
    pairs = [await asyncio.open_connection("127.0.0.1", ingest.port) for _ in range(IDLE_SOCKETS)]
    most = open_descriptors(ingest)
    watch = [asyncio.ensure_future(closed_by_server(reader)) for reader, _ in pairs]
    async with asyncio.timeout(CLOSE_WITHIN_S):
        while not all(task.done() for task in watch):
            most = max(most, open_descriptors(ingest))
            await asyncio.sleep(0.05)
    all_closed_s = time.monotonic() - began
    for _, writer in pairs:
        writer.close()

    slowloris_cut_s = await slowloris(ingest)
    stalled_body = await stalled_body_status(ingest)
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{ingest.url}/healthz")).status_code

    record(
        "connection-limits",
        "500 idle loopback sockets, a slowloris and a stalled body against ingest "
        "(HTTP_MAX_CONNECTIONS 200, header and body deadlines 1 s)",
        IDLE_SOCKETS,
        "every idle socket closed by the server; descriptors bounded; slowloris cut; "
        "stalled body 408; health 200 afterwards",
        lost=0,
        doubled=0,
        all_idle_closed_after_s=round(all_closed_s, 2),
        most_descriptors_open=most,
        descriptors_before=baseline,
        slowloris_cut_after_s=round(slowloris_cut_s, 2),
    )
    assert all(task.result() for task in watch)
    assert most <= baseline + MAX_CONNECTIONS + 5
    assert slowloris_cut_s < CLOSE_WITHIN_S
    assert stalled_body == 408
    assert health == 200


async def slowloris(ingest: Service) -> float:
    """Seconds until the server cuts a client sending one header byte every 200 ms."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
    began = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    try:
        async with asyncio.timeout(CLOSE_WITHIN_S):
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                if reader.at_eof():
                    break
                try:
                    if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                        break
                except TimeoutError:
                    continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - began


async def stalled_body_status(ingest: Service) -> int:
    """The status a donation whose body stops after 10 of 100 bytes gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
    try:
        writer.write(
            b"POST /webhooks/donations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer s3cret-donations\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"type": "'
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), CLOSE_WITHIN_S)
        return int(status_line.split()[1])
    finally:
        writer.close()
