"""Settings of the analytics service (``python -m services.analytics``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, SecretStr, field_validator

from shared.settings import CommaList, ConsumerSettings, split_commas


class AnalyticsSettings(ConsumerSettings):
    """Metrics, the dashboard's WebSocket and the REST API."""

    analytics_port: int = Field(default=8000, description="HTTP port: dashboard, API, WebSocket.")
    dashboard_token: SecretStr = Field(
        default=SecretStr(""), description="When set, required by the page, API and socket."
    )
    cors_origins: CommaList = Field(
        default=[], description="Origins allowed to call the API from a browser (none by default)."
    )
    broadcast_interval_s: float = Field(
        default=2.0, gt=0, description="How often every client gets stream_state + metrics_update."
    )
    ws_per_message_deflate: bool = Field(
        default=False,
        description="Compress WebSocket frames when the browser offers it (costs CPU per client).",
    )
    client_queue_messages: int = Field(
        default=256, ge=1, description="Messages queued for a slow client before it is dropped."
    )
    chat_window_s: int = Field(default=60, ge=1, description="Window of chat_velocity.")
    engagement_window_s: int = Field(
        default=300, ge=1, description="Window for unique chatters and paid events in engagement."
    )
    analytics_claim_at_start: bool = Field(
        default=True,
        description="A replica that takes a partition claims the entries other consumers left "
        "pending there at once (false: only after CONSUMER_CLAIM_MIN_IDLE_MS, as a plain "
        "consumer group does).",
    )
    analytics_lease_ttl_ms: int = Field(
        default=10_000,
        ge=300,
        description=(
            "Lifetime of a partition lease; renewed every third of it. A dead replica's "
            "partitions move to the others within it."
        ),
    )
    state_ttl_s: int = Field(
        default=7 * 86_400,
        ge=60,
        description="How long per-channel raw state outlives its last event.",
    )

    activity_names: dict[str, str] = Field(
        default_factory=dict,
        description='Dashboard names per activity, JSON: {"q_and_a": "Q&A"}; others built in.',
    )
    dashboard_recent_donations: int = Field(
        default=20, ge=0, le=50, description="Donations a newly connected dashboard gets."
    )

    _split_origins = field_validator("cors_origins", mode="before")(split_commas)

    @field_validator("activity_names", mode="before")
    @classmethod
    def _parse_names(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value
