"""Hostile-input tests: sync Hypothesis tests that drive async code on their own loop.

Hypothesis re-runs the test body per example, so these tests are plain functions
that own an :class:`asyncio.Runner`; the ``hostile_cleanup`` fixture deletes every
key under the test's prefix afterwards (the shared ``redis`` fixture is async and
bound to another loop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import redis as sync_redis
from hypothesis import settings

# CI runs the same examples every time, so a red CI always reproduces; elsewhere
# every run explores new ones (and Hypothesis replays failures from .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def hostile_cleanup(redis_url: str, key_prefix: str) -> Iterator[None]:
    """Delete every key under this test's prefix when the test ends."""
    yield
    client = sync_redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{key_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the whole test, shared by every Hypothesis example."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner
