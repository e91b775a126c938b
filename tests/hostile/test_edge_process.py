"""Every out-of-range value of the webhook tests, sent to a real ingest process at once.

``python -m services.ingest`` with both webhooks on gets each absurd amount,
unrepresentable time, overflowing signed header, 30,000-deep body, oversized
body and unknown-channel notification of ``test_edge_values`` over real HTTP:
every answer is a 4xx (or the 204 of a dropped notification), nothing is
published, the process stays healthy, and ``/metrics`` counts the dropped one.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from redis.asyncio import Redis

from shared.keys import Keys
from tests.chaos.processes import start, wait_healthy
from tests.chaos.reliability import record
from tests.hostile.test_edge_values import (
    ABSURD_AMOUNTS,
    OVERFLOWING_HEADER_TIMES,
    TOO_DEEP,
    UNREPRESENTABLE_TIMES,
    nested,
    streamlabs,
)
from tests.hostile.test_webhooks import DONATION_SECRET, TWITCH_SECRET
from tests.ingest.twitch_payloads import example_event, webhook_body, webhook_headers
from tests.ingest.twitch_state import BROADCASTER_LOGIN

DONATION_HEADERS = {
    "content-type": "application/json",
    "authorization": f"Bearer {DONATION_SECRET}",
}


def donation_bodies() -> list[bytes]:
    return [
        *(streamlabs(amount) for amount in ABSURD_AMOUNTS),
        *(streamlabs(created_at=moment) for moment in UNREPRESENTABLE_TIMES),
        nested(TOO_DEEP).encode(),
        b"[" * 200_000,  # over WEBHOOK_MAX_BODY_BYTES
    ]


def twitch_requests() -> list[tuple[bytes, dict[str, str]]]:
    cheer = json.dumps(webhook_body("channel.cheer", example_event("channel.cheer"))).encode()
    stranger = json.dumps(
        webhook_body(
            "channel.cheer", example_event("channel.cheer", broadcaster_user_login="stranger")
        )
    ).encode()
    deep = nested(TOO_DEEP).encode()
    late_follows = [
        json.dumps(
            webhook_body("channel.follow", example_event("channel.follow", followed_at=moment))
        ).encode()
        for moment in OVERFLOWING_HEADER_TIMES
    ]
    return [
        *(
            (
                cheer,
                webhook_headers(TWITCH_SECRET, cheer) | {"Twitch-Eventsub-Message-Timestamp": t},
            )
            for t in OVERFLOWING_HEADER_TIMES
        ),
        *((body, webhook_headers(TWITCH_SECRET, body)) for body in [deep, *late_follows]),
        (stranger, webhook_headers(TWITCH_SECRET, stranger)),
    ]


async def test_a_real_ingest_refuses_every_out_of_range_value_without_a_5xx(
    redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "CHANNELS": f"demo,{BROADCASTER_LOGIN}",
        "INGEST_SOURCES": "webhooks",
        "DONATION_WEBHOOK_SECRET": DONATION_SECRET,
        "TWITCH_WEBHOOK_SECRET": TWITCH_SECRET,
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }
    ingest = start("ingest", env, tmp_path)
    statuses: list[int] = []
    try:
        await wait_healthy(ingest)
        async with httpx.AsyncClient(base_url=ingest.url, timeout=10) as http:
            for body in donation_bodies():
                response = await http.post(
                    "/webhooks/donations", content=body, headers=DONATION_HEADERS
                )
                statuses.append(response.status_code)
            for body, headers in twitch_requests():
                response = await http.post("/webhooks/twitch", content=body, headers=headers)
                statuses.append(response.status_code)
            health = (await http.get("/healthz")).status_code
            prometheus = (await http.get("/metrics")).text
        keys = Keys(key_prefix)
        published = sum([await redis.xlen(key) for key in keys.event_streams()])
    finally:
        code = ingest.stop()
    server_errors = sum(1 for status in statuses if status >= 500)
    record(
        "hostile-values-ingest",
        "out-of-range values at a real ingest: amounts 1e30 to 0.001, NaN, 5,000 digits, "
        "overflowing times, 30,000-deep JSON, 200 KB body, unknown channel",
        len(statuses),
        "every answer 4xx (the unknown channel's 204: dropped and counted); nothing published; "
        "healthy throughout",
        lost=0,
        doubled=0,
        server_errors=server_errors,
        published=published,
        statuses=dict(sorted({s: statuses.count(s) for s in statuses}.items())),
    )
    assert server_errors == 0, statuses
    assert statuses[-1] == 204 and all(400 <= s < 500 for s in statuses[:-1]), statuses
    assert published == 0
    assert 'streamloop_ingest_unknown_channel_total{type="channel.cheer"} 1.0' in prometheus
    assert health == 200 and code == 0
