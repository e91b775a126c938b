"""Fixtures every test shares: a real Redis and a private key prefix per test.

The suite talks to the Redis at ``REDIS_URL`` when one answers (default
``redis://localhost:6379/0``) and otherwise starts its own ``redis-server`` on a
free port. Each test gets a fresh key prefix and deletes only keys under it, so
the suite never touches data it did not create.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
from playwright.async_api import Browser
from redis.asyncio import Redis

from shared.redis_client import connect
from shared.redis_server import RedisServer, ensure_redis
from shared.settings import BaseServiceSettings
from tests.browser import chromium

SettingsT = TypeVar("SettingsT", bound=BaseServiceSettings)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: ``REDIS_URL`` if it answers, else an embedded server."""
    with ensure_redis(os.environ.get("REDIS_URL", "redis://localhost:6379/0")) as url:
        yield url


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    """A private ``redis-server`` with AOF on, which the test may stop and start again."""
    running = RedisServer(appendonly=True)
    running.start()
    yield running
    running.close()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    """A client on the test Redis; every key under this test's prefix is deleted after."""
    client = connect(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{key_prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str) -> Callable[..., Any]:
    """Build a settings object of any service class on the test Redis and prefix."""

    def build(cls: type[SettingsT] = BaseServiceSettings, **overrides: Any) -> SettingsT:  # type: ignore[assignment]
        values: dict[str, Any] = {"redis_url": redis_url, "redis_key_prefix": key_prefix}
        values.update(overrides)
        return cls(_env_file=None, **values)

    return build


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright for a page test (see tests/browser.py), closed after."""
    async with chromium() as running:
        yield running
