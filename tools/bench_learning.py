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
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
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
from tools.learning_results import POLICIES, Run, goals, noise, plot, table

AUDIENCES = 20
HOURS = 4
TICK_S = 30
SEED = 20_261_205
CHANNEL = "bench"
DRIFT_EVERY_S = 900
EPSILON = 0.1
DISCOUNTED: dict[str, Any] = {"bandit_discount": 0.99}
PREVIOUS: dict[str, Any] = {
    "min_segment_s": 120.0,
    "bandit_reward_sd": 0.5,
    "commit_segments": False,
    "score_chunks": False,
    "reward_revenue_prior_s": 0.0,
}
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
    """Entries of the channel's ``events:{pNN}:lifecycle`` after id ``after`` (parsed), and
    the last id read."""
    stream = settings.keys.channel_stream("lifecycle", CHANNEL)
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
