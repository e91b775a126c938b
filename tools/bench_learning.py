"""``make bench`` section ``learning``: how fast the whole loop finds the best activity.

Each of ``AUDIENCES`` simulated audiences (:func:`audience`, drawn from a seed) has
five activities; the best draws 15-40 % more chat per viewer than the runner-up and
at least as many tips, the others less; tips, cheers and subs vary per activity,
raids come at random, viewers drift, and every 15 minutes all chat rates take a
common random step (a drifting audience whose best activity stays the best). Each
audience gets a four-hour stream, then a second one a day later on the same
channel, with the bandit state carried over.

Every policy faces every audience through the **real code paths**, in lock-step on
event time: the ingest simulator's audience steps 30 s at a time, analytics' own
handler (``apply_events``) writes its Redis state, the orchestrator's
``DecisionLoop.tick`` scores segments (``SegmentScorer``: ``shared/readmodel``
read model, ``shared/rewards``) and decides (``Orchestrator.decide``, no Claude), and
each ``activity_changed`` it publishes switches the simulated audience. Nothing waits
on wall time, so the machine's speed does not change a figure. What is not real: the
ingest HTTP/EventSub front, the Redis Streams consumer groups (events are applied
directly, in order, as the consumer would) and the retro worker around its
end-of-stream pass (the pass itself, a ``SegmentScorer`` with grace 0 on the ended
stream, is run as the retro runs it).

Policies (same audiences, same seeds; only the choice of activity differs):

- ``ours``: the orchestrator as configured by default;
- ``discounted``: ours with ``BANDIT_DISCOUNT`` 0.99 (forgetting), to show what forgetting
  costs where the best activity does not change;
- ``previous``: the design before issue 14 (Beta update of weight 1, a fresh draw
  every 30 s once the 120 s dwell is over, whole segments scored);
- ``uniform``: a uniformly random activity each segment;
- ``epsilon``: epsilon-greedy (10 % random, else the best mean reward so far);
- ``mabwiser``: MABWiser's ``LearningPolicy.ThompsonSampling`` fed the same rewards
  (it takes only 0/1 rewards: each reward r in [0, 1] becomes a Bernoulli(r) outcome,
  the standard reduction of Agrawal and Goyal).

The three baselines use ours's segment rule and reward path; only ``select`` differs.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from redis.asyncio import Redis

from services.analytics.handler import apply_events
from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import (
    ChannelState,
    closing_event,
    new_state,
    opening_events,
    step,
    switch_activity,
)
from services.ingest.sources.scenario import Scenario, default_scenario
from services.orchestrator.app import build_loop
from services.orchestrator.claude import ClaudeAdvisor
from services.orchestrator.loop import DecisionLoop
from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import ThompsonBandit, bandit_factory
from shared.events import ActivityChangedEvent, EventBase, parse_fields
from shared.redis_client import connect
from shared.redis_server import RedisServer
from shared.rewards import Scored, SegmentScorer

AUDIENCES = 20
HOURS = 4
TICK_S = 30
SEED = 20_261_205
CHANNEL = "bench"
DRIFT_EVERY_S = 900
EPSILON = 0.1
POLICIES = ("ours", "discounted", "previous", "uniform", "epsilon", "mabwiser")
DISCOUNTED: dict[str, Any] = {"bandit_discount": 0.99}
PREVIOUS: dict[str, Any] = {
    "min_segment_s": 120.0,
    "bandit_reward_sd": 0.5,
    "commit_segments": False,
    "score_chunks": False,
    "reward_revenue_prior_s": 0.0,
}
PLOT = Path(__file__).resolve().parent.parent / "docs" / "learning-share.png"
START = "2026-12-05T18:00:00Z"


@dataclass(frozen=True)
class Audience:
    """One simulated audience: its scenario and which activity is truly best."""

    seed: int
    scenario: Scenario
    best: str
    gap: float


def audience(seed: int) -> Audience:
    """A random five-activity audience (see module doc); the best is ``gap`` ahead in chat."""
    rng = np.random.default_rng([SEED, seed])
    base = default_scenario()
    names = list(base.activities)
    order = rng.permutation(names)
    best, runner_up = str(order[0]), str(order[1])
    gap = float(rng.uniform(0.15, 0.40))
    chat = float(rng.uniform(10, 30))
    tips = float(rng.uniform(0.03, 0.12))
    rates = {best: chat, runner_up: chat / (1 + gap)}
    tip_rates = {best: tips, runner_up: tips / rng.uniform(1.0, 1.5)}
    for name in order[2:]:
        rates[str(name)] = rates[runner_up] * float(rng.uniform(0.6, 0.95))
        tip_rates[str(name)] = tips * float(rng.uniform(0.3, 1.0))
    activities = {}
    for name in names:
        plain = base.activities["talk"]
        activities[name] = plain.model_copy(
            update={
                "chat_msgs_per_min_per_100_viewers": rates[name],
                "donations_per_min_per_100_viewers": tip_rates[name],
                "cheers_per_min_per_100_viewers": float(rng.uniform(0.02, 0.12)),
                "subs_per_min_per_100_viewers": float(rng.uniform(0.01, 0.06)),
                "target_viewers": int(rng.integers(80, 200)),
                "viewer_noise_share_per_min": 0.02,
            }
        )
    scenario = base.model_copy(
        update={
            "activities": activities,
            "initial_activity": str(rng.choice(names)),
            "raids_per_hour": float(rng.uniform(0.2, 1.0)),
        }
    )
    return Audience(seed, scenario, best, gap)


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


def recording(kind: str, rewards: list[tuple[str, float]], seed: int) -> type[ThompsonBandit]:
    """A :class:`ThompsonBandit` whose applied rewards are recorded, choosing as ``kind`` does.

    ``ours``/``previous`` keep the real ``select``; the baselines replace only ``select``
    (the posterior in Redis is still updated, exactly once, by the real script).
    """
    rng = np.random.default_rng([SEED, seed, 7])

    class Recording(ThompsonBandit):
        mab: Any = None

        async def update_once(self, arm: str, reward: float, token: str, ttl_s: int) -> bool:
            applied = await super().update_once(arm, reward, token, ttl_s)
            if applied:
                rewards.append((arm, reward))
                if self.mab is not None:
                    self.mab.partial_fit([arm], [reward])
            return applied

        async def select(self) -> str:
            if kind == "uniform":
                return str(rng.choice(self.arms))
            if kind == "epsilon":
                return await self._epsilon_greedy()
            if kind == "mabwiser":
                return str(self._mabwiser().predict())
            return await super().select()

        async def _epsilon_greedy(self) -> str:
            means: dict[str, list[float]] = {arm: [] for arm in self.arms}
            for arm, reward in rewards:
                means[arm].append(reward)
            untried = [arm for arm, seen in means.items() if not seen]
            if untried or rng.random() < EPSILON:
                return str(rng.choice(untried or list(self.arms)))
            return max(self.arms, key=lambda arm: float(np.mean(means[arm])))

        def _mabwiser(self) -> Any:
            if self.mab is None:
                from mabwiser.mab import MAB, LearningPolicy

                flip = np.random.default_rng([SEED, seed, 11])
                policy = LearningPolicy.ThompsonSampling(
                    binarizer=lambda _arm, reward: bool(flip.random() < reward)
                )
                self.mab = MAB(list(self.arms), policy, seed=seed)
                self.mab.fit(np.empty(0, dtype=object), np.empty(0, dtype=np.float64))
            return self.mab

    return Recording


def policy_settings(policy: str, redis_url: str, state_path: str) -> OrchestratorSettings:
    """The orchestrator's settings for ``policy``: defaults, or the previous design's."""
    overrides = {"previous": PREVIOUS, "discounted": DISCOUNTED}.get(policy, {})
    fields = set(OrchestratorSettings.model_fields)
    return OrchestratorSettings(
        _env_file=None,
        redis_url=redis_url,
        redis_key_prefix=f"{policy}:",
        channels=[CHANNEL],
        bandit_state_path=state_path,
        **{name: value for name, value in overrides.items() if name in fields},
    )


def build(policy: str, redis: Redis, settings: OrchestratorSettings, run: Run) -> DecisionLoop:
    """The real decision loop, its bandits replaced by the recording subclass for ``policy``."""
    advisor = ClaudeAdvisor(
        api_key="", model="m", activities=settings.activities, timeout_s=1, max_retries=0
    )
    loop = build_loop(redis, settings, advisor, rng=np.random.default_rng([SEED, run.seed, 1]))
    kind = "ours" if policy in ("previous", "discounted") else policy
    cls = recording(kind, run.rewards, run.seed)
    bandits = bandit_factory(redis, settings, np.random.default_rng([SEED, run.seed, 1]), cls)
    loop.orchestrator.bandits = bandits
    assert loop.scorer is not None
    loop.scorer.bandits = bandits
    return loop


async def one_stream(
    loop: DecisionLoop, redis: Redis, settings: OrchestratorSettings, sim: ChannelState,
    rng: np.random.Generator, hours: float, seen: str, scored: list[Scored],
) -> tuple[list[str], str]:  # fmt: skip
    """One stream of ``hours`` in lock-step: the activity on air each tick, last lifecycle id."""
    keys = settings.keys
    await apply_events(redis, keys, opening_events(sim))
    on_air: list[str] = []
    base = sim.scenario
    factor = 1.0
    for tick in range(int(hours * 3600 / TICK_S)):
        if tick and tick * TICK_S % DRIFT_EVERY_S == 0:
            factor *= float(np.exp(rng.normal(0, 0.08)))
            sim.scenario = drifted(base, factor)
            sim.behaviour = sim.scenario.activities[sim.activity]
        on_air.append(sim.activity)
        events = step(sim, rng, TICK_S)
        await apply_events(redis, keys, events)
        await loop.tick(CHANNEL)
        seen, changes = await new_lifecycle(redis, settings, seen)
        await apply_events(redis, keys, changes)
        for change in changes:
            if isinstance(change, ActivityChangedEvent):
                switch_activity(sim, change.activity)
    await apply_events(redis, keys, [closing_event(sim)])
    await loop.tick(CHANNEL)
    assert loop.scorer is not None
    retro = SegmentScorer(
        redis, keys, loop.scorer.bandits, min_segment_s=settings.min_segment_s, grace_s=0,
        state_path=settings.bandit_state_path, chunks=settings.score_chunks,
        revenue_prior_s=settings.reward_revenue_prior_s,
    )  # fmt: skip
    await retro.score_ready(CHANNEL, sim.stream_id)
    scored.extend(retro.recent)
    return on_air, seen


def drifted(scenario: Scenario, factor: float) -> Scenario:
    """``scenario`` with every activity's chat rate multiplied by ``factor``."""
    activities = {
        name: b.model_copy(
            update={
                "chat_msgs_per_min_per_100_viewers": b.chat_msgs_per_min_per_100_viewers * factor
            }
        )
        for name, b in scenario.activities.items()
    }
    return scenario.model_copy(update={"activities": activities})


