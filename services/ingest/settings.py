"""Settings of the ingest service (``python -m services.ingest``)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from shared.money import DEFAULT_USD_RATES, to_cents
from shared.settings import CommaList, TwitchApiSettings, split_commas

SourceName = Literal["sim", "twitch", "webhooks"]


class IngestSettings(TwitchApiSettings):
    """Where events come from, and how each source is reached."""

    ingest_port: int = Field(default=8001, description="HTTP port (webhooks, health, metrics).")
    ingest_sources: CommaList = Field(
        default=["sim"], description="Sources to run: sim, twitch, webhooks (comma separated)."
    )
    sim_scenario_path: str = Field(
        default="", description="Scenario file (TOML or JSON); empty uses the shipped default."
    )
    sim_seed: int = Field(default=42, description="Random seed; same seed, same audience.")
    sim_speed: float = Field(default=1.0, gt=0, description="Simulated seconds per real second.")
    sim_duration_s: float = Field(
        default=0.0, ge=0, description="Simulated stream length; 0 runs until stopped."
    )
    sim_tick_s: float = Field(default=1.0, gt=0, description="Simulated seconds per step.")
    sub_tier1_usd: Decimal = Field(default=Decimal("2.50"), ge=0, description="Est. USD per T1.")
    sub_tier2_usd: Decimal = Field(default=Decimal("5.00"), ge=0, description="Est. USD per T2.")
    sub_tier3_usd: Decimal = Field(default=Decimal("12.50"), ge=0, description="Est. USD per T3.")
    fx_rates_usd: dict[str, Decimal] = Field(
        default_factory=lambda: dict(DEFAULT_USD_RATES),
        description='USD per unit of each currency, JSON: {"EUR": 1.08}.',
    )
    twitch_eventsub_ws_url: str = Field(
        default="wss://eventsub.wss.twitch.tv/ws", description="EventSub WebSocket URL."
    )
    twitch_viewer_poll_s: float = Field(default=30.0, gt=0, description="Helix poll interval.")
    twitch_webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="EventSub webhook HMAC secret (10-100 chars)."
    )
    donation_webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="Shared secret guarding /webhooks/donations."
    )
    webhook_max_body_bytes: int = Field(default=65_536, ge=1, description="Largest body taken.")
    webhook_body_timeout_s: float = Field(
        default=10.0, gt=0, description="Time a webhook body may take to arrive; slower is 408."
    )
    ingest_buffer_max_events: int = Field(
        default=50_000,
        ge=0,
        description="Events held in memory while Redis is down; past it webhooks answer 503.",
    )
    ingest_buffer_flush_s: float = Field(
        default=5.0, ge=0, description="Time given at shutdown to publish held events."
    )
    ingest_spill_dir: str = Field(
        default="data/ingest-spill",
        description="Journal of held events; the next start publishes what a stop or kill left.",
    )
    max_clock_skew_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a live (Twitch, webhook) event may be dated ahead of the wall "
        "clock; later ones are refused with the reason.",
    )
    webhook_max_age_s: int = Field(default=600, ge=1, description="Oldest message accepted.")

    _split_sources = field_validator("ingest_sources", mode="before")(split_commas)

    @field_validator("ingest_sources")
    @classmethod
    def _known_sources(cls, sources: list[str]) -> list[str]:
        unknown = sorted(set(sources) - {"sim", "twitch", "webhooks"})
        if unknown:
            raise ValueError(f"unknown INGEST_SOURCES {unknown}: choose from sim, twitch, webhooks")
        return sources

    @field_validator("fx_rates_usd", mode="before")
    @classmethod
    def _rates_from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def sub_usd(self, tier: str, count: int = 1) -> Decimal:
        """Estimated USD revenue of ``count`` subs at ``tier`` (``1000``/``2000``/``3000``)."""
        per_sub = {"1000": self.sub_tier1_usd, "2000": self.sub_tier2_usd}.get(
            tier, self.sub_tier3_usd
        )
        return to_cents(per_sub * count)
