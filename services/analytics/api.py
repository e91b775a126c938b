"""The REST API (``/api/...``), documented in the generated OpenAPI at ``/docs``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from services.analytics.auth import require_token
from services.analytics.state import analytics_state
from shared.bandit import stored_arms
from shared.readmodel.donations import recent_donations
from shared.readmodel.lifecycle import timeline
from shared.readmodel.models import PaidEvent, StreamSummary, Timeline
from shared.readmodel.summary import stream_summary

router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_token)])
ChannelName = Annotated[str, Path(description="Channel login", pattern=r"^[A-Za-z0-9_]{1,25}$")]


class ChannelMetrics(BaseModel):
    """The live figures of one channel (``metrics:{channel}``; formulas in docs/metrics.md)."""

    channel: str
    is_live: bool = False
    stream_id: str = ""
    stream_started_at: str = Field("", description="RFC 3339, event time")
    stream_ended_at: str = ""
    current_activity: str = ""
    viewer_count: int = 0
    chat_velocity: float = Field(0.0, description="chat messages per minute, trailing window")
    unique_chatters_window: int = 0
    paid_events_window: int = 0
    engagement_score: float = Field(0.0, ge=0, le=100)
    revenue_today: float = Field(0.0, description="USD since local midnight in TIMEZONE")
    revenue_stream: float = Field(0.0, description="USD this stream")
    bits_today: int = 0
    subs_count: int = Field(0, description="subs, resubs and gifted subs this stream")
    donations_per_hour: float = Field(0.0, description="USD per hour")
    now: str = Field("", description="the channel's event time: latest ts seen")
    version: int = Field(0, description="events applied when these figures were computed")


def known_channel(request: Request, channel: str) -> str:
    """``channel`` lower-cased, or 404 when it is not in ``CHANNELS``."""
    settings = analytics_state(request).settings
    if channel.lower() not in settings.channels:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown channel {channel!r}")
    return channel.lower()


@router.get("/channels/{channel}/metrics", summary="Live figures of a channel")
async def metrics(request: Request, channel: ChannelName) -> ChannelMetrics:
    """The channel's ``metrics:{channel}`` hash, typed."""
    return await read_metrics(request, known_channel(request, channel))


async def read_metrics(request: Request, channel: str) -> ChannelMetrics:
    """Typed view of ``metrics:{channel}`` (zeros before the first event)."""
    state = analytics_state(request)
    figures: dict[str, str] = await state.redis.hgetall(  # type: ignore[assignment]
        state.settings.keys.metrics(channel)
    )
    return ChannelMetrics(channel=channel, **{**figures, "is_live": figures.get("is_live") == "1"})


@router.get("/channels/{channel}/summary", summary="Everything a post-stream report needs")
async def summary(
    request: Request,
    channel: ChannelName,
    stream_id: Annotated[str | None, Query(description="A stream; default the latest")] = None,
) -> StreamSummary:
    """Figures, per-activity table, segments, top chatters and donors, chart series."""
    state = analytics_state(request)
    return await stream_summary(
        state.redis, state.settings.keys, known_channel(request, channel), stream_id
    )


@router.get("/channels/{channel}/timeline", summary="Activity segments of a stream")
async def activity_timeline(
    request: Request,
    channel: ChannelName,
    stream_id: Annotated[str | None, Query(description="A stream; default the latest")] = None,
) -> Timeline:
    """The activity segments, each with who chose it and why."""
    state = analytics_state(request)
    return await timeline(
        state.redis, state.settings.keys, known_channel(request, channel), stream_id
    )


@router.get("/channels/{channel}/donations", summary="Latest donations and bits")
async def donations(
    request: Request,
    channel: ChannelName,
    limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first")] = 50,
) -> list[PaidEvent]:
    """Newest first, in the dashboard's donation message format."""
    state = analytics_state(request)
    return await recent_donations(
        state.redis, state.settings.keys, known_channel(request, channel), limit
    )


class ArmPosterior(BaseModel):
    """One arm of the channel's Thompson-sampling bandit."""

    arm: str
    alpha: float
    beta: float
    mean: float = Field(description="Posterior mean alpha / (alpha + beta), in reward units")
    sd: float = Field(description="Posterior standard deviation of the mean, in reward units")
    updates: int = Field(description="Rewards (scored chunks) applied to this arm")


class BanditPosteriors(BaseModel):
    """The bandit's arms, best posterior mean first."""

    channel: str
    arms: list[ArmPosterior]


@router.get(
    "/channels/{channel}/bandit",
    summary="The bandit's arm posteriors",
    responses={404: {"description": "No bandit state yet (orchestrator not running)"}},
)
async def bandit(request: Request, channel: ChannelName) -> BanditPosteriors:
    """Alpha, beta and mean per arm, as the orchestrator keeps them in ``bandit:{channel}``."""
    state = analytics_state(request)
    name = known_channel(request, channel)
    arms = await stored_arms(state.redis, state.settings.keys, name)
    if not arms:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no bandit state for {name} yet")
    ranked = sorted(arms.items(), key=lambda item: item[1].mean, reverse=True)
    return BanditPosteriors(
        channel=name,
        arms=[
            ArmPosterior(
                arm=arm, alpha=s.alpha, beta=s.beta, mean=s.mean, sd=s.sd, updates=s.updates
            )
            for arm, s in ranked
        ],
    )
