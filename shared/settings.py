"""Typed settings shared by every service, read once at start from the environment and ``.env``.

Each service subclasses :class:`BaseServiceSettings` (and :class:`ConsumerSettings`
when it consumes streams). Every tunable carries its unit in its name
(``block_ms``, ``dedupe_ttl_s``); the README's settings table lists them all.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.keys import Keys, Stream
from shared.partitions import Partitions

CommaList = Annotated[list[str], NoDecode]


def split_commas(value: Any) -> Any:
    """Parse ``"a, b,c"`` into ``["a", "b", "c"]``; lists pass through unchanged."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


HIGH_VOLUME_TYPES = frozenset({"chat", "follow", "viewer_count"})
"""Event types whose dedupe markers live ``DEDUPE_CHAT_TTL_S`` (see :meth:`dedupe_ttl_ms`)."""


class BaseServiceSettings(BaseSettings):
    """Settings every service reads: Redis, channels, logging, stream caps."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    redis_url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        description="Redis to use (redis:// or rediss://, password allowed).",
    )
    redis_key_prefix: str = Field(
        default="", description="Prefix for every key, so deployments can share one Redis."
    )
    redis_cluster: bool = Field(
        default=False,
        description="Talk to a Redis Cluster with the cluster client; REDIS_URL names any "
        "node (docs/cluster.md).",
    )
    channels: CommaList = Field(
        default=["demo"], description="Twitch channel logins served, comma separated."
    )
    redis_max_connections: int = Field(
        default=500,
        ge=10,
        description="Connections a service's Redis pool may open (per node on a cluster). "
        "A blocking read holds one: analytics holds up to two per partition (its consumer "
        "and its donation feed), retro one.",
    )
    partitions: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Partitions channels are spread over (crc32 % N), each one hash tag of a "
        "Redis Cluster; changing it needs an empty Redis.",
    )
    log_level: str = Field(default="INFO", description="Python log level name.")
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    timezone: str = Field(default="UTC", description="IANA zone for daily figures.")
    bind_host: str = Field(default="127.0.0.1", description="Address HTTP servers listen on.")
    allowed_hosts: CommaList = Field(
        default=[],
        description="Host names the HTTP apps answer besides IP addresses, localhost and BIND_HOST "
        "(compose service names, a public name); * answers any.",
    )
    http_max_connections: int = Field(
        default=1000, ge=1, description="Open HTTP connections kept; more are closed at once."
    )
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a connection gets to send a request's headers; idle and slow "
        "senders are cut.",
    )
    http_keep_alive_s: int = Field(
        default=5, ge=1, description="Idle time after a response before the connection closes."
    )
    stream_maxlen_chat: int = Field(
        default=100_000,
        ge=1,
        description="Entries kept in each partition's events:{pNN}:chat (MAXLEN ~).",
    )
    stream_maxlen_viewers: int = Field(
        default=100_000,
        ge=1,
        description="Entries kept in each partition's events:{pNN}:viewers (MAXLEN ~).",
    )
    stream_maxlen_donation: int = Field(
        default=1_000_000,
        ge=1,
        description="Entries kept in each partition's events:{pNN}:donation (MAXLEN ~).",
    )
    stream_maxlen_sub: int = Field(
        default=1_000_000,
        ge=1,
        description="Entries kept in each partition's events:{pNN}:sub (MAXLEN ~).",
    )
    stream_maxlen_lifecycle: int = Field(
        default=1_000_000,
        ge=1,
        description="Entries kept in each partition's events:{pNN}:lifecycle (MAXLEN ~).",
    )
    stream_maxlen_dead: int = Field(
        default=100_000,
        ge=1,
        description="Entries kept in each partition's events:{pNN}:dead (MAXLEN ~).",
    )
    dedupe_ttl_s: int = Field(
        default=86_400,
        ge=1,
        description="How long a donation, bits, sub or lifecycle source+id is remembered.",
    )
    dedupe_chat_ttl_s: int = Field(
        default=120,
        ge=1,
        description="How long a chat, follow or viewer-count source+id is remembered.",
    )

    _split_channels = field_validator("channels", mode="before")(split_commas)
    _split_hosts = field_validator("allowed_hosts", mode="before")(split_commas)

    @field_validator("redis_key_prefix")
    @classmethod
    def _no_braces_in_prefix(cls, prefix: str) -> str:
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                "REDIS_KEY_PREFIX must not contain { or }: Redis Cluster hashes the first "
                "{...} of a key, so the prefix would hide each partition's hash tag"
            )
        return prefix

    @field_validator("channels")
    @classmethod
    def _lower_channels(cls, channels: list[str]) -> list[str]:
        if not channels:
            raise ValueError("CHANNELS needs at least one channel login")
        return [channel.lower() for channel in channels]

    @property
    def partitioning(self) -> Partitions:
        """How channels map to partitions and hash tags (``shared.partitions``)."""
        return Partitions(self.partitions)

    @property
    def keys(self) -> Keys:
        """Key names under this deployment's prefix and partitioning."""
        return Keys(self.redis_key_prefix, self.partitioning)

    def dedupe_ttl_ms(self, event_type: str) -> int:
        """Milliseconds the dedupe marker of an event of ``event_type`` lives.

        The high-volume types (chat, follows, viewer counts) are remembered for
        ``DEDUPE_CHAT_TTL_S``, long enough for a redelivery around a reconnect or
        two ingest replicas; money and lifecycle for ``DEDUPE_TTL_S``.
        """
        short = event_type in HIGH_VOLUME_TYPES
        return (self.dedupe_chat_ttl_s if short else self.dedupe_ttl_s) * 1000

    def stream_maxlen(self, kind: Stream) -> int:
        """The approximate MAXLEN of stream ``kind``."""
        value: int = getattr(self, f"stream_maxlen_{kind.value}")
        return value


