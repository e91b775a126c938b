"""``DASHBOARD_TOKEN``: when set, the page, the API and the socket all require it.

The token comes as ``?token=`` or ``Authorization: Bearer <token>`` and is
compared in constant time. With no token configured everything is open (bind
to 127.0.0.1, the default, or set one before exposing the port).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status
from starlette.requests import HTTPConnection

from services.analytics.settings import AnalyticsSettings
from services.analytics.state import analytics_state

MISSING_TOKEN = (
    "this dashboard needs its token: "
    "add ?token=<DASHBOARD_TOKEN> or an Authorization: Bearer header"
)


def presented_token(connection: HTTPConnection) -> str:
    """The token a request or socket presents (query parameter first, then bearer header)."""
    query = connection.query_params.get("token")
    if query:
        return query
    return connection.headers.get("authorization", "").removeprefix("Bearer ").strip()


def token_ok(settings: AnalyticsSettings, presented: str) -> bool:
    """True when no token is configured, or ``presented`` equals it (constant time)."""
    expected = settings.dashboard_token.get_secret_value()
    if not expected:
        return True
    return hmac.compare_digest(presented.encode(), expected.encode())


async def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries the dashboard token."""
    if not token_ok(analytics_state(request).settings, presented_token(request)):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, MISSING_TOKEN, headers={"WWW-Authenticate": "Bearer"}
        )
