"""The Twitch double's OAuth and Helix HTTP endpoints (dev.twitch.tv/docs: "Authentication",
the Helix reference), as aiohttp handlers over :class:`TwitchState`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from tests.ingest.twitch_state import (
    BOT_ID,
    BOT_REFRESH_TOKEN,
    BOT_SCOPES,
    CHAT_LIMIT,
    CHAT_MAX_CHARS,
    CHAT_WINDOW_S,
    CHAT_WRITE_SCOPE,
    CLIENT_ID,
    CLIENT_SECRET,
    CONDITION_KEYS,
    REFRESH_TOKEN,
    USER_TOKEN_SCOPES,
    Subscription,
    TokenInfo,
    TwitchState,
    _error,
    _http_error,
    _user,
)


class HelixEndpoints(TwitchState):
    """The OAuth and Helix endpoints: tokens, users, EventSub subscriptions, streams, chat."""

    async def _token(self, request: web.Request) -> web.Response:
        params = dict(request.query) | dict(await request.post())
        if params.get("client_id") != CLIENT_ID or params.get("client_secret") != CLIENT_SECRET:
            return _error(403, "invalid client secret")
        grant = params.get("grant_type")
        if grant == "client_credentials":
            token = f"apptoken{next(self._counter):022d}"
            self.tokens[token] = TokenInfo(CLIENT_ID, None, None, [], 5_000_000)
            return web.json_response(
                {"access_token": token, "expires_in": 5_000_000, "token_type": "bearer"}
            )
        if grant == "refresh_token" and params.get("refresh_token") in self.refresh_tokens:
            return self._refreshed(self.refresh_tokens[str(params["refresh_token"])])
        return _error(400, "Invalid refresh token" if grant == "refresh_token" else "bad grant")

    def _refreshed(self, user_id: str) -> web.Response:
        self.refreshes += 1
        token = f"usertoken{next(self._counter):021d}"
        scopes = BOT_SCOPES if user_id == BOT_ID else USER_TOKEN_SCOPES
        self.add_user_token(token, user_id, scopes=scopes)
        body = {
            "access_token": token,
            "refresh_token": BOT_REFRESH_TOKEN if user_id == BOT_ID else REFRESH_TOKEN,
            "expires_in": 14_400,
            "scope": scopes,
            "token_type": "bearer",
        }
        return web.json_response(body)

    async def _validate(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        info = self.tokens.get(header.removeprefix("OAuth ").removeprefix("Bearer "))
        if info is None:
            return _error(401, "invalid access token")
        body: dict[str, Any] = {
            "client_id": info.client_id,
            "scopes": info.scopes,
            "expires_in": info.expires_in,
        }
        if info.user_id:
            body |= {"login": info.login, "user_id": info.user_id}
        return web.json_response(body)

    def _caller(self, request: web.Request) -> TokenInfo:
        header = request.headers.get("Authorization", "")
        info = (
            self.tokens.get(header.removeprefix("Bearer "))
            if header.startswith("Bearer ")
            else None
        )
        if info is None:
            raise _http_error(401, "Invalid OAuth token")
        if request.headers.get("Client-Id") != info.client_id:
            raise _http_error(401, "Client ID and OAuth token do not match")
        return info

    # ---- Helix -------------------------------------------------------------------

    async def _users(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        ids = request.query.getall("id", [])
        logins = request.query.getall("login", [])
        if not ids and not logins and caller.user_id:
            ids = [caller.user_id]
        found = [
            _user(user_id, login)
            for user_id, login in self.users.items()
            if user_id in ids or login in logins
        ]
        return web.json_response({"data": found})

    async def _create_subscription(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        body = await request.json()
        self.subscription_requests.append({"body": body, "user_id": caller.user_id})
        problem = self._subscription_problem(body, caller)
        if problem is not None:
            return problem
        sub = Subscription(
            id=str(uuid.uuid4()),
            type=body["type"],
            version=body["version"],
            condition=dict(body["condition"]),
            session_id=body["transport"]["session_id"],
        )
        self.subscriptions[sub.id] = sub
        await self._changed_now()
        payload = {"data": [sub.as_json()], "total": 1, "total_cost": 0, "max_total_cost": 10}
        return web.json_response(payload, status=202)

    def _subscription_problem(self, body: Any, caller: TokenInfo) -> web.Response | None:
        key = (body.get("type"), body.get("version"))
        transport = body.get("transport") or {}
        if key not in CONDITION_KEYS:
            return _error(400, f"unsupported subscription type and version {key}")
        if set(body.get("condition") or {}) != CONDITION_KEYS[key]:
            return _error(400, f"condition must have exactly {sorted(CONDITION_KEYS[key])}")
        if transport.get("method") != "websocket" or caller.user_id is None:
            return _error(400, "websocket transport needs a user access token")
        session = self.sessions.get(transport.get("session_id", ""))
        if session is None or session.current is None:
            return _error(400, "websocket transport session does not exist or has disconnected")
        if any(
            sub.type == body["type"] and sub.condition == body["condition"]
            for sub in self.enabled_subscriptions(session.id)
        ):
            return _error(409, "subscription already exists")
        return None

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        self._caller(request)
        data = [sub.as_json() for sub in self.subscriptions.values()]
        body = {"data": data, "total": len(data), "total_cost": 0, "max_total_cost": 10}
        return web.json_response(body | {"pagination": {}})

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        self._caller(request)
        if self.subscriptions.pop(request.query.get("id", ""), None) is None:
            return _error(404, "subscription not found")
        return web.Response(status=204)

    async def _streams(self, request: web.Request) -> web.Response:
        self._caller(request)
        self.streams_requests += 1
        wanted = request.query.getall("user_id", [])
        live = self.stream is not None and (not wanted or self.stream["user_id"] in wanted)
        data = [self.stream] if live else []
        await self._changed_now()
        return web.json_response({"data": data, "pagination": {}})

    # ---- EventSub WebSocket ----------------------------------------------------------

    async def _send_chat_message(self, request: web.Request) -> web.Response:
        """Helix Send Chat Message, per Twitch's API reference.

        401 for a bad token, a missing ``user:write:chat`` scope, or a ``sender_id``
        that is not the token's user; 400 for a missing field; 422 over 500
        characters; 403 for a sender banned from the chat; 429 (with the
        ``Ratelimit-*`` headers) beyond 20 messages per 30 s; 200 with ``is_sent``
        false and a ``drop_reason`` when chat drops it (see ``chat_drop_next``).
        """
        caller = self._caller(request)
        if CHAT_WRITE_SCOPE not in caller.scopes:
            return _error(401, f"Missing scope: {CHAT_WRITE_SCOPE}")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The request body is not valid JSON")
        missing = [
            name
            for name in ("broadcaster_id", "sender_id", "message")
            if not isinstance(body, dict) or not body.get(name)
        ]
        if missing:
            return _error(400, f"Missing required parameter: {missing[0]}")
        if body["sender_id"] != caller.user_id:
            return _error(401, "The sender_id must match the user ID in the access token")
        if len(str(body["message"])) > CHAT_MAX_CHARS:
            return _error(422, "The message is too large")
        if body["sender_id"] in self.chat_banned:
            return _error(403, "The sender is not permitted to send chat messages")
        now = time.time()
        recent = [at for at in self.chat_sent_at if at > now - CHAT_WINDOW_S]
        if len(recent) >= CHAT_LIMIT:
            reset = int(recent[0] + CHAT_WINDOW_S) + 1
            headers = {
                "Ratelimit-Limit": str(CHAT_LIMIT),
                "Ratelimit-Remaining": "0",
                "Ratelimit-Reset": str(reset),
            }
            response = _error(429, "Too Many Requests")
            response.headers.update(headers)
            return response
        self.chat_sent_at = [*recent, now]
        if self.chat_drop_next is not None:
            drop, self.chat_drop_next = self.chat_drop_next, None
            result = {"message_id": "", "is_sent": False, "drop_reason": drop}
        else:
            self.chat_messages.append(dict(body))
            result = {"message_id": str(uuid.uuid4()), "is_sent": True, "drop_reason": None}
        return web.json_response({"data": [result]})
