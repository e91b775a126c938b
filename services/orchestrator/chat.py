"""The streamer's voice: Claude's chat line posted to the channel's Twitch chat.

Helix Send Chat Message (``POST {TWITCH_API_URL}/chat/messages`` with
``broadcaster_id``, ``sender_id`` and ``message``) as the bot account: its user
token (``TWITCH_USER_TOKEN``, scope ``user:write:chat``) must belong to
``TWITCH_BOT_ID``. Only the channel of ``TWITCH_BROADCASTER_ID`` gets lines.

A decision only *offers* a line (:meth:`TwitchChat.offer`, never waits): lines
queue in memory (the oldest drops when ``TWITCH_CHAT_QUEUE_MAX`` wait) and one
lifespan-owned worker sends them at least ``TWITCH_CHAT_INTERVAL_S`` apart, under
Twitch's 20 messages per 30 s for a sender that is not a moderator. A 429 waits
for ``Ratelimit-Reset`` and tries once more; a 401 with a refresh token refreshes
the token once. Every outcome is logged and counted
(``streamloop_chat_lines_total{outcome}``); a failure loses one line, never a
decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import httpx
from prometheus_client import Counter

from services.orchestrator.settings import OrchestratorSettings
from shared.waiting import wait_or_stop

log = logging.getLogger("services.orchestrator.chat")
TWITCH_MAX_CHARS = 500
HTTP_TIMEOUT_S = 5.0
MAX_RATE_LIMIT_WAIT_S = 30.0
IDLE_CHECK_S = 0.5
LINES = Counter(
    "streamloop_chat_lines_total",
    "Chat lines by outcome: sent, dropped (by Twitch), failed, rate_limited, overflow, "
    "other_channel.",
    ["outcome"],
)


class ChatFailed(Exception):
    """Twitch did not take a line; the message says why and what to fix."""


class TwitchChat:
    """Queue and worker that post chat lines through Helix (see module doc)."""

    def __init__(
        self, settings: OrchestratorSettings, http: httpx.AsyncClient | None = None
    ) -> None:
        self.settings = settings
        self.enabled = all(
            (
                settings.twitch_client_id,
                settings.twitch_user_token.get_secret_value(),
                settings.twitch_bot_id,
                settings.twitch_broadcaster_id,
            )
        )
        self.token = settings.twitch_user_token.get_secret_value()
        self.http = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self.queue: deque[tuple[str, str]] = deque(maxlen=settings.twitch_chat_queue_max)
        self.ready = asyncio.Event()
        self.login = ""
        self.sent = 0
        self.last_failure = ""
        self._last_send = -float("inf")

    def offer(self, channel: str, line: str) -> None:
        """Queue ``line`` for ``channel`` without waiting; the oldest drops when full."""
        if not self.enabled or not line.strip():
            return
        if len(self.queue) == self.queue.maxlen:
            LINES.labels("overflow").inc()
            log.warning("chat queue full; dropping the oldest line")
        self.queue.append((channel, line))
        self.ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send queued lines until ``stop`` (lines still queued then are dropped)."""
        while not stop.is_set():
            if not self.queue:
                self.ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ready.wait(), IDLE_CHECK_S)
                continue
            channel, line = self.queue.popleft()
            spacing = self._last_send + self.settings.twitch_chat_interval_s - time.monotonic()
            await wait_or_stop(stop, spacing)
            if stop.is_set():
                break
            await self._deliver(channel, line, stop)

    async def _deliver(self, channel: str, line: str, stop: asyncio.Event) -> None:
        try:
            if channel != await self._channel_login():
                LINES.labels("other_channel").inc()
                return
            self._last_send = time.monotonic()
            outcome = await self.send(line, stop)
        except ChatFailed as failed:
            LINES.labels("failed").inc()
            self.last_failure = str(failed)
            log.error("%s: chat line not sent: %s", channel, failed)
        except httpx.HTTPError as error:
            LINES.labels("failed").inc()
            self.last_failure = f"Twitch unreachable: {error!r}"
            log.warning("%s: chat line not sent, Twitch unreachable: %r", channel, error)
        else:
            LINES.labels(outcome).inc()
            if outcome == "sent":
                self.sent += 1
                self.last_failure = ""
                log.info("%s: said in chat: %s", channel, line)

    def health(self) -> dict[str, object]:
        """What ``/healthz`` says of the chat line: off, or on with the last failure."""
        if not self.enabled:
            return {"status": "off", "detail": "no TWITCH_* settings: lines are not posted"}
        detail = {"status": "on", "sent": self.sent, "queued": len(self.queue)}
        return detail | ({"last_failure": self.last_failure} if self.last_failure else {})

    async def send(self, line: str, stop: asyncio.Event | None = None) -> str:
        """Post one line: ``sent`` or ``dropped``; ChatFailed says why it could not be."""
        body = {
            "broadcaster_id": self.settings.twitch_broadcaster_id,
            "sender_id": self.settings.twitch_bot_id,
            "message": " ".join(line.split())[:TWITCH_MAX_CHARS],
        }
        refreshed = rate_limited = False
        while True:
            answer = await self.http.post(
                f"{self.settings.twitch_api_url}/chat/messages", json=body, headers=self._headers()
            )
            if answer.status_code == 429 and not rate_limited:
                rate_limited = True
                LINES.labels("rate_limited").inc()
                await wait_or_stop(stop or asyncio.Event(), reset_wait_s(answer))
                continue
            if answer.status_code == 401 and not refreshed and "scope" not in answer.text:
                refreshed = True
                if await self._refresh():
                    continue
            return outcome_of(answer)

    async def _channel_login(self) -> str:
        """The broadcaster's login (the channel name), looked up once."""
        if not self.login:
            answer = await self.http.get(
                f"{self.settings.twitch_api_url}/users",
                params={"id": self.settings.twitch_broadcaster_id},
                headers=self._headers(),
            )
            users = answer.json().get("data", []) if answer.status_code == 200 else []
            if not users:
                raise ChatFailed(
                    f"cannot look up TWITCH_BROADCASTER_ID {self.settings.twitch_broadcaster_id}: "
                    f"HTTP {answer.status_code} {helix_message(answer)}"
                )
            self.login = str(users[0]["login"]).lower()
        return self.login

    async def _refresh(self) -> bool:
        """A new user token from the refresh token; False when there is none or it fails."""
        refresh = self.settings.twitch_refresh_token.get_secret_value()
        secret = self.settings.twitch_client_secret.get_secret_value()
        if not refresh or not secret:
            return False
        answer = await self.http.post(
            f"{self.settings.twitch_auth_url}/token",
            data={
                "client_id": self.settings.twitch_client_id,
                "client_secret": secret,
                "grant_type": "refresh_token",
                "refresh_token": refresh,
            },
        )
        if answer.status_code != 200:
            log.error("refreshing the chat token failed: HTTP %d", answer.status_code)
            return False
        self.token = str(answer.json()["access_token"])
        log.info("chat token refreshed")
        return True

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Client-Id": self.settings.twitch_client_id,
        }

    async def close(self) -> None:
        """Close the HTTP client."""
        with contextlib.suppress(httpx.HTTPError):
            await self.http.aclose()


