"""The orchestrator app: health and metrics over HTTP; its lifespan runs the decision loop."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
from collections.abc import AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from services.orchestrator.chat import TwitchChat
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.context import MetricsReader
from services.orchestrator.decider import Orchestrator
from services.orchestrator.lease import ChannelLeases
from services.orchestrator.loop import DecisionLoop
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state import OrchestratorState, orchestrator_state
from shared import ops
from shared.app_state import set_state
from shared.bandit import BanditStateError, bandit_factory
from shared.exposure import guard_hosts
from shared.lifespan import ServiceLifespan
from shared.publisher import Publisher
from shared.redis_client import CONNECTION_ERRORS
from shared.rewards import SegmentScorer

log = logging.getLogger("services.orchestrator")
STOP_TIMEOUT_S = 8.0


def advisor_for(settings: OrchestratorSettings) -> ClaudeAdvisor:
    """Claude with the configured model, timeout and retries (disabled without a key)."""
    return ClaudeAdvisor(
        api_key=settings.anthropic_api_key.get_secret_value(),
        model=settings.anthropic_model,
        activities=settings.activities,
        timeout_s=settings.anthropic_timeout_s,
        max_retries=settings.anthropic_max_retries,
        base_url=settings.anthropic_base_url,
        config_backoff_s=settings.anthropic_config_backoff_s,
    )


def build_loop(
    redis: Redis,
    settings: OrchestratorSettings,
    advisor: ClaudeAdvisor,
    rng: np.random.Generator | None = None,
    chat: TwitchChat | None = None,
) -> DecisionLoop:
    """The decision loop with every collaborator wired from ``settings``."""
    bandits = bandit_factory(redis, settings, rng)
    orchestrator = Orchestrator(
        settings.activities,
        advisor=advisor,
        metrics=MetricsReader(redis, settings.keys),
        bandits=bandits,
        min_segment_s=settings.min_segment_s,
    )
    scorer = SegmentScorer(
        redis,
        settings.keys,
        bandits,
        min_segment_s=settings.min_segment_s,
        grace_s=settings.reward_grace_s,
        state_path=settings.bandit_state_path,
        chunks=settings.score_chunks,
        revenue_prior_s=settings.reward_revenue_prior_s,
    )
    replica = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
    leases = ChannelLeases(redis, settings.keys, replica, settings.lease_ttl_ms)
    publisher = Publisher(redis, settings)
    return DecisionLoop(redis, settings, orchestrator, publisher, leases, scorer, chat)


async def seed_bandits(loop: DecisionLoop, settings: OrchestratorSettings) -> None:
    """Channels with no bandit state in Redis start from the JSON backup, if it has them."""
    assert loop.scorer is not None
    for channel in settings.channels:
        try:
            if await loop.scorer.bandits(channel).seed_if_empty(settings.bandit_state_path):
                log.info("%s: bandit seeded from %s", channel, settings.bandit_state_path)
        except BanditStateError as error:
            log.error(
                "%s: not seeding the bandit from %s (%s); starting from the prior",
                channel,
                settings.bandit_state_path,
                error,
            )
        except CONNECTION_ERRORS as error:
            log.warning("%s: Redis unreachable, bandit not seeded yet: %s", channel, error)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: OrchestratorSettings) -> AsyncIterator[None]:
    """Own Redis, Claude's client and the loop; on stop save the bandits and give leases back.

    The loop and the chat stop first (the loop releases its leases), then the chat
    and Claude's clients close with the bandits saved between them, then Redis
    (``shared.lifespan``).
    """
    async with ServiceLifespan(
        "orchestrator", settings, log, stop_timeout_s=STOP_TIMEOUT_S
    ) as life:
        redis, stop = life.redis, life.stop
        advisor = advisor_for(settings)
        chat = TwitchChat(settings)
        loop = build_loop(redis, settings, advisor, chat=chat)
        await seed_bandits(loop, settings)
        life.on_close(chat.close)
        life.on_close(lambda: _save_bandits(loop, settings))
        life.on_close(advisor.close)
        set_state(app, OrchestratorState(redis, life.supervisor, settings, advisor, chat))
        life.start("decisions", lambda: loop.run(stop))
        if chat.enabled:
            life.start("chat", lambda: chat.run(stop))
        life.summary(
            lambda: (
                f"{loop.decisions} decisions, "
                f"{loop.scorer.scored if loop.scorer else 0} segments scored; bandit saved to "
                f"{settings.bandit_state_path}; leases released"
            )
        )
        log.info(
            "orchestrator up as %s: channels %s, Claude %s, Twitch chat %s",
            loop.leases.replica,
            ",".join(settings.channels),
            settings.anthropic_model if advisor.enabled else "off",
            "on" if chat.enabled else "off (no TWITCH_* settings)",
        )
        yield


async def _save_bandits(loop: DecisionLoop, settings: OrchestratorSettings) -> None:
    assert loop.scorer is not None
    for channel in settings.channels:
        try:
            await loop.scorer.bandits(channel).save(settings.bandit_state_path)
        except (*CONNECTION_ERRORS, OSError) as error:  # type: ignore[misc]
            log.error(
                "%s: could not save the bandit to %s: %s",
                channel,
                settings.bandit_state_path,
                error,
            )


def create_app(settings: OrchestratorSettings) -> FastAPI:
    """The orchestrator app for ``settings`` (read once at start)."""
    app = FastAPI(
        title="streamloop-orchestrator",
        version="0.1.0",
        lifespan=functools.partial(lifespan, settings=settings),
    )

    @app.get("/healthz", summary="Process up, Redis reachable, and what Claude is doing")
    async def healthz(request: Request) -> JSONResponse:
        """:func:`shared.ops.healthz` plus ``claude`` (on, off, or paused and the setting to
        fix) and ``twitch_chat`` (off, or on with lines sent and the last failure).

        Neither makes the service unhealthy: the bandit still decides without them.
        """
        answer = await ops.healthz(request)
        state = orchestrator_state(request)
        body = json.loads(bytes(answer.body)) | {
            "claude": state.advisor.health(),
            "twitch_chat": state.chat.health(),
        }
        return JSONResponse(body, status_code=answer.status_code)

    guard_hosts(app, settings)
    app.include_router(ops.router)
    return app
