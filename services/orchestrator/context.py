"""What the orchestrator knows of a channel when it decides: the ``metrics:{channel}`` figures."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from shared.keys import Keys


@dataclass(frozen=True)
class StreamFigures:
    """The live figures a decision uses (from analytics' ``metrics:{channel}`` hash)."""

    is_live: bool
    viewers: int
    chat_velocity: float
    engagement: float
    revenue_per_hour: float
    current_activity: str


class MetricsReader:
    """Reads the figures analytics keeps for a channel."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def figures(self, channel: str) -> StreamFigures:
        """The channel's figures now (zeros and offline before analytics has any)."""
        key = self.keys.metrics(channel)
        raw: dict[str, str] = await self.redis.hgetall(key)  # type: ignore[assignment]
        return StreamFigures(
            is_live=raw.get("is_live") == "1",
            viewers=int(raw.get("viewer_count", 0)),
            chat_velocity=float(raw.get("chat_velocity", 0)),
            engagement=float(raw.get("engagement_score", 0)),
            revenue_per_hour=float(raw.get("donations_per_hour", 0)),
            current_activity=raw.get("current_activity", ""),
        )


def describe(figures: StreamFigures | None, suggestion: str | None, current: str) -> str:
    """The context Claude reads: ``Stream state: 42 viewers, ... Current activity: talk.``

    Without figures (no metrics reader) or a suggestion (no bandit) it says so plainly.
    """
    parts = []
    if figures is None:
        parts.append("Stream state: unknown (no live figures available).")
    else:
        parts.append(
            f"Stream state: {figures.viewers} viewers, chat velocity {figures.chat_velocity:g} "
            f"msg/min, engagement {figures.engagement:g}/100, "
            f"revenue ${figures.revenue_per_hour:g}/hr."
        )
    if suggestion:
        parts.append(f"Bandit suggests: {suggestion}.")
    parts.append(f"Current activity: {current or 'none yet'}.")
    return " ".join(parts)
