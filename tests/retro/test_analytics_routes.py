"""Analytics serves the reports retro stored: the list, the page, 404s and the token."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from services.retro.handler import RetroHandler
from shared.events import EventBase, StreamEndedEvent, StreamStartedEvent
from tests.analytics.analytics_server import analytics_server
from tests.analytics.streams import at
from tests.orchestrator.driver import apply
from tests.retro.helpers import hand, retro_settings

TOKEN = "s3cret-token"


def stream(stream_id: str, start: float, end: float) -> list[EventBase]:
    c = {"channel": "demo", "source": "sim"}
    return [
        StreamStartedEvent(**c, id=f"s-{stream_id}", ts=at(start), stream_id=stream_id),
        StreamEndedEvent(**c, id=f"e-{stream_id}", ts=at(end), stream_id=stream_id),
    ]


@pytest.fixture
async def api(redis: Redis, make_settings: Any, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20, dashboard_token=TOKEN
    )
    async with analytics_server(settings) as (base, _):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            yield client


async def store_reports(redis: Redis, make_settings: Any, tmp_path: Path) -> None:
    settings = retro_settings(make_settings, tmp_path, retro_catchup_timeout_s=0.1)
    handler = RetroHandler(redis, settings, out=io.StringIO())
    for events in (stream("first", 0, 60), stream("odd/id?#%", 100, 160)):
        await apply(redis, settings.keys, events)
        await hand(redis, handler, events)


async def test_the_list_is_empty_then_newest_first(
    api: httpx.AsyncClient, redis: Redis, make_settings: Any, tmp_path: Path
) -> None:
    assert (await api.get("/api/channels/demo/retros")).json() == []
    await store_reports(redis, make_settings, tmp_path)
    body = (await api.get("/api/channels/demo/retros")).json()
    assert body == [
        {
            "stream_id": "odd/id?#%",
            "ended": "2026-02-27T10:02:40Z",
            "url": "/retros/demo/odd%2Fid%3F%23%25",
        },
        {"stream_id": "first", "ended": "2026-02-27T10:01:00Z", "url": "/retros/demo/first"},
    ]
    assert len((await api.get("/api/channels/demo/retros", params={"limit": 1})).json()) == 1
    # On disk the odd id gets a cleaned name plus a hash of the real one.
    names = sorted(p.name for p in (tmp_path / "retros" / "demo").iterdir())
    assert names[:2] == ["first.html", "first.md"]
    assert [n.rsplit("-", 1)[0] for n in names[2:]] == ["odd_id___", "odd_id___"]
    assert names[2].endswith(".html") and names[3].endswith(".md")
    assert (await api.get("/api/channels/nobody/retros")).status_code == 404


async def test_the_page_is_the_stored_html(
    api: httpx.AsyncClient, redis: Redis, make_settings: Any, tmp_path: Path
) -> None:
    await store_reports(redis, make_settings, tmp_path)
    for item in (await api.get("/api/channels/demo/retros")).json():
        page = await api.get(item["url"])
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        stored = await redis.hget(make_settings().keys.retro("demo", item["stream_id"]), "html")
        assert page.text == stored
    missing = await api.get("/retros/demo/never")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no retro for stream 'never' of channel 'demo'")


async def test_both_routes_need_the_dashboard_token(api: httpx.AsyncClient) -> None:
    api.headers.pop("Authorization")
    assert (await api.get("/api/channels/demo/retros")).status_code == 401
    assert (await api.get("/retros/demo/first")).status_code == 401
    assert (await api.get("/api/channels/demo/retros", params={"token": TOKEN})).status_code == 200