async def new_lifecycle(
    redis: Redis, settings: OrchestratorSettings, after: str
) -> tuple[str, list[EventBase]]:
    """Entries of ``events:lifecycle`` after id ``after`` (parsed), and the last id read."""
    stream = settings.keys.stream("lifecycle")
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(  # type: ignore[assignment]
        stream, min=f"({after}" if after else "-"
    )
    last = entries[-1][0] if entries else after
    return last, [parse_fields(fields) for _, fields in entries]


async def run_policy(policy: str, seed: int, redis_url: str, hours: float) -> Run:
    """Two streams of ``hours`` of audience ``seed`` under ``policy``, on a clean key prefix."""
    from datetime import datetime

    crowd = audience(seed)
    redis = connect(redis_url)
    with tempfile.TemporaryDirectory() as folder:
        settings = policy_settings(policy, redis_url, os.path.join(folder, "bandit.json"))
        run = Run(policy, seed, [], [], best=crowd.best)
        loop = build(policy, redis, settings, run)
        ingest = IngestSettings(_env_file=None)
        start = datetime.fromisoformat(START)
        seen = ""
        for day in range(2):
            rng = np.random.default_rng([SEED, seed, day])
            sim = new_state(crowd.scenario, ingest, CHANNEL, start + timedelta(days=day), rng)
            on_air, seen = await one_stream(loop, redis, settings, sim, rng, hours, seen, run.parts)
            run.on_air += on_air
        assert loop.scorer is not None
        run.parts.extend(loop.scorer.recent)
    await redis.flushdb()
    await redis.aclose()
    per_hour = int(3600 / TICK_S)
    best = [activity == crowd.best for activity in run.on_air]
    run.share_by_hour = [
        float(np.mean(best[i : i + per_hour])) for i in range(0, len(best), per_hour)
    ]
    return run


