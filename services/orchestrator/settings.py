"""Settings of the orchestrator (``python -m services.orchestrator``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import BanditSettings, TwitchApiSettings


class OrchestratorSettings(BanditSettings, TwitchApiSettings):
    """The decision loop, the bandit, Claude, the per-channel leases, the chat line."""

    orchestrator_port: int = Field(default=8002, description="HTTP port: health and metrics.")
    decision_interval_s: float = Field(
        default=30.0, gt=0, description="Event-time seconds between decisions for a channel."
    )
    commit_segments: bool = Field(
        default=True,
        description="Decide once per segment: a choice (keep or switch) holds MIN_SEGMENT_S, "
        "then the next is made (false: redraw every interval after the dwell, as before).",
    )
    reward_grace_s: float = Field(
        default=5.0, ge=0, description="Event-time wait after a segment ends before scoring it."
    )
    loop_interval_s: float = Field(
        default=0.25, gt=0, description="Real seconds between looks at each channel's clock."
    )
    tick_concurrency: int = Field(
        default=256,
        ge=1,
        description="Channel ticks (a lifecycle read, maybe a decision with its Claude call) "
        "in flight at once; more wait their turn. At least decisions/s times Claude's latency.",
    )
    lease_ttl_ms: int = Field(
        default=10_000, ge=100, description="A channel's lease lifetime; the holder renews it."
    )
    replica_id: str = Field(default="", description="This replica's name; empty: hostname-pid.")
    anthropic_api_key: SecretStr = Field(
        default=SecretStr(""), description="Claude API key; empty runs on the bandit alone."
    )
    anthropic_model: str = Field(
        default="claude-haiku-5-5",
        description="Claude model; Haiku 5.5: fast and cheap for a 30 s loop (README).",
    )
    anthropic_base_url: str = Field(default="", description="API base URL; empty: Anthropic's.")
    anthropic_timeout_s: float = Field(default=5.0, gt=0, description="Per-request timeout.")
    anthropic_max_retries: int = Field(default=1, ge=0, description="Retries on 429/5xx/timeouts.")
    anthropic_config_backoff_s: float = Field(
        default=300.0,
        gt=0,
        description="Pause after a 4xx that will repeat (bad key/model); doubles up to 1 h.",
    )
    twitch_chat_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="Least real time between two chat lines sent (Twitch: 20 per 30 s).",
    )
    twitch_chat_queue_max: int = Field(
        default=20, ge=1, description="Chat lines waiting to be sent; beyond, the oldest drop."
    )
