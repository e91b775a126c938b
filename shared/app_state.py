"""Typed application state: one object per service, set once by its lifespan.

Starlette's ``app.state`` is an untyped bag; each service instead keeps one frozen
dataclass (a subclass of :class:`ServiceState`, in its ``state.py``) that its
lifespan builds when every connection and task it owns exists, and that routes
read through a small typed accessor (:func:`state_of`). A route served before the
lifespan set it is a bug, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from redis.asyncio import Redis

from shared.tasks import Supervisor

ATTRIBUTE = "service"
"""The one ``app.state`` attribute the typed state lives on."""


@dataclass(frozen=True)
class ServiceState:
    """What every service's lifespan owns and ``/healthz`` reads: Redis and the workers."""

    redis: Redis
    supervisor: Supervisor

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` adds about this service's work (e.g. partitions held); none here."""
        return {}


S = TypeVar("S", bound=ServiceState)


def set_state(app: FastAPI, state: ServiceState) -> None:
    """Make ``state`` the app's typed state (the lifespan calls this once, at start)."""
    setattr(app.state, ATTRIBUTE, state)


def current_state(app: FastAPI) -> ServiceState | None:
    """The app's typed state, or None when its lifespan has not set one."""
    state = getattr(app.state, ATTRIBUTE, None)
    return state if isinstance(state, ServiceState) else None


def state_of(app: FastAPI, kind: type[S]) -> S:
    """The app's typed state as ``kind``; RuntimeError if the lifespan has not set it."""
    state = current_state(app)
    if not isinstance(state, kind):
        raise RuntimeError(
            f"{app.title}: no {kind.__name__} on the app (its lifespan sets it at start)"
        )
    return state
