"""Orchestrator killed holding the lease, a segment half-scored: no bandit update lost or doubled.

A recorded two-hour stream with twelve activity segments is applied to
analytics' state. A real orchestrator replica takes the channel's lease and
starts scoring the ended segments; it is killed (SIGKILL) after its reward for
one segment is computed and before it is applied (``tests.chaos.crash_orchestrator``).
A second replica takes the lease over when it expires and scores the rest. The
bandit must end equal, arm by arm (alpha, beta, update count, rewards by
segment), to one uninterrupted scoring pass over the same state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from services.orchestrator.settings import OrchestratorSettings
from shared.bandit import ThompsonBandit, evidence_weight
from shared.keys import Keys
from shared.rewards import SegmentScorer
from tests.analytics.recorded import ACTIVITIES, recorded_stream
from tests.chaos.processes import start
from tests.chaos.reliability import record
from tests.orchestrator.driver import apply

CRASH_AFTER_UPDATES = [0, 5]
"""Updates applied before the kill: none (the first segment half-scored), and five."""
MIN_SEGMENT_S = 60
LEASE_TTL_MS = 1500

pytestmark = pytest.mark.slow


DEFAULTS = OrchestratorSettings(_env_file=None)  # what the replicas run with


def bandit(redis: Redis, keys: Keys) -> ThompsonBandit:
    weight = evidence_weight(DEFAULTS.bandit_reward_sd)
    return ThompsonBandit(redis, keys, "demo", list(ACTIVITIES), weight=weight)


async def bandit_state(redis: Redis, keys: Keys) -> tuple[object, object]:
    """Every arm's posterior and update count, and the reward recorded per segment."""
    return await bandit(redis, keys).state(), await redis.hgetall(keys.bandit_rewards("demo"))


async def uninterrupted(redis: Redis, tmp_path: Path) -> tuple[object, object]:
    """The bandit after one uninterrupted scoring pass over the same stream (own prefix)."""
    keys = Keys(f"test:ref:{uuid.uuid4().hex[:8]}:")
    try:
        await apply(redis, keys, recorded_stream(120))
        scorer = SegmentScorer(
            redis,
            keys,
            lambda _channel: bandit(redis, keys),
            min_segment_s=MIN_SEGMENT_S,
            grace_s=0,
            state_path=str(tmp_path / "reference.json"),
            chunks=DEFAULTS.score_chunks,
            revenue_prior_s=DEFAULTS.reward_revenue_prior_s,
        )
        assert await scorer.score_ready("demo") > 0
        return await bandit_state(redis, keys)
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{keys.prefix}*")])


def replica_env(redis_url: str, prefix: str, replica: str, tmp_path: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CHANNELS": "demo",
        "REPLICA_ID": replica,
        "MIN_SEGMENT_S": str(MIN_SEGMENT_S),
        "REWARD_GRACE_S": "0",
        "LOOP_INTERVAL_S": "0.05",
        "LEASE_TTL_MS": str(LEASE_TTL_MS),
        "ANTHROPIC_API_KEY": "",
        "BANDIT_STATE_PATH": str(tmp_path / f"{replica}.json"),
    }


async def updates(redis: Redis, keys: Keys) -> int:
    return sum(arm.updates for arm in (await bandit(redis, keys).state()).values())


@pytest.mark.parametrize("crash_after", CRASH_AFTER_UPDATES)
async def test_a_replica_killed_mid_scoring_loses_and_doubles_no_update(
    crash_after: int, redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    expected = await uninterrupted(redis, tmp_path)
    keys = Keys(key_prefix)
    await apply(redis, keys, recorded_stream(120))
    env = replica_env(redis_url, key_prefix, "crashy", tmp_path)
    env["CRASH_AFTER_UPDATES"] = str(crash_after)
    crashy = start("orchestrator", env, tmp_path / "logs", module="tests.chaos.crash_orchestrator")
    await asyncio.to_thread(crashy.process.wait, 30)
    assert crashy.process.returncode == -9, crashy.output()[-3000:]
    assert await redis.get(keys.orchestrator_lease("demo")) == "crashy", "died holding the lease"
    assert await updates(redis, keys) == crash_after

    began = time.monotonic()
    survivor = start("orchestrator", replica_env(redis_url, key_prefix, "ok", tmp_path), tmp_path)
    try:
        total = sum(arm.updates for arm in expected[0].values())  # type: ignore[attr-defined]
        async with asyncio.timeout(30):
            while await updates(redis, keys) < total:
                await asyncio.sleep(0.05)
        took_over_s = time.monotonic() - began
        await asyncio.sleep(1.0)  # time enough for a second scoring of anything
        final = await updates(redis, keys)
        assert await bandit_state(redis, keys) == expected
    finally:
        assert survivor.stop() == 0, survivor.output()[-3000:]
    record(
        f"crash-orchestrator-{crash_after}",
        f"orchestrator SIGKILL holding the lease, segment {crash_after + 1} half-scored",
        1,
        "bandit equal arm by arm to an uninterrupted pass",
        updates=total,
        lost=max(0, total - final),
        doubled=max(0, final - total),
        lease_taken_over_and_scored_s=round(took_over_s, 2),
    )
