"""An ingest SIGKILLed while Twitch webhook notifications are in flight loses and doubles none.

Twitch delivers each notification at least once and resends, with the same
``Twitch-Eventsub-Message-Id``, any it is unsure arrived (no 2xx answer). The
real ``python -m services.ingest`` serves the webhook on a private Redis; signed
``channel.cheer`` notifications stream in, ``CLIENT PAUSE 5000 WRITE`` freezes
every write mid-flight (so requests sit between reading the replay marker and
publishing), and the process is SIGKILLed inside that window, ``KILLS`` times.
After each restart every unanswered notification is resent until it gets a 2xx,
and then every notification of the run is resent once more, as a redelivering
Twitch would. Each message id must be on ``events:donation`` exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from shared.keys import Keys, Stream
from shared.redis_client import connect
from shared.redis_server import RedisServer
from tests.chaos.processes import Service, start, wait_healthy
from tests.chaos.reliability import record
from tests.ingest.twitch_payloads import example_event, webhook_body, webhook_headers
from tests.ingest.twitch_state import BROADCASTER_LOGIN

SECRET = "s3cret-webhook-key-0123456789"
KILLS = 3
PER_ROUND = 150
PAUSE_MS = 5000
SENDERS = 16

pytestmark = pytest.mark.slow


def notification(n: int) -> tuple[bytes, dict[str, str]]:
    """Signed cheer ``n`` (``n`` bits), its message id ``cheer-{n}``."""
    event = example_event("channel.cheer", bits=n, message=f"cheer {n}")
    body = json.dumps(webhook_body("channel.cheer", event)).encode()
    return body, webhook_headers(SECRET, body, message_id=f"cheer-{n}")


async def deliver(ingest: Service, numbers: list[int], *, timeout_s: float = 15.0) -> set[int]:
    """POST each notification (``SENDERS`` at once); the numbers answered with a 2xx."""
    answered: set[int] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in numbers:
        queue.put_nowait(n)

    async def sender(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body, headers = notification(n)
            try:
                response = await http.post("/webhooks/twitch", content=body, headers=headers)
            except httpx.HTTPError:
                continue  # Twitch saw no answer: it will resend
            if response.is_success:
                answered.add(n)

    async with httpx.AsyncClient(base_url=ingest.url, timeout=timeout_s) as http:
        await asyncio.gather(*(sender(http) for _ in range(SENDERS)))
    return answered


async def kill_mid_publish(ingest: Service, redis: Redis, numbers: list[int]) -> set[int]:
    """Deliver ``numbers``; a third of the way in, pause writes, then SIGKILL ingest."""
    sending = asyncio.create_task(deliver(ingest, numbers))
    async with asyncio.timeout(30):
        while (
            await redis.xlen(Keys().channel_stream(Stream.DONATION, BROADCASTER_LOGIN))
            < min(numbers) + len(numbers) // 3
        ):
            await asyncio.sleep(0.005)
    await redis.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
    await asyncio.sleep(0.5)  # requests pile up on the frozen writes
    ingest.kill()
    return await sending


async def test_sigkills_mid_publish_lose_and_double_no_twitch_notification(
    restartable_redis: RedisServer, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": restartable_redis.url,
        "REDIS_KEY_PREFIX": "",
        "CHANNELS": BROADCASTER_LOGIN,
        "INGEST_SOURCES": "webhooks",
        "TWITCH_WEBHOOK_SECRET": SECRET,
        "INGEST_SPILL_DIR": str(tmp_path / "spill"),
    }
    redis = connect(restartable_redis.url)
    sent: list[int] = []
    unanswered_at_kills: list[int] = []
    ingest = start("ingest", env, tmp_path / "logs")
    try:
        for kill in range(KILLS):
            await wait_healthy(ingest)
            numbers = list(range(1 + kill * PER_ROUND, 1 + (kill + 1) * PER_ROUND))
            sent += numbers
            answered = await kill_mid_publish(ingest, redis, numbers)
            unanswered_at_kills.append(len(numbers) - len(answered))
            ingest = start("ingest", env, tmp_path / "logs")
            await wait_healthy(ingest)
            missing = [n for n in numbers if n not in answered]
            for _ in range(5):  # Twitch resends until it gets a 2xx
                answered = await deliver(ingest, missing)
                missing = [n for n in missing if n not in answered]
            assert missing == []
        assert await deliver(ingest, sent) == set(sent)  # a redelivery of everything
        entries = await redis.xrange(Keys().channel_stream(Stream.DONATION, BROADCASTER_LOGIN))
    finally:
        code = ingest.stop()
        await redis.aclose()
    counts = Counter(int(fields["bits"]) for _, fields in entries)
    lost = sum(1 for n in sent if counts[n] == 0)
    doubled = sum(count - 1 for count in counts.values() if count > 1)
    record(
        "twitch-webhook-sigkill",
        "ingest SIGKILL with Twitch webhook publishes frozen by CLIENT PAUSE WRITE",
        KILLS,
        "every notification on events:donation exactly once after Twitch-style resends",
        lost=lost,
        doubled=doubled,
        notifications=len(sent),
        unanswered_at_the_kills=unanswered_at_kills,
        redelivered_after_success=len(sent),
    )
    assert (lost, doubled) == (0, 0)
    assert sorted(counts) == sent
    assert code == 0
