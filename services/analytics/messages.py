"""The four WebSocket messages the dashboard's stores expect, to the key.

``stream_state`` and ``metrics_update`` come from the ``metrics:{channel}`` hash;
``donation`` and ``revenue_point`` from one paid event as it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from shared.clock import format_ts, parse_ts
from shared.events import BitsEvent, DonationEvent
from shared.readmodel.models import PaidEvent


def uptime(started_at: str, now: str, is_live: bool) -> str:
    """``H:MM:SS`` of event time since the stream started; ``0:00:00`` when offline."""
    if not is_live or not started_at or not now:
        return "0:00:00"
    seconds = max(0, int((parse_ts(now) - parse_ts(started_at)).total_seconds()))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def stream_state(metrics: Mapping[str, str]) -> dict[str, object]:
    """``{"type": "stream_state", ...}`` from the metrics hash (empty hash: offline zeros)."""
    live = metrics.get("is_live") == "1"
    return {
        "type": "stream_state",
        "data": {
            "isLive": live,
            "viewerCount": int(metrics.get("viewer_count", 0)),
            "uptime": uptime(metrics.get("stream_started_at", ""), metrics.get("now", ""), live),
            "currentActivity": metrics.get("current_activity", ""),
            "chatVelocity": float(metrics.get("chat_velocity", 0)),
            "engagementScore": float(metrics.get("engagement_score", 0)),
        },
    }


def metrics_update(metrics: Mapping[str, str]) -> dict[str, object]:
    """``{"type": "metrics_update", ...}`` from the metrics hash."""
    return {
        "type": "metrics_update",
        "data": {
            "revenueToday": float(metrics.get("revenue_today", 0)),
            "subsCount": int(metrics.get("subs_count", 0)),
            "bitsToday": int(metrics.get("bits_today", 0)),
            "donationsPerHour": float(metrics.get("donations_per_hour", 0)),
        },
    }


def donation(event: DonationEvent | BitsEvent) -> dict[str, object]:
    """``{"type": "donation", ...}`` for one donation or bits cheer."""
    return {
        "type": "donation",
        "data": {
            "id": event.id,
            "username": event.user,
            "amount": float(event.amount or 0),
            "message": event.message,
            "timestamp": format_ts(event.ts),
            "type": event.type,
        },
    }


def activity_names(names: Mapping[str, str]) -> dict[str, object]:
    """``{"type": "activity_names", ...}``: the configured display name of each activity."""
    return {"type": "activity_names", "data": dict(names)}


def paid_event(event: PaidEvent) -> dict[str, object]:
    """``{"type": "donation", ...}`` for a stored donation or cheer (the connect snapshot)."""
    return {"type": "donation", "data": event.model_dump()}


def revenue_point(at: datetime, amount: float, cumulative: float) -> dict[str, object]:
    """``{"type": "revenue_point", ...}``: one paid amount and the day's running total, USD."""
    return {
        "type": "revenue_point",
        "data": {
            "timestamp": format_ts(at),
            "amount": round(amount, 2),
            "cumulative": round(cumulative, 2),
        },
    }


def encode(message: Mapping[str, object]) -> str:
    """The text frame for ``message`` (encoded once, shared by every client)."""
    return json.dumps(message, separators=(",", ":"))
