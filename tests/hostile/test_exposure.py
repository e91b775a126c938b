"""What faces the network by default: loopback only, no CORS, nothing without the token.

A browser on another origin must not read the API unless ``CORS_ORIGINS`` names
it, and a fresh service must not listen beyond 127.0.0.1 unless ``BIND_HOST``
says so (docker-compose sets it inside the containers). Against real processes:
the dashboard token never reaches a log line; without a token the WebSocket
serves only its own page's origin and ``CORS_ORIGINS`` (no cross-site WebSocket
hijacking); every service answers only the ``Host`` names it is reached by (no
DNS rebinding).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.orchestrator.settings import OrchestratorSettings
from services.retro.settings import RetroSettings
from tests.chaos.processes import start, wait_healthy
from tests.chaos.reliability import record

EVIL = "https://evil.example"


async def preflight_and_get(settings: AnalyticsSettings, origin: str) -> list[httpx.Response]:
    """A CORS preflight and a GET from ``origin`` to the real app (its lifespan entered).

    Tests calling it take the ``redis`` fixture, which deletes the consumer groups
    the lifespan creates under the test's prefix.
    """
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as http,
    ):
        preflight = await http.options(
            "/api/channels",
            headers={"origin": origin, "access-control-request-method": "GET"},
        )
        get = await http.get("/api/channels", headers={"origin": origin})
    return [preflight, get]


async def test_cors_is_closed_by_default(make_settings: Any, redis: Redis) -> None:
    responses = await preflight_and_get(make_settings(AnalyticsSettings), EVIL)
    assert all("access-control-allow-origin" not in r.headers for r in responses)


async def test_cors_opens_only_to_the_origins_named(make_settings: Any, redis: Redis) -> None:
    settings = make_settings(AnalyticsSettings, cors_origins="https://studio.example")
    allowed = await preflight_and_get(settings, "https://studio.example")
    assert [r.headers.get("access-control-allow-origin") for r in allowed] == [
        "https://studio.example"
    ] * 2
    refused = await preflight_and_get(settings, EVIL)
    assert all("access-control-allow-origin" not in r.headers for r in refused)


@pytest.mark.parametrize(
    "settings_class", [IngestSettings, AnalyticsSettings, OrchestratorSettings, RetroSettings]
)
def test_every_service_binds_to_loopback_unless_told(settings_class: type) -> None:
    assert settings_class(_env_file=None).bind_host == "127.0.0.1"


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) with a socket listening on ``port``."""
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
async def test_a_started_service_listens_on_loopback_only(
    redis_url: str,
    key_prefix: str,
    redis: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``redis`` is there to delete the groups the service creates under the prefix."""
    monkeypatch.delenv("BIND_HOST", raising=False)
    env = {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": key_prefix}
    service = start("analytics", env, tmp_path)
    try:
        await wait_healthy(service)
        assert listening_addresses(service.port) == ["0100007F"]  # 127.0.0.1, nothing else
    finally:
        assert service.stop() == 0


# ---------------------------------------------------------------- real processes

TOKEN = "dash-secret-token-4c1f"
ATTACKER_HOST = "attacker.example"


def service_env(redis_url: str, key_prefix: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What the four services need to start on the test Redis, under the test's prefix."""
    return {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "CHANNELS": "demo",
        "INGEST_SOURCES": "webhooks",
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": str(tmp_path / "bandit.json"),
        "RETRO_DIR": str(tmp_path / "retros"),
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
        "DASHBOARD_TOKEN": "",
        "CORS_ORIGINS": "",
        "ALLOWED_HOSTS": "",
    } | extra


async def socket_outcome(url: str, *, origin: str | None = None) -> tuple[str, Any]:
    """("served", first frame type), ("closed", close code) or ("refused", HTTP status)."""
    try:
        async with (
            asyncio.timeout(10),
            websockets.connect(url, origin=origin, open_timeout=5) as ws,
        ):
            try:
                return "served", json.loads(await ws.recv())["type"]
            except ConnectionClosed as closed:
                return "closed", closed.rcvd.code if closed.rcvd else None
    except InvalidStatus as refused:
        return "refused", refused.response.status_code


async def handshake_status(port: int, host: str) -> int:
    """The HTTP status a WebSocket handshake naming ``Host: host`` gets (101: upgraded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /ws/metrics HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_the_dashboard_token_never_reaches_a_log_line(
    redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path
) -> None:
    env = service_env(redis_url, key_prefix, tmp_path, DASHBOARD_TOKEN=TOKEN)
    analytics = start("analytics", env, tmp_path)
    try:
        await wait_healthy(analytics)
        ws = f"ws://127.0.0.1:{analytics.port}/ws/metrics"
        assert await socket_outcome(f"{ws}?token={TOKEN}&channel=demo") == (
            "served",
            "stream_state",
        )
        assert await socket_outcome(f"{ws}?token=wrong-{TOKEN}") == ("closed", 1008)
        async with httpx.AsyncClient(base_url=analytics.url) as http:
            assert (await http.get(f"/api/channels?token={TOKEN}")).status_code == 200
    finally:
        assert analytics.stop() == 0
    output = analytics.output()
    record(
        "token-in-logs",
        "DASHBOARD_TOKEN in WebSocket and API query strings of a real analytics",
        3,
        "uvicorn's connection lines kept, query strings redacted; the token in no log line",
        lost=0,
        doubled=0,
        log_lines=len(output.splitlines()),
        token_occurrences=output.count(TOKEN),
    )
    assert "WebSocket /ws/metrics?[redacted]" in output  # the line is there, without the query
    assert TOKEN not in output


@pytest.mark.parametrize(
    ("origin", "cors_origins", "outcome"),
    [
        ("https://evil.example", "", ("closed", 1008)),
        ("null", "", ("closed", 1008)),
        ("http://127.0.0.1:{port}", "", ("served", "stream_state")),
        ("https://studio.example", "https://studio.example", ("served", "stream_state")),
        (None, "", ("served", "stream_state")),
    ],
    ids=["foreign", "null", "own", "listed", "no-origin"],
)
async def test_without_a_token_the_socket_serves_only_its_own_and_listed_origins(
    redis_url: str,
    key_prefix: str,
    redis: Redis,
    tmp_path: Path,
    origin: str | None,
    cors_origins: str,
    outcome: tuple[str, Any],
) -> None:
    env = service_env(redis_url, key_prefix, tmp_path, CORS_ORIGINS=cors_origins)
    analytics = start("analytics", env, tmp_path)
    try:
        await wait_healthy(analytics)
        url = f"ws://127.0.0.1:{analytics.port}/ws/metrics?channel=demo"
        sent = origin.format(port=analytics.port) if origin else None
        assert await socket_outcome(url, origin=sent) == outcome
    finally:
        assert analytics.stop() == 0


async def test_every_service_refuses_a_host_it_is_not_reached_by(
    redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path
) -> None:
    env = service_env(redis_url, key_prefix, tmp_path, ALLOWED_HOSTS="streamloop.example")
    names = ["ingest", "analytics", "orchestrator", "retro"]
    services = [start(name, env, tmp_path / name) for name in names]
    statuses: dict[str, dict[str, int]] = {}
    try:
        await asyncio.gather(*(wait_healthy(service) for service in services))
        async with httpx.AsyncClient() as http:
            for service in services:
                statuses[service.name] = {
                    host: (
                        await http.get(f"{service.url}/healthz", headers={"Host": host})
                    ).status_code
                    for host in [
                        f"127.0.0.1:{service.port}",
                        f"localhost:{service.port}",
                        "streamloop.example",
                        f"10.1.2.3:{service.port}",  # an address is its own origin
                        f"[::1]:{service.port}",
                        ATTACKER_HOST,
                        f"{ATTACKER_HOST}:{service.port}",
                    ]
                }
        socket = await handshake_status(services[1].port, ATTACKER_HOST)
    finally:
        codes = [service.stop() for service in services]
    refused = sum(1 for by_host in statuses.values() for s in by_host.values() if s == 400)
    record(
        "foreign-host",
        "requests naming a foreign Host (DNS rebinding) at all four real services",
        sum(len(by_host) for by_host in statuses.values()) + 1,
        "loopback, service and ALLOWED_HOSTS names answered; every foreign Host refused 400, "
        "WebSocket handshake included",
        lost=0,
        doubled=0,
        foreign_refused=refused + (socket == 400),
        foreign_sent=2 * len(names) + 1,
    )
    for name in names:
        assert list(statuses[name].values()) == [200] * 5 + [400, 400], (name, statuses)
    assert socket == 400
    assert codes == [0, 0, 0, 0]