def run_batch(jobs: Sequence[tuple[str, int]], hours: float) -> list[Run]:
    """Run ``jobs`` (policy, seed) one after another on one private ``redis-server``."""
    server = RedisServer()
    server.start()
    try:
        return [asyncio.run(run_policy(policy, seed, server.url, hours)) for policy, seed in jobs]
    finally:
        server.close()


def run_all(audiences: int, hours: float, workers: int) -> list[Run]:
    """Every policy on every audience, spread over ``workers`` processes."""
    jobs = [(policy, seed) for seed in range(audiences) for policy in POLICIES]
    if workers <= 1:
        return run_batch(jobs, hours)
    batches = [jobs[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        done = pool.map(run_batch, batches, [hours] * workers)
        return [run for batch in done for run in batch]


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


def bench_learning(
    audiences: int = AUDIENCES, hours: float = HOURS, workers: int = 2, draw: bool = True
) -> str:
    """Run every policy on ``audiences`` audiences; the Markdown section."""
    runs = run_all(audiences, hours, workers)
    if draw:
        plot(runs)
    lines = [
        f"{audiences} random audiences x {len(POLICIES)} policies, each a {hours:g}-hour stream "
        f"and a second one a day later, through the real analytics state, segment scoring, "
        f"bandit and decision code in lock-step on event time (tools/bench_learning.py). "
        f"Share = share of the hour with the best activity on air.",
        "",
        *table(runs, hours),
        "",
        *noise(runs),
        "",
        goals(runs, hours),
    ]
    return "\n".join(lines)


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
