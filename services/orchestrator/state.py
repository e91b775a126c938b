"""The orchestrator app's typed state: what its lifespan owns and ``/healthz`` reads."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from services.orchestrator.chat import TwitchChat
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.settings import OrchestratorSettings
from shared.app_state import ServiceState, state_of


@dataclass(frozen=True)
class OrchestratorState(ServiceState):
    """Settings, Redis, the loop's supervisor, Claude's client and the Twitch chat."""

    settings: OrchestratorSettings
    advisor: ClaudeAdvisor
    chat: TwitchChat


def orchestrator_state(connection: HTTPConnection) -> OrchestratorState:
    """The state of the app serving ``connection``."""
    return state_of(connection.app, OrchestratorState)