def outcome_of(answer: httpx.Response) -> str:
    """``sent`` or ``dropped`` from a 200; ChatFailed with what to fix otherwise."""
    if answer.status_code == 200:
        [result] = answer.json()["data"]
        if result.get("is_sent"):
            return "sent"
        reason: dict[str, Any] = result.get("drop_reason") or {}
        log.warning(
            "Twitch dropped the chat line: %s (%s)", reason.get("message"), reason.get("code")
        )
        return "dropped"
    message = helix_message(answer)
    hints = {
        401: "check TWITCH_USER_TOKEN: it must be the bot's (TWITCH_BOT_ID) user token with "
        "scope user:write:chat",
        403: "the bot may not chat in this channel (banned or restricted)",
        422: "the line is too long",
        429: "rate limited twice in a row",
    }
    hint = hints.get(answer.status_code, "")
    raise ChatFailed(f"HTTP {answer.status_code} {message}" + (f"; {hint}" if hint else ""))


def helix_message(answer: httpx.Response) -> str:
    """The ``message`` of a Helix error body (``{"error", "status", "message"}``)."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("message", ""))[:200] if isinstance(body, dict) else ""


def reset_wait_s(answer: httpx.Response) -> float:
    """Seconds until ``Ratelimit-Reset`` (epoch seconds), within 0..30."""
    try:
        reset = float(answer.headers.get("Ratelimit-Reset", "0"))
    except ValueError:
        return 1.0
    return min(max(reset - time.time(), 0.0), MAX_RATE_LIMIT_WAIT_S)
