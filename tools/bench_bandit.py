"""``make bench`` section ``bandit-regret``: our Thompson sampling against MABWiser's.

Bernoulli bandits with ``ARMS`` arms, ``ROUNDS`` rounds, ``SEEDS`` problem
instances. Instance ``s`` draws its arm probabilities and a full reward matrix
(``rewards[t, k]``: what arm ``k`` pays if pulled in round ``t``) from
``default_rng([INSTANCE_SEED, s])``, so every algorithm faces the same arms and
the same draws. Regret is pseudo-regret, ``sum_t (p* - p[a_t])``.

- ours: ``shared.bandit.sample_arm`` + ``shared.bandit.posterior_update``, the
  functions ``ThompsonBandit`` uses (its Lua update is tested to match the
  latter bit for bit), run in-process for all instances at once (the arrays'
  leading axis is the instance), without Redis;
- MABWiser ``LearningPolicy.ThompsonSampling()``: one ``MAB`` per instance,
  round by round through the public API, ``predict()`` then ``partial_fit`` of
  that one decision. Thompson sampling cannot be batched over rounds without
  changing the algorithm (a batch would be chosen from a stale posterior), so
  the speed-ups are: numpy arguments (about a quarter faster than lists), and
  instances spread over a process pool, one process per core;
- the Lai-Robbins asymptotic lower bound ``sum_i Delta_i / KL(p_i, p*) * ln t``,
  per instance, averaged.

Instances whose best two arms are closer than ``MIN_GAP`` are redrawn: for a
near-tie the asymptotic bound exceeds any regret reachable in ``ROUNDS`` rounds
and means nothing.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shared.bandit import posterior_update, sample_arm

ARMS = 5
ROUNDS = 10_000
SEEDS = 100
INSTANCE_SEED = 20_260_227
OURS_SEED = 1
OURS_REPEATS = 10
MIN_GAP = 0.05
P_RANGE = (0.05, 0.95)
PLOT = Path(__file__).resolve().parent.parent / "docs" / "bandit-regret.png"

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Curves:
    """Cumulative regret per instance (``SEEDS`` x ``ROUNDS``) and the seconds it took."""

    regret: FloatArray
    seconds: float

    @property
    def final(self) -> FloatArray:
        """Regret after the last round, per instance."""
        return self.regret[:, -1]


def instance(seed: int) -> tuple[FloatArray, BoolArray]:
    """Arm probabilities (top two at least ``MIN_GAP`` apart) and ``ROUNDS`` x ``ARMS`` rewards."""
    rng = np.random.default_rng([INSTANCE_SEED, seed])
    while True:
        probs = rng.uniform(*P_RANGE, size=ARMS)
        top_two = np.sort(probs)[-2:]
        if top_two[1] - top_two[0] >= MIN_GAP:
            break
    return probs, rng.random((ROUNDS, ARMS)) < probs


def regret_of(probs: FloatArray, chosen: npt.NDArray[np.intp]) -> FloatArray:
    """Cumulative pseudo-regret of the arms ``chosen`` (last axis: rounds)."""
    gaps = probs.max(axis=-1, keepdims=True) - probs
    return np.cumsum(np.take_along_axis(gaps, chosen, axis=-1), axis=-1)


def run_ours(seeds: int = SEEDS, rng_seed: int = OURS_SEED) -> Curves:
    """Our Thompson sampling on every instance at once (prior Beta(1, 1), no discount).

    ``rng_seed`` seeds the sampling draws (the instances stay the same).
    """
    problems = [instance(seed) for seed in range(seeds)]
    probs = np.stack([p for p, _ in problems])
    rewards = np.stack([r for _, r in problems]).astype(np.float64)
    started = time.perf_counter()
    rng = np.random.default_rng(rng_seed)
    alpha, beta = np.ones((seeds, ARMS)), np.ones((seeds, ARMS))
    rows = np.arange(seeds)
    chosen = np.empty((seeds, ROUNDS), dtype=np.intp)
    for t in range(ROUNDS):
        arms = sample_arm(alpha, beta, rng)
        alpha, beta = posterior_update(alpha, beta, arms, rewards[rows, t, arms])
        chosen[:, t] = arms
    return Curves(regret_of(probs, chosen), time.perf_counter() - started)


def mabwiser_regret(seed: int) -> FloatArray:
    """MABWiser's Thompson sampling on instance ``seed``, round by round (public API)."""
    from mabwiser.mab import MAB, LearningPolicy

    probs, rewards = instance(seed)
    mab = MAB(list(range(ARMS)), LearningPolicy.ThompsonSampling(), seed=seed)
    mab.fit(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))  # Beta(1, 1) everywhere
    decision, reward = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.float64)
    chosen = np.empty(ROUNDS, dtype=np.intp)
    for t in range(ROUNDS):
        chosen[t] = decision[0] = mab.predict()
        reward[0] = rewards[t, decision[0]]
        mab.partial_fit(decision, reward)
    return regret_of(probs, chosen)


def run_mabwiser(seeds: int = SEEDS, workers: int | None = None) -> Curves:
    """:func:`mabwiser_regret` for every instance, over a pool of one process per core."""
    workers = workers or min(os.cpu_count() or 1, seeds)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        curves = list(pool.map(mabwiser_regret, range(seeds)))
    return Curves(np.stack(curves), time.perf_counter() - started)


def bernoulli_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)) in nats."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def lai_robbins_constant(probs: FloatArray) -> float:
    """``sum over suboptimal i of Delta_i / KL(p_i, p*)``: the bound is this times ln t."""
    best = float(probs.max())
    return sum((best - p) / bernoulli_kl(p, best) for p in map(float, probs) if p < best)


