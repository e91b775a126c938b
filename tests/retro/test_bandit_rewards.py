"""``update_once`` records the reward it applied, in the same script, readable afterwards."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.bandit import ThompsonBandit


async def test_update_once_records_its_reward_once(redis: Redis, make_settings) -> None:
    keys = make_settings().keys
    bandit = ThompsonBandit(redis, keys, "demo", ["talk", "music"])
    assert await bandit.update_once("talk", 0.25, "seg-1", 600)
    # A retry with another reward is refused, and the first reward stays recorded.
    assert not await bandit.update_once("talk", 0.75, "seg-1", 600)
    assert await bandit.update_once("music", 1.0, "seg-2", 600)
    assert await bandit.rewards(["seg-1", "seg-2", "never"]) == {"seg-1": 0.25, "seg-2": 1.0}
    assert await bandit.rewards([]) == {}
    assert 0 < await redis.ttl(keys.bandit_rewards("demo")) <= 600
    # A plain update has no token, so nothing is recorded.
    await bandit.update("talk", 1.0)
    assert await redis.hlen(keys.bandit_rewards("demo")) == 2


async def test_rewards_are_exact_and_applied_once_under_concurrency(
    redis: Redis, make_settings
) -> None:
    keys = make_settings().keys
    bandits = [ThompsonBandit(redis, keys, "demo", ["talk"]) for _ in range(3)]
    reward = 0.1 + 0.2  # not a short decimal: the record must round-trip exactly
    applied = await asyncio.gather(*(b.update_once("talk", reward, "seg", 60) for b in bandits))
    assert sorted(applied) == [False, False, True]
    assert (await bandits[0].rewards(["seg"]))["seg"] == reward
    assert (await bandits[0].state())["talk"].alpha == 1 + reward
