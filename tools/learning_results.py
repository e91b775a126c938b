"""What the learning benchmark records per run, and how runs become its figures.

:class:`Run` is one policy's two streams on one audience; the functions turn a list
of runs into the Markdown table, the measured noise of each reward part, the goals
of issue 14 (met or not) and the plot (``docs/learning-share.png``). The runs
themselves are made by :mod:`tools.bench_learning`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.rewards import Scored

POLICIES = ("ours", "discounted", "previous", "uniform", "epsilon", "mabwiser")
PLOT = Path(__file__).resolve().parent.parent / "docs" / "learning-share.png"


@dataclass
class Run:
    """What one policy did with one audience: best-on-air share per hour, and its rewards."""

    policy: str
    seed: int
    share_by_hour: list[float]
    on_air: list[str]
    rewards: list[tuple[str, float]] = field(default_factory=list)
    parts: list[Scored] = field(default_factory=list)
    best: str = ""


def arm_means(runs: Sequence[Run]) -> dict[int, dict[str, float]]:
    """Per audience, each activity's mean reward over every policy's scored segments."""
    pooled: dict[int, dict[str, list[float]]] = {}
    for run in runs:
        for arm, reward in run.rewards:
            pooled.setdefault(run.seed, {}).setdefault(arm, []).append(reward)
    return {
        seed: {arm: float(np.mean(values)) for arm, values in arms.items()}
        for seed, arms in pooled.items()
    }


def regret(run: Run, means: dict[str, float]) -> float:
    """Reward lost per hour on air: mean of (best arm's mean reward - on-air arm's), x 12.

    12 = segments of 5 minutes in an hour: the regret of playing a worse activity for an
    hour, in units of one 5-minute segment's reward.
    """
    top = max(means.values())
    gaps = [top - means.get(activity, top) for activity in run.on_air]
    return float(np.mean(gaps)) * 12


def table(runs: Sequence[Run], hours: float) -> list[str]:
    """The Markdown table of the figures, one row per policy."""
    means = arm_means(runs)
    last = int(hours) - 1 if hours >= 1 else 0
    first_next = int(np.ceil(hours))
    lines = [
        "| policy | last hour of stream 1: median | 10th pct | first hour of stream 2: median "
        "| 10th pct | whole 2 streams: mean | regret / hour (5-min rewards) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for policy in POLICIES:
        mine = [run for run in runs if run.policy == policy]
        last_hour = [run.share_by_hour[last] for run in mine]
        next_first = [run.share_by_hour[first_next] for run in mine]
        overall = [float(np.mean(run.share_by_hour)) for run in mine]
        lost = [regret(run, means[run.seed]) for run in mine if run.seed in means]
        lines.append(
            f"| `{policy}` | {np.median(last_hour):.0%} | {np.percentile(last_hour, 10):.0%} "
            f"| {np.median(next_first):.0%} | {np.percentile(next_first, 10):.0%} "
            f"| {np.mean(overall):.0%} | {np.mean(lost):.3f} |"
        )
    return lines


PARTS: dict[str, Callable[[Scored], float]] = {
    "reward": lambda i: i.reward,
    "engagement part": lambda i: i.engagement_part,
    "revenue part": lambda i: i.revenue_part,
}


def noise(runs: Sequence[Run], policy: str = "ours") -> list[str]:
    """Measured noise of one chunk's reward and of each part, beside the signal to find.

    Per audience and activity with at least 5 chunks: the standard deviation of the chunks'
    reward (and of each part); the median over all of them. Signal: per audience, the best
    activity's mean minus the runner-up's (by mean reward; activities with 5+ chunks).
    """
    sds: dict[str, list[float]] = {name: [] for name in PARTS}
    gaps: dict[str, list[float]] = {name: [] for name in PARTS}
    for run in (r for r in runs if r.policy == policy):
        by_arm: dict[str, list[Scored]] = {}
        for item in run.parts:
            by_arm.setdefault(item.activity, []).append(item)
        arms = {arm: items for arm, items in by_arm.items() if len(items) >= 5}
        for name, part in PARTS.items():
            sds[name] += [float(np.std([part(i) for i in it], ddof=1)) for it in arms.values()]
        means = {arm: float(np.mean([i.reward for i in it])) for arm, it in arms.items()}
        others = [arm for arm in means if arm != run.best]
        if run.best in means and others:
            second = max(others, key=lambda arm: means[arm])
            for name, part in PARTS.items():
                best = np.mean([part(i) for i in arms[run.best]])
                gaps[name].append(float(best - np.mean([part(i) for i in arms[second]])))
    lines = [
        f"| chunks of `{policy}` | sd of one chunk (median) | best minus runner-up (median) "
        "| chunks to tell them apart at 2 sd |",
        "|---|---:|---:|---:|",
    ]
    for name in PARTS:
        if sds[name] and gaps[name]:
            sd, gap = float(np.median(sds[name])), float(np.median(gaps[name]))
            needed = f"{(2 * sd / gap) ** 2 * 2:.0f}" if gap > 0 else "never"
            lines.append(f"| {name} | {sd:.3f} | {gap:+.3f} | {needed} |")
    return lines


def plot(runs: Sequence[Run], path: Path = PLOT) -> None:
    """Median share of each hour with the best activity on air, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for policy in POLICIES:
        shares = np.array([run.share_by_hour for run in runs if run.policy == policy])
        hours = np.arange(1, shares.shape[1] + 1)
        axis.plot(hours, np.median(shares, axis=0), marker="o", label=f"{policy} (median)")
        if policy == "ours":
            low = np.percentile(shares, 10, axis=0)
            axis.fill_between(hours, low, np.median(shares, axis=0), alpha=0.15)
    axis.axvline(shares.shape[1] / 2 + 0.5, color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("hour (1-4: first stream, 5-8: second stream)")
    axis.set_ylabel("share of the hour with the best activity on air")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def goals(runs: Sequence[Run], hours: float) -> str:
    """The issue's goals for ``ours``, met or not."""
    mine = [run for run in runs if run.policy == "ours"]
    last = [run.share_by_hour[int(hours) - 1] for run in mine]
    nxt = [run.share_by_hour[int(np.ceil(hours))] for run in mine]
    checks = [
        ("median last-hour share >= 85 %", float(np.median(last)) >= 0.85),
        ("10th percentile >= 70 %", float(np.percentile(last, 10)) >= 0.70),
        ("median first hour of stream 2 >= 80 %", float(np.median(nxt)) >= 0.80),
    ]
    return (
        "Goals for `ours`: "
        + "; ".join(f"{name}: **{'met' if ok else 'NOT met'}**" for name, ok in checks)
        + "."
    )
