"""The REST API on the real app: figures, summary, timeline, donations, OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from shared.publisher import Publisher
from tests.analytics.analytics_server import analytics_server
from tests.analytics.streams import known_stream


@pytest.fixture
async def api(make_settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    settings: AnalyticsSettings = make_settings(
        AnalyticsSettings, consumer_name="a1", consumer_block_ms=20, broadcast_interval_s=0.1
    )
    events = known_stream()
    async with analytics_server(settings) as (base, _):
        await Publisher(redis, settings).publish_many(events)
        async with asyncio.timeout(10):
            while await redis.hget(settings.keys.metrics("demo"), "version") != str(len(events)):
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=base) as client:
            yield client


async def test_channels_and_metrics(api: httpx.AsyncClient) -> None:
    channels = (await api.get("/api/channels")).json()
    assert [(c["channel"], c["is_live"], c["current_activity"]) for c in channels] == [
        ("demo", True, "q_and_a")
    ]
    metrics = (await api.get("/api/channels/demo/metrics")).json()
    assert metrics["revenue_today"] == 25.0 and metrics["viewer_count"] == 60
    assert metrics["subs_count"] == 4 and metrics["is_live"] is True


async def test_timeline_lists_the_segments(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/channels/demo/timeline")).json()
    assert body["stream_id"] == "s-known" and body["is_live"] is True
    assert [(s["activity"], s["start"], s["end"]) for s in body["segments"]] == [
        ("talk", "2026-02-27T10:00:00Z", "2026-02-27T10:05:00Z"),
        ("q_and_a", "2026-02-27T10:05:00Z", None),
    ]


async def test_summary_has_the_stream_figures(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/channels/demo/summary")).json()
    assert body["found"] is True and body["stream_id"] == "s-known"
    assert body["chat_messages"] == 40 and body["peak_viewers"] == 60
    assert body["revenue"]["total_usd"] == 25.0
    assert {a["activity"] for a in body["activities"]} == {"talk", "q_and_a"}


async def test_donations_newest_first_in_the_dashboard_format(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/channels/demo/donations", params={"limit": 5})).json()
    assert [d["id"] for d in body] == ["b1", "d1"]
    assert body[0] == {
        "id": "b1",
        "username": "bob",
        "amount": 5.0,
        "message": "",
        "timestamp": "2026-02-27T10:03:20Z",
        "type": "bits",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/channels/nobody/metrics",
        "/api/channels/nobody/summary",
        "/api/channels/nobody/timeline",
    ],
)
async def test_unknown_channel_is_404(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 404 and "unknown channel" in response.json()["detail"]


async def test_openapi_documents_every_route(api: httpx.AsyncClient) -> None:
    paths = set((await api.get("/openapi.json")).json()["paths"])
    assert {
        "/api/channels",
        "/api/channels/{channel}/metrics",
        "/api/channels/{channel}/summary",
        "/api/channels/{channel}/donations",
        "/api/channels/{channel}/timeline",
        "/healthz",
        "/metrics",
    } <= paths


async def test_bandit_posteriors_are_404_until_the_orchestrator_writes_them(
    api: httpx.AsyncClient, redis: Redis, make_settings
) -> None:
    from shared.bandit import ThompsonBandit

    assert (await api.get("/api/channels/demo/bandit")).status_code == 404
    bandit = ThompsonBandit(redis, make_settings().keys, "demo", ["talk", "music"])
    await bandit.update("music", 1.0)
    await bandit.update("talk", 0.0)
    body = (await api.get("/api/channels/demo/bandit")).json()
    sd = (2 / 36) ** 0.5  # Beta(2, 1) and Beta(1, 2): sqrt(2 / (3^2 x 4))
    assert body["arms"] == [
        {"arm": "music", "alpha": 2.0, "beta": 1.0, "mean": 2 / 3, "sd": sd, "updates": 1},
        {"arm": "talk", "alpha": 1.0, "beta": 2.0, "mean": 1 / 3, "sd": sd, "updates": 1},
    ]
