"""/ws/metrics with hostile ?channel= and ?token=: served, or closed 1008 with a reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from services.analytics.settings import AnalyticsSettings
from tests.analytics.analytics_server import analytics_server

TOKEN = "dash-token-0123"
CHANNELS = ["demo", "other"]
ABSENT = object()


@pytest.fixture
def server(runner: asyncio.Runner, make_settings: Any, hostile_cleanup: None) -> Iterator[str]:
    settings = make_settings(
        AnalyticsSettings,
        consumer_name="a1",
        consumer_block_ms=20,
        broadcast_interval_s=0.2,
        channels=CHANNELS,
        dashboard_token=TOKEN,
    )
    cm: AbstractAsyncContextManager[tuple[str, FastAPI]] = analytics_server(settings)
    base, _ = runner.run(cm.__aenter__())
    try:
        yield base
    finally:
        runner.run(cm.__aexit__(None, None, None))


async def healthz(base: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        return (await http.get("/healthz")).status_code


async def attempt(base: str, params: dict[str, str]) -> tuple[str, Any]:
    """("served", first frame) or ("closed", (code, reason))."""
    url = base.replace("http://", "ws://") + "/ws/metrics"
    if params:
        url += "?" + urlencode(params)
    async with asyncio.timeout(5), websockets.connect(url, open_timeout=5) as ws:
        try:
            return "served", json.loads(await ws.recv())
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, f"closed without a close frame: {closed!r}"
            return "closed", (closed.rcvd.code, closed.rcvd.reason)


VALUES = st.one_of(
    st.just(ABSENT),
    st.text(st.characters(codec="utf-8"), max_size=60),
    st.text(st.characters(min_codepoint=0x80, codec="utf-8"), min_size=20, max_size=80),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    channel=st.one_of(
        st.just(ABSENT),
        st.sampled_from(["demo", "DEMO", "other", ""]),
        st.text(st.characters(codec="utf-8"), max_size=80),
    ),
    token=st.one_of(st.sampled_from([TOKEN, TOKEN + " ", TOKEN.upper(), ""]), VALUES),
)
def test_socket_is_served_or_refused_with_1008_and_the_app_keeps_serving(
    runner: asyncio.Runner, server: str, channel: Any, token: Any
) -> None:
    params = {
        name: value
        for name, value in (("channel", channel), ("token", token))
        if value is not ABSENT
    }
    outcome, detail = runner.run(attempt(server, params))

    chosen = (params.get("channel") or CHANNELS[0]).lower()
    should_serve = params.get("token") == TOKEN and chosen in CHANNELS
    if should_serve:
        assert outcome == "served", detail
        assert detail["type"] == "stream_state"
    else:
        assert outcome == "closed", detail
        code, reason = detail
        assert code == 1008, detail
        assert reason, detail
    assert runner.run(healthz(server)) == 200


def test_a_non_ascii_unknown_channel_is_refused_with_1008(
    runner: asyncio.Runner, server: str
) -> None:
    outcome, detail = runner.run(attempt(server, {"token": TOKEN, "channel": "\u00e9" * 40}))
    assert outcome == "closed" and detail[0] == 1008 and detail[1], (outcome, detail)
    assert runner.run(healthz(server)) == 200
