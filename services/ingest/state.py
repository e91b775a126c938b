"""The ingest app's typed state: what its lifespan owns and its webhooks read."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from services.ingest.buffer import PublishBuffer
from services.ingest.settings import IngestSettings
from services.ingest.sources.eventsub import LiveStreams
from shared.app_state import ServiceState, state_of
from shared.publisher import Publisher


@dataclass(frozen=True)
class IngestState(ServiceState):
    """Settings, Redis, the sources' supervisor, the publisher and its outage buffer, and
    the stream-liveness tracker the Twitch webhook maps notifications with."""

    settings: IngestSettings
    publisher: Publisher
    buffer: PublishBuffer
    twitch_live_streams: LiveStreams


def ingest_state(connection: HTTPConnection) -> IngestState:
    """The state of the app serving ``connection``."""
    return state_of(connection.app, IngestState)
