"""The retro app's typed state: what its lifespan owns."""

from __future__ import annotations

from dataclasses import dataclass

from services.retro.handler import RetroHandler
from services.retro.settings import RetroSettings
from shared.app_state import ServiceState


@dataclass(frozen=True)
class RetroState(ServiceState):
    """Settings, Redis, the consumer's supervisor and the lifecycle handler."""

    settings: RetroSettings
    handler: RetroHandler
