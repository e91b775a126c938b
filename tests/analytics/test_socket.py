"""/ws/metrics on a real port: snapshot, periodic pushes, donations, refusals, slow clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from services.analytics.settings import AnalyticsSettings
from services.analytics.state import AnalyticsState
from shared.app_state import state_of
from shared.events import BitsEvent, DonationEvent
from shared.publisher import Publisher
from tests.analytics.analytics_server import analytics_server
from tests.analytics.streams import at, known_stream

STREAM_STATE_KEYS = {
    "isLive",
    "viewerCount",
    "uptime",
    "currentActivity",
    "chatVelocity",
    "engagementScore",
}
METRICS_UPDATE_KEYS = {"revenueToday", "subsCount", "bitsToday", "donationsPerHour"}


@pytest.fixture
def settings(make_settings) -> AnalyticsSettings:
    return make_settings(
        AnalyticsSettings,
        consumer_name="a1",
        consumer_block_ms=20,
        broadcast_interval_s=0.2,
        channels=["demo", "other"],
    )


@pytest.fixture
async def server(settings, redis: Redis) -> AsyncIterator[tuple[str, Any]]:
    async with analytics_server(settings) as running:
        yield running


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/ws/metrics" + (f"?{query}" if query else "")


async def next_of(ws: Any, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


class TestSnapshotAndBroadcast:
    async def test_connect_gets_stream_state_then_metrics_update_with_the_exact_keys(
        self, server
    ) -> None:
        base, _ = server
        async with websockets.connect(ws_url(base)) as ws:
            first, second = json.loads(await ws.recv()), json.loads(await ws.recv())
        assert first["type"] == "stream_state" and set(first["data"]) == STREAM_STATE_KEYS
        assert first["data"] == {
            "isLive": False,
            "viewerCount": 0,
            "uptime": "0:00:00",
            "currentActivity": "",
            "chatVelocity": 0.0,
            "engagementScore": 0.0,
        }
        assert second["type"] == "metrics_update" and set(second["data"]) == METRICS_UPDATE_KEYS

    async def test_broadcasts_carry_the_figures_of_the_events(
        self, server, redis: Redis, settings
    ) -> None:
        base, _ = server
        events = known_stream()
        await Publisher(redis, settings).publish_many(events)
        async with websockets.connect(ws_url(base, "channel=demo")) as ws:
            async with asyncio.timeout(10):
                while True:
                    state = await next_of(ws, "stream_state")
                    if state["data"]["viewerCount"] == 60:
                        break
            update = await next_of(ws, "metrics_update")
        assert state["data"] == {
            "isLive": True,
            "viewerCount": 60,
            "uptime": "0:10:00",
            "currentActivity": "q_and_a",
            "chatVelocity": 30.0,
            "engagementScore": state["data"]["engagementScore"],
        }
        assert 0 < state["data"]["engagementScore"] <= 100
        assert update["data"] == {
            "revenueToday": 25.0,
            "subsCount": 4,
            "bitsToday": 500,
            "donationsPerHour": 90.0,
        }


async def applied(redis: Redis, settings, channel: str, events: int) -> None:
    """Wait until the consumer has applied ``events`` of ``channel`` (its version)."""
    async with asyncio.timeout(15):
        while int(await redis.get(settings.keys.analytics(channel).version) or 0) < events:
            await asyncio.sleep(0.02)


class TestDonations:
    async def test_donation_then_revenue_point_are_pushed_with_the_exact_keys(
        self, server, redis: Redis, settings
    ) -> None:
        base, _ = server
        publisher = Publisher(redis, settings)
        await publisher.publish(
            DonationEvent(
                id="d0", channel="demo", source="sim", ts=at(5), user="first", amount="4.00"
            )
        )
        async with websockets.connect(ws_url(base, "channel=demo")) as ws:
            await next_of(ws, "metrics_update")
            await applied(redis, settings, "demo", events=1)  # the first donation is counted
            await publisher.publish(
                BitsEvent(
                    id="b9",
                    channel="demo",
                    source="twitch",
                    ts=at(9),
                    user="<b>cheerer</b>",
                    bits=150,
                    message="Cheer150",
                )
            )
            donation = await next_of(ws, "donation")
            if donation["data"]["id"] == "d0":  # the connect snapshot's recent donation
                donation = await next_of(ws, "donation")
            point = json.loads(await ws.recv())
        assert donation == {
            "type": "donation",
            "data": {
                "id": "b9",
                "username": "<b>cheerer</b>",
                "amount": 1.5,
                "message": "Cheer150",
                "timestamp": "2026-02-27T10:00:09Z",
                "type": "bits",
            },
        }
        assert point == {
            "type": "revenue_point",
            "data": {"timestamp": "2026-02-27T10:00:09Z", "amount": 1.5, "cumulative": 5.5},
        }

    async def test_a_reload_gets_the_recent_donations_oldest_first_and_activity_names(
        self, server, redis: Redis, settings
    ) -> None:
        """Nothing vanishes on reload: the connect snapshot carries the donation feed."""
        base, _ = server
        await Publisher(redis, settings).publish_many(
            [
                DonationEvent(
                    id="d1", channel="demo", source="sim", ts=at(1), user="a", amount="3"
                ),
                BitsEvent(id="b2", channel="demo", source="sim", ts=at(2), user="b", bits=200),
                DonationEvent(
                    id="o3", channel="other", source="sim", ts=at(3), user="c", amount="9"
                ),
            ]
        )
        await consumed(redis, settings, 3)
        async with websockets.connect(ws_url(base, "channel=demo")) as ws:
            frames = [json.loads(await ws.recv()) for _ in range(7)]
        kinds = [frame["type"] for frame in frames]
        assert (
            kinds
            == ["stream_state", "metrics_update", "activity_names"]
            + ["revenue_point"] * 2
            + ["donation"] * 2
        )
        feed = [frame["data"] for frame in frames if frame["type"] == "donation"]
        assert [(d["id"], d["username"], d["amount"], d["type"]) for d in feed] == [
            ("d1", "a", 3.0, "donation"),
            ("b2", "b", 2.0, "bits"),
        ]

    async def test_a_donation_reaches_clients_of_its_channel_only(
        self, server, redis: Redis, settings
    ) -> None:
        base, _ = server
        async with (
            websockets.connect(ws_url(base, "channel=other")) as other,
            websockets.connect(ws_url(base, "channel=demo")) as demo,
        ):
            await next_of(other, "metrics_update")
            await next_of(demo, "metrics_update")
            await Publisher(redis, settings).publish(
                DonationEvent(id="d1", channel="demo", source="sim", ts=at(1), user="u", amount="3")
            )
            await next_of(demo, "donation")
            with pytest.raises(TimeoutError):
                await next_of(other, "donation", timeout_s=0.6)


class TestRefusals:
    async def test_unknown_channel_is_closed_with_a_reason(self, server) -> None:
        base, _ = server
        async with websockets.connect(ws_url(base, "channel=nobody")) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd.code == 1008
        assert "unknown channel 'nobody'" in closed.value.rcvd.reason


class TestToken:
    @pytest.fixture
    def settings(self, make_settings) -> AnalyticsSettings:
        return make_settings(AnalyticsSettings, consumer_name="a1", dashboard_token="t0ken")

    async def test_socket_without_the_token_is_closed_with_a_reason(self, server) -> None:
        base, _ = server
        async with websockets.connect(ws_url(base, "token=wrong")) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd.code == 1008 and "needs its token" in closed.value.rcvd.reason

    async def test_socket_with_the_token_gets_data(self, server) -> None:
        base, _ = server
        async with websockets.connect(ws_url(base, "token=t0ken")) as ws:
            assert (await next_of(ws, "stream_state"))["type"] == "stream_state"
        headers = {"Authorization": "Bearer t0ken"}
        async with websockets.connect(ws_url(base), additional_headers=headers) as ws:
            assert (await next_of(ws, "stream_state"))["type"] == "stream_state"

    @pytest.mark.parametrize("path", ["/", "/api/channels", "/api/channels/demo/metrics"])
    async def test_page_and_api_refuse_without_the_token(self, server, path: str) -> None:
        base, _ = server
        async with httpx.AsyncClient(base_url=base) as http:
            refused = await http.get(path)
            allowed = await http.get(path, headers={"Authorization": "Bearer t0ken"})
            by_query = await http.get(path, params={"token": "t0ken"})
        assert refused.status_code == 401 and "needs its token" in refused.json()["detail"]
        assert allowed.status_code == by_query.status_code
        assert allowed.status_code in (200, 404)  # 404 only while the page is not built


class TestSlowClients:
    @pytest.fixture
    def settings(self, make_settings) -> AnalyticsSettings:
        return make_settings(
            AnalyticsSettings, consumer_name="a1", client_queue_messages=8, broadcast_interval_s=60
        )

    async def test_a_client_that_never_reads_is_dropped_and_others_keep_receiving(
        self, server
    ) -> None:
        base, app = server
        port = int(base.rsplit(":", 1)[1])
        stalled = stalled_socket(port)
        try:
            async with websockets.connect(ws_url(base)) as reader:
                await next_of(reader, "metrics_update")
                async with asyncio.timeout(15):
                    while state_of(app, AnalyticsState).hub.count() == 2:
                        state_of(app, AnalyticsState).hub.publish(
                            "demo", json.dumps({"type": "x", "pad": "x" * 65536})
                        )
                        await asyncio.sleep(0)
                        assert reader.state is websockets.State.OPEN
                        await asyncio.wait_for(reader.recv(), 5)
                state_of(app, AnalyticsState).hub.publish("demo", json.dumps({"type": "after"}))
                assert (await next_of(reader, "after"))["type"] == "after"
        finally:
            stalled.close()
        async with asyncio.timeout(5):
            while state_of(app, AnalyticsState).hub.count():
                await asyncio.sleep(0.02)


def stalled_socket(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.sendall(
        b"GET /ws/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return raw


async def consumed(redis: Redis, settings: AnalyticsSettings, count: int) -> None:
    """Wait until analytics has recorded ``count`` paid events across the channels."""
    keys = [settings.keys.analytics(ch).paid for ch in settings.channels]
    async with asyncio.timeout(10):
        while sum([await redis.zcard(key) for key in keys]) < count:
            await asyncio.sleep(0.02)
