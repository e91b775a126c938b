"""The analytics app's typed state: what its lifespan owns and its routes read."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from services.analytics.broadcaster import Broadcaster
from services.analytics.hub import Hub
from services.analytics.settings import AnalyticsSettings
from shared.app_state import ServiceState, state_of


@dataclass(frozen=True)
class AnalyticsState(ServiceState):
    """Settings, Redis, the workers' supervisor, the WebSocket hub and the broadcaster."""

    settings: AnalyticsSettings
    hub: Hub
    broadcaster: Broadcaster


def analytics_state(connection: HTTPConnection) -> AnalyticsState:
    """The state of the app serving ``connection`` (a request or a WebSocket)."""
    return state_of(connection.app, AnalyticsState)
