"""The bandit's maths: Beta-Bernoulli Thompson sampling as pure numpy functions.

Arms are on the last axis and any number of leading axes are allowed, so one
call runs a single channel's bandit or a hundred simulated ones
(``tools/bench_bandit.py``). The Lua update in :mod:`shared.bandit.store`
performs exactly :func:`posterior_update`'s floating-point operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


def positive(name: str, value: float) -> float:
    """``value`` as a float, or ValueError unless finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_reward(reward: float) -> float:
    """``reward`` as a float, or ValueError unless it is a finite number in [0, 1]."""
    value = float(reward)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"reward must be in [0, 1], got {reward!r}")
    return value


def argmax_random_ties(values: FloatArray, rng: np.random.Generator) -> IndexArray:
    """Index of the largest value along the last axis; equal maxima are chosen uniformly.

    Draws ``values.size`` uniforms from ``rng`` on every call (ties or not), so the
    random stream does not depend on the data.
    """
    best = values == values.max(axis=-1, keepdims=True)
    keys = np.where(best, rng.random(values.shape), -1.0)
    chosen: IndexArray = np.argmax(keys, axis=-1)
    return chosen


def sample_arm(alpha: FloatArray, beta: FloatArray, rng: np.random.Generator) -> IndexArray:
    """Thompson sampling: one Beta(alpha, beta) draw per arm, index of the best.

    ``alpha`` and ``beta`` have the arms on the last axis; leading axes are
    independent bandits (one choice each).
    """
    return argmax_random_ties(rng.beta(alpha, beta), rng)


def evidence_weight(reward_sd: float) -> float:
    """Beta pseudo-observations one reward is worth when rewards vary with sd ``reward_sd``.

    A Beta(alpha, beta) posterior with mean m has variance about m (1 - m) / (alpha + beta);
    n Gaussian observations with noise sd s give s^2 / n. Equal at m = 1/2 when every
    reward adds ``0.25 / s^2`` to alpha + beta: the posterior is then as wide as the
    evidence really is. ``reward_sd`` = 0.5 (a coin flip's sd) gives 1, the plain update.
    """
    return 0.25 / positive("reward_sd", reward_sd) ** 2


@dataclass(frozen=True)
class Estimate:
    """An arm's estimated reward in reward units: posterior mean, its sd, rewards behind it."""

    mean: float
    sd: float
    n: int


def decay(values: FloatArray, prior: float, discount: float) -> FloatArray:
    """``prior + discount * (values - prior)``; an exact copy when ``discount`` is 1."""
    if discount >= 1.0:
        return values.copy()
    return prior + discount * (values - prior)


def posterior_update(
    alpha: FloatArray,
    beta: FloatArray,
    arm: int | IndexArray,
    reward: float | FloatArray,
    *,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    discount: float = 1.0,
    weight: float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """New (alpha, beta) after ``reward`` on ``arm``; the inputs are not modified.

    Every arm first decays toward the prior (:func:`decay`), then the pulled arm
    gets ``alpha += weight * reward`` and ``beta += weight * (1 - reward)``
    (``weight``: pseudo-observations one reward is worth, :func:`evidence_weight`).
    ``arm`` and ``reward`` have the leading shape of ``alpha`` (scalars for a single
    bandit). Rewards must lie in [0, 1] (ValueError otherwise).
    """
    rewards = np.asarray(reward, dtype=np.float64)
    if not np.all((rewards >= 0.0) & (rewards <= 1.0)):
        raise ValueError(f"rewards must be in [0, 1], got {reward!r}")
    hit = np.arange(alpha.shape[-1]) == np.asarray(arm)[..., None]
    gained = np.where(hit, weight * rewards[..., None], 0.0)
    lost = np.where(hit, weight * (1.0 - rewards[..., None]), 0.0)
    return (
        decay(alpha, prior_alpha, discount) + gained,
        decay(beta, prior_beta, discount) + lost,
    )
