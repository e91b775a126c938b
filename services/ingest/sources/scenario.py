"""Scenario files: how the simulated audience behaves during each activity.

A scenario is a TOML or JSON file (chosen by extension) with stream-level fields
at the top and one table per activity under ``activities``::

    initial_viewers = 120
    initial_activity = "talk"

    [activities.talk]
    chat_msgs_per_min_per_100_viewers = 12.0
    target_viewers = 120

Every audience rate is an expected count *per minute per 100 viewers*, so a
channel twice as big sees twice the chat and twice the tips. Amounts are
lognormal: ``*_median_*`` is the median and ``*_log_sigma`` the standard
deviation of the natural log. Any field left out takes the default documented on
the model, so a scenario only spells out what differs. Activity names are free
(``[a-z0-9_]``); the shipped default (``scenarios/default.toml``) has ``talk``,
``q_and_a``, ``gameplay``, ``react`` and ``music``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.money import normalise_currency

DEFAULT_SCENARIO_PATH = Path(__file__).parent / "scenarios" / "default.toml"
"""The scenario used when ``SIM_SCENARIO_PATH`` is empty."""

ActivityName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
]
Tier = Literal["1000", "2000", "3000"]
DEFAULT_TIER_SHARES: dict[Tier, float] = {"1000": 0.9, "2000": 0.07, "3000": 0.03}
Share = Annotated[float, Field(ge=0, le=1)]
PerMinute = Annotated[float, Field(ge=0, le=100_000)]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or breaks the format; the message names the field."""


class ActivityBehaviour(BaseModel):
    """How the audience behaves while one activity is on air.

    Rates are expected events per minute per 100 viewers (Poisson); amounts are
    lognormal (median and log sigma); viewer drift pulls the count toward
    ``target_viewers``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_msgs_per_min_per_100_viewers: PerMinute = 12.0
    chat_lines: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list,
        description="Lines typical of this activity, mixed with the scenario's chat_lines.",
    )
    chatter_pool_users: int = Field(
        default=300, ge=1, le=20_000, description="Distinct people who chat."
    )
    chatter_concentration_exponent: float = Field(
        default=1.0,
        ge=0,
        le=5,
        description="Zipf exponent of who talks: 0 = all alike, 1+ = a few regulars dominate.",
    )
    donations_per_min_per_100_viewers: PerMinute = 0.05
    donation_median_usd: float = Field(default=5.0, gt=0, le=10_000)
    donation_log_sigma: float = Field(default=0.9, ge=0, le=4)
    donation_other_currency_share: Share = Field(
        default=0.25, description="Share of tips given in a currency other than USD."
    )
    cheers_per_min_per_100_viewers: PerMinute = 0.08
    cheer_median_bits: float = Field(default=100.0, ge=1, le=100_000)
    cheer_log_sigma: float = Field(default=1.0, ge=0, le=4)
    subs_per_min_per_100_viewers: PerMinute = 0.04
    resubs_per_min_per_100_viewers: PerMinute = 0.05
    gifts_per_min_per_100_viewers: PerMinute = 0.01
    follows_per_min_per_100_viewers: PerMinute = 0.15
    target_viewers: int = Field(default=120, ge=0, le=10_000_000)
    viewer_drift_share_per_min: Share = Field(
        default=0.05, description="Share of the gap to target_viewers closed each minute."
    )
    viewer_noise_share_per_min: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Std dev of the random change over one minute, as a share of the count.",
    )


class Scenario(BaseModel):
    """A whole simulated stream: stream-level odds plus one behaviour per activity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    initial_viewers: int = Field(default=100, ge=0, le=10_000_000)
    initial_activity: ActivityName = "talk"
    viewer_count_interval_s: float = Field(default=30.0, gt=0, le=3600)
    raids_per_hour: float = Field(default=0.2, ge=0, le=3600)
    raid_median_viewers: float = Field(default=40.0, ge=1, le=1_000_000)
    raid_log_sigma: float = Field(default=0.8, ge=0, le=4)
    raid_stay_share: Share = Field(
        default=0.5, description="Share of raiders who stay on as viewers (then drift away)."
    )
    sub_tier_shares: dict[Tier, float] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_SHARES),
        description="Relative weight of each sub tier.",
        min_length=1,
    )
    gift_subs_weights: dict[int, float] = Field(
        default_factory=lambda: {1: 0.55, 5: 0.3, 10: 0.1, 20: 0.04, 50: 0.01},
        description="Relative weight of each gift size, by number of subs gifted.",
        min_length=1,
    )
    resub_months_mean: float = Field(default=8.0, ge=2, le=1000)
    donation_currency_weights: dict[str, float] = Field(
        default_factory=lambda: {"EUR": 0.4, "GBP": 0.25, "CAD": 0.15, "AUD": 0.1, "BRL": 0.1},
        description="Relative weight of each currency a non-USD tip is given in.",
        min_length=1,
    )
    chat_lines: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=lambda: ["hi", "lol", "gg", "nice", "hello chat"], min_length=1
    )
    donation_messages: list[Annotated[str, StringConstraints(max_length=1000)]] = Field(
        default_factory=lambda: ["", "love the stream"], min_length=1
    )
    activities: dict[ActivityName, ActivityBehaviour] = Field(min_length=1)

    @field_validator("sub_tier_shares", "gift_subs_weights", "donation_currency_weights")
    @classmethod
    def _weights(cls, weights: dict[Any, float]) -> dict[Any, float]:
        if any(weight < 0 for weight in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")
        return weights

    @field_validator("gift_subs_weights")
    @classmethod
    def _gift_sizes(cls, weights: dict[int, float]) -> dict[int, float]:
        if not all(1 <= size <= 1000 for size in weights):
            raise ValueError("gift sizes must be between 1 and 1000 subs")
        return weights

    @field_validator("donation_currency_weights")
    @classmethod
    def _currencies(cls, weights: dict[str, float]) -> dict[str, float]:
        return {normalise_currency(code): weight for code, weight in weights.items()}

    @model_validator(mode="after")
    def _initial_activity_exists(self) -> Self:
        if self.initial_activity not in self.activities:
            raise ValueError(
                f"initial_activity {self.initial_activity!r} is not one of the activities "
                f"{sorted(self.activities)}"
            )
        return self

    def behaviour(self, activity: str) -> ActivityBehaviour | None:
        """The behaviour of ``activity``, or ``None`` when the scenario does not know it."""
        return self.activities.get(activity)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file: ``.toml`` with tomllib, ``.json`` with json.

    Raises :class:`ScenarioError` naming the file and every bad field.
    """
    path = Path(path)
    raw = _read_raw(path)
    try:
        return Scenario.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ScenarioError(f"scenario {path}: {describe_errors(error)}") from None


def default_scenario() -> Scenario:
    """The shipped default scenario (``scenarios/default.toml``)."""
    return load_scenario(DEFAULT_SCENARIO_PATH)


def scenario_from_setting(path: str) -> Scenario:
    """The scenario at ``path`` (the ``SIM_SCENARIO_PATH`` setting), or the default when empty."""
    return load_scenario(path) if path else default_scenario()


def describe_errors(error: pydantic.ValidationError) -> str:
    """``dotted.field: message`` for every problem, joined with ``; ``."""
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "scenario"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def _read_raw(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ScenarioError(f"scenario {path}: unknown extension {suffix!r}; use .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"scenario {path}: cannot read: {error}") from None
    try:
        return tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ScenarioError(f"scenario {path}: invalid {suffix[1:].upper()}: {error}") from None
