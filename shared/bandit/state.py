"""A bandit's state as Python sees it: one arm's posterior, and the JSON backup's models."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, Field

from shared.bandit.posterior import Estimate


class BanditStateError(Exception):
    """The JSON state file cannot be used: unreadable, corrupt, or without the channel."""


@dataclass(frozen=True)
class ArmState:
    """One arm's posterior Beta(alpha, beta) and how many updates it has had.

    ``alpha`` and ``beta`` are pseudo-counts of good and bad segments, prior
    included (and discounted, with a discount); ``updates`` is the raw number of
    rewards applied to the arm, never discounted.
    """

    alpha: float
    beta: float
    updates: int = 0

    @property
    def mean(self) -> float:
        """Posterior mean ``alpha / (alpha + beta)``: the expected reward of the arm."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def sd(self) -> float:
        """Posterior standard deviation of the arm's expected reward."""
        total = self.alpha + self.beta
        return math.sqrt(self.alpha * self.beta / (total * total * (total + 1)))

    def estimate(self) -> Estimate:
        """Mean, sd and update count as an :class:`Estimate`."""
        return Estimate(mean=self.mean, sd=self.sd, n=self.updates)


class ArmSnapshot(BaseModel):
    """One arm in the JSON file."""

    alpha: float = Field(gt=0, allow_inf_nan=False)
    beta: float = Field(gt=0, allow_inf_nan=False)
    updates: int = Field(default=0, ge=0)


class Priors(BaseModel):
    """The prior Beta(alpha, beta) a channel was saved with."""

    alpha: float = Field(gt=0, allow_inf_nan=False)
    beta: float = Field(gt=0, allow_inf_nan=False)


class ChannelSnapshot(BaseModel):
    """One channel in the JSON file: its arms, priors, discount, the evidence weight of one
    reward (1 in files written before it was recorded) and save time (RFC 3339)."""

    arms: dict[str, ArmSnapshot]
    priors: Priors
    discount: float = Field(gt=0, le=1)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    saved_at: str


class StateFile(BaseModel):
    """The whole JSON file: ``{"channels": {channel: ChannelSnapshot}}``."""

    channels: dict[str, ChannelSnapshot] = Field(default_factory=dict)