class ConsumerSettings(BaseServiceSettings):
    """Settings of the consumer-group runner (``shared.consumer``)."""

    consumer_name: str = Field(
        default="", description="Consumer name in the group; empty means hostname-pid."
    )
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000, description="Entries a read.")
    consumer_block_ms: int = Field(default=1000, ge=1, description="XREADGROUP BLOCK time.")
    consumer_claim_min_idle_ms: int = Field(
        default=30_000, ge=1, description="Idle time after which another consumer's entry is taken."
    )
    consumer_reclaim_interval_s: float = Field(
        default=5.0, gt=0, description="How often stale pending entries are looked for."
    )
    consumer_forget_idle_ms: int = Field(
        default=3_600_000,
        ge=1,
        description="Consumers idle this long with nothing pending are removed from the group.",
    )
    consumer_max_attempts: int = Field(
        default=3, ge=1, description="Handler failures before an entry is dead-lettered."
    )


class BanditSettings(BaseServiceSettings):
    """How the activity bandit is set up and segments are scored: the orchestrator and
    the retro worker read the same names, so one ``.env`` configures both alike (the
    segment ids they score are shared tokens)."""

    activities: CommaList = Field(
        default=["talk", "q_and_a", "gameplay", "react", "music"],
        description="Activities the bandit chooses among.",
    )
    min_segment_s: float = Field(
        default=180.0,
        ge=0,
        description="Event-time seconds an activity stays on air before a switch (and the "
        "length of a scored chunk); shorter segments are not scored.",
    )
    score_chunks: bool = Field(
        default=True,
        description="Score a long run of one activity in chunks of MIN_SEGMENT_S, each once "
        "(false: one reward per segment, the design before issue 14).",
    )
    reward_revenue_prior_s: float = Field(
        default=900.0,
        ge=0,
        description="A chunk's revenue rate is shrunk toward the stream's, as if it had this "
        "many more seconds at the stream's rate, so one tip cannot swing a reward (0: its own).",
    )
    bandit_prior_alpha: float = Field(default=1.0, gt=0, description="Beta prior alpha.")
    bandit_prior_beta: float = Field(default=1.0, gt=0, description="Beta prior beta.")
    bandit_reward_sd: float = Field(
        default=0.09,
        gt=0,
        le=0.5,
        description="Measured standard deviation of one chunk's reward; each reward counts as "
        "0.25 / sd^2 Beta pseudo-observations (0.5: one, the plain update).",
    )
    bandit_discount: float = Field(
        default=1.0, gt=0, le=1, description="Per-update decay of old evidence; 1 keeps all."
    )
    bandit_state_path: str = Field(
        default="data/bandit_state.json",
        description="JSON backup of the bandit: one file per channel in this path without "
        ".json (data/bandit_state/); a single file here (earlier versions) is still read.",
    )

    _split_activities = field_validator("activities", mode="before")(split_commas)


class TwitchApiSettings(BaseServiceSettings):
    """The Twitch app and accounts, read by ingest (EventSub, Helix polls) and the
    orchestrator (the streamer's chat line through Helix Send Chat Message)."""

    twitch_client_id: str = Field(default="", description="Twitch app client id.")
    twitch_client_secret: SecretStr = Field(default=SecretStr(""), description="App secret.")
    twitch_bot_id: str = Field(default="", description="User id of the bot account.")
    twitch_broadcaster_id: str = Field(default="", description="User id of the channel.")
    twitch_user_token: SecretStr = Field(default=SecretStr(""), description="User access token.")
    twitch_refresh_token: SecretStr = Field(default=SecretStr(""), description="Refresh token.")
    twitch_api_url: str = Field(default="https://api.twitch.tv/helix", description="Helix URL.")
    twitch_auth_url: str = Field(default="https://id.twitch.tv/oauth2", description="OAuth URL.")