def lai_robbins(seeds: int = SEEDS) -> FloatArray:
    """The bound's curve per instance (``seeds`` x ``ROUNDS``), at t = 1 .. ``ROUNDS``."""
    constants = np.array([lai_robbins_constant(instance(seed)[0]) for seed in range(seeds)])
    return constants[:, None] * np.log(np.arange(1, ROUNDS + 1))[None, :]


def interval(values: FloatArray) -> tuple[float, float, float]:
    """Mean, standard deviation, and half-width of the normal 95% interval of the mean."""
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std, 1.96 * std / math.sqrt(values.size)


def plot(ours: FloatArray, theirs: FloatArray, bound: FloatArray, path: Path = PLOT) -> None:
    """Mean regret curves with 95% bands, linear and log time axes, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = np.arange(1, ROUNDS + 1)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for axis, scale in zip(axes, ("linear", "log"), strict=True):
        for curves, label, style in (
            (ours, "ours (shared.bandit)", "-"),
            (theirs, "MABWiser ThompsonSampling", "--"),
        ):
            mean, _, half = interval_curve(curves)
            axis.plot(rounds, mean, style, label=label)
            axis.fill_between(rounds, mean - half, mean + half, alpha=0.2)
        axis.plot(rounds, bound.mean(axis=0), ":", color="black", label="Lai-Robbins lower bound")
        axis.set_xscale(scale)
        axis.set_xlabel("round t" + (" (log scale)" if scale == "log" else ""))
        axis.set_ylabel("mean cumulative regret")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper left")
    figure.suptitle(f"Bernoulli bandits: K={ARMS}, {SEEDS} instances, 95% bands")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def interval_curve(curves: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per round: mean, std and 95% half-width over instances (axis 0)."""
    std = curves.std(axis=0, ddof=1)
    return curves.mean(axis=0), std, 1.96 * std / math.sqrt(curves.shape[0])


def bench_bandit_regret() -> str:
    """Run the comparison, save the plot, and return the Markdown section."""
    ours, theirs = run_ours(), run_mabwiser()
    bound = lai_robbins()
    plot(ours.regret, theirs.regret, bound)
    others = [run_ours(rng_seed=OURS_SEED + n).final.mean() for n in range(1, OURS_REPEATS + 1)]
    return report(ours, theirs, bound[:, -1], np.array(others))


def report(ours: Curves, theirs: Curves, bound: FloatArray, others: FloatArray) -> str:
    """The Markdown section: table, ratios, paired difference and verdict.

    ``others`` holds our mean final regret with other sampling streams, to show
    how much the means move with the random draws alone.
    """
    rows = [
        row("ours: `shared.bandit` Thompson sampling", ours.final, f"{ours.seconds:.1f} s"),
        row(
            "MABWiser `LearningPolicy.ThompsonSampling()`", theirs.final, f"{theirs.seconds:.1f} s"
        ),
        row("Lai-Robbins asymptotic lower bound", bound, "-"),
    ]
    difference, _, half = interval(ours.final - theirs.final)
    met = difference - half <= 0
    below = int((ours.final < bound).sum())
    inside = bool(others.min() <= theirs.final.mean() <= others.max())
    return "\n".join(
        [
            f"Bernoulli arms, K = {ARMS}, {ROUNDS:,} rounds, {SEEDS} instances (arm probabilities "
            f"uniform in [{P_RANGE[0]}, {P_RANGE[1]}], best-to-second gap >= {MIN_GAP}; the same "
            "pre-drawn reward matrix per instance for every algorithm). Pseudo-regret "
            f"after {ROUNDS:,} rounds, prior Beta(1, 1), no discount:",
            "",
            "| algorithm | mean regret | std | 95% interval of the mean | time |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
            f"Ratio ours / MABWiser: **{ours.final.mean() / theirs.final.mean():.3f}**; "
            f"ours / Lai-Robbins: **{ours.final.mean() / bound.mean():.2f}**. "
            f"Paired difference ours - MABWiser: {difference:+.1f} +/- {half:.1f} (95%). "
            f"Ours ends below the bound on {below} of {bound.size} instances: the bound is "
            f"asymptotic (regret / ln t tends to at least the constant), and at {ROUNDS:,} rounds "
            "instances with close arms are still short of that regime.",
            "",
            f"Noise check: ours again with {others.size} other sampling streams on the same "
            f"instances ends at a mean regret of {others.min():.1f} to {others.max():.1f} "
            f"(average {others.mean():.1f}); MABWiser's mean, {theirs.final.mean():.1f}, lies "
            f"{'inside' if inside else 'outside'} that range.",
            "",
            "Aim: regret no worse than MABWiser's (the paired difference is not significantly "
            f"above 0): **{'met' if met else 'NOT met'}**.",
            "",
            f"Mean regret curves: [bandit-regret.png]({PLOT.name}). MABWiser ran round by round "
            "through its public API (Thompson sampling cannot be batched over rounds without "
            "changing the algorithm), its instances spread over one process per core.",
        ]
    )


def row(name: str, finals: FloatArray, seconds: str) -> str:
    """One table row: mean, std and 95% interval of final regret."""
    mean, std, half = interval(finals)
    return (
        f"| {name} | {mean:.1f} | {std:.1f} | {mean - half:.1f} to {mean + half:.1f} | {seconds} |"
    )


if __name__ == "__main__":
    print(bench_bandit_regret())
