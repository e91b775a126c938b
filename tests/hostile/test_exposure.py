"""What faces the network by default: loopback only, no CORS, nothing without the token.

A browser on another origin must not read the API unless ``CORS_ORIGINS`` names
it, and a fresh service must not listen beyond 127.0.0.1 unless ``BIND_HOST``
says so (docker-compose sets it inside the containers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.ingest.settings import IngestSettings
from services.orchestrator.settings import OrchestratorSettings
from services.retro.settings import RetroSettings
from tests.chaos.processes import start, wait_healthy

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
