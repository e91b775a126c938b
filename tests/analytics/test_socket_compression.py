"""WebSocket compression: declined by default, accepted with ``WS_PER_MESSAGE_DEFLATE``.

Runs the real ``python -m services.analytics`` (the setting reaches uvicorn
through ``main``) and connects as a browser does, offering permessage-deflate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from tests.chaos.processes import start, wait_healthy


async def first_frame_and_extensions(
    redis_url: str, key_prefix: str, tmp_path: Path, deflate: str
) -> tuple[str, str | None]:
    """Start analytics with ``WS_PER_MESSAGE_DEFLATE=deflate``; (first frame type, extensions)."""
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "WS_PER_MESSAGE_DEFLATE": deflate,
    }
    service = start("analytics", env, tmp_path)
    try:
        await wait_healthy(service)
        url = f"ws://127.0.0.1:{service.port}/ws/metrics?channel=demo"
        async with connect(url, compression="deflate", open_timeout=10) as socket:
            frame = json.loads(await socket.recv())
            assert socket.response is not None
            return frame["type"], socket.response.headers.get("Sec-WebSocket-Extensions")
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize(("deflate", "accepted"), [("false", False), ("true", True)])
async def test_compression_offered_by_the_browser_is_accepted_only_when_configured(
    redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path, deflate: str, accepted: bool
) -> None:
    """``redis`` is there to delete the groups the service creates under the prefix."""
    kind, extensions = await first_frame_and_extensions(redis_url, key_prefix, tmp_path, deflate)
    assert kind == "stream_state"
    assert ("permessage-deflate" in (extensions or "")) is accepted
