"""The analytics app's typed state: what its lifespan owns and its routes read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from services.analytics.broadcaster import Broadcaster
from services.analytics.hub import Hub
from services.analytics.settings import AnalyticsSettings
from shared.app_state import ServiceState, state_of
from shared.partition_leases import PartitionLeaseKeeper


@dataclass(frozen=True)
class AnalyticsState(ServiceState):
    """Settings, Redis, the workers' supervisor, the WebSocket hub, the broadcaster and
    the lease keeper of this replica's partitions."""

    settings: AnalyticsSettings
    hub: Hub
    broadcaster: Broadcaster
    keeper: PartitionLeaseKeeper

    def health(self) -> dict[str, Any]:
        """The partitions this replica holds (and so consumes and recomputes)."""
        held = self.keeper.held()
        return {"partitions_held": len(held), "partitions": held, "replica": self.keeper.replica}


def analytics_state(connection: HTTPConnection) -> AnalyticsState:
    """The state of the app serving ``connection`` (a request or a WebSocket)."""
    return state_of(connection.app, AnalyticsState)
