"""What a Claude call cost: tokens, latency and dollars, per call and as Prometheus metrics.

Prices are Anthropic's list prices per million tokens (input, output) for the
models the orchestrator knows; prompt-cache writes cost 1.25x input and reads
0.1x input (5-minute cache). A model missing from :data:`MODELS` still works;
its cost is reported as unknown (-1) rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1
PER_MILLION = 1_000_000


@dataclass(frozen=True)
class ModelProfile:
    """What the orchestrator needs to know of a model: its price and whether it thinks."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float
    thinks_by_default: bool
    max_tokens: int


MODELS: dict[str, ModelProfile] = {
    # Fast and cheap, no thinking by default: the default for a 30 s decision loop.
    "claude-haiku-5-5": ModelProfile(0.10, 0.50, thinks_by_default=False, max_tokens=600),
    # Adaptive thinking on by default (effort high): room for the thinking before the tools.
    "claude-sonnet-5-5": ModelProfile(2.0, 10.0, thinks_by_default=True, max_tokens=4000),
    "claude-opus-5-5": ModelProfile(4.0, 20.0, thinks_by_default=True, max_tokens=4000),
}
UNKNOWN_MODEL = ModelProfile(0.0, 0.0, thinks_by_default=True, max_tokens=4000)
"""A model not in the table: assume it may think (never force a tool), price unknown."""


def profile(model: str) -> ModelProfile:
    """The profile of ``model`` (an unknown id gets :data:`UNKNOWN_MODEL`)."""
    return MODELS.get(model, UNKNOWN_MODEL)


REQUESTS = Counter(
    "streamloop_claude_requests_total",
    "Claude consultations by outcome: advice, refusal, unusable, error, config_error, paused.",
    ["outcome"],
)
TOKENS = Counter(
    "streamloop_claude_tokens_total",
    "Tokens of Claude calls: input, output, cache_read, cache_write.",
    ["kind"],
)
COST = Counter("streamloop_claude_cost_usd_total", "Estimated cost of Claude calls in USD.")
LATENCY = Histogram(
    "streamloop_claude_latency_seconds",
    "Wall time of one Claude consultation, retries included.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20),
)


@dataclass(frozen=True)
class Usage:
    """The tokens, latency and estimated cost of one answered call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: int = 0
    cost_usd: float = -1.0

    @classmethod
    def of(cls, model: str, usage: Any, latency_s: float) -> Usage:
        """From a response's ``usage`` block (SDK object), priced for ``model``."""
        counts = {
            "input_tokens": _int(getattr(usage, "input_tokens", 0)),
            "output_tokens": _int(getattr(usage, "output_tokens", 0)),
            "cache_read_tokens": _int(getattr(usage, "cache_read_input_tokens", 0)),
            "cache_write_tokens": _int(getattr(usage, "cache_creation_input_tokens", 0)),
        }
        return cls(**counts, latency_ms=round(latency_s * 1000), cost_usd=cost(model, **counts))

    def record(self) -> None:
        """Add this call to the Prometheus metrics."""
        TOKENS.labels("input").inc(self.input_tokens)
        TOKENS.labels("output").inc(self.output_tokens)
        TOKENS.labels("cache_read").inc(self.cache_read_tokens)
        TOKENS.labels("cache_write").inc(self.cache_write_tokens)
        LATENCY.observe(self.latency_ms / 1000)
        if self.cost_usd >= 0:
            COST.inc(self.cost_usd)

    def fields(self) -> dict[str, str]:
        """The per-decision record fields (``decisions:{channel}``)."""
        return {
            "tokens_in": str(self.input_tokens),
            "tokens_out": str(self.output_tokens),
            "tokens_cached": str(self.cache_read_tokens),
            "tokens_cache_write": str(self.cache_write_tokens),
            "claude_latency_ms": str(self.latency_ms),
            "cost_usd": f"{self.cost_usd:.6f}" if self.cost_usd >= 0 else "unknown",
        }


def cost(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
) -> float:
    """Estimated USD of one call; -1 for a model whose price is not known.

    ``input_tokens`` is what the API reports: the uncached input only (cache reads
    and writes are counted separately).
    """
    if model not in MODELS:
        return -1.0
    price = MODELS[model]
    input_usd = price.input_usd_per_mtok * (
        input_tokens
        + CACHE_WRITE_FACTOR * cache_write_tokens
        + CACHE_READ_FACTOR * cache_read_tokens
    )
    return (input_usd + price.output_usd_per_mtok * output_tokens) / PER_MILLION


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0
