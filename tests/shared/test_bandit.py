"""The Thompson-sampling bandit on a real Redis: choice, updates, concurrency, files, learning."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from shared.bandit import (
    DEFAULT_ARMS,
    ArmState,
    Estimate,
    ThompsonBandit,
    argmax_random_ties,
    evidence_weight,
    posterior_update,
)
from shared.keys import Keys
from shared.redis_client import connect

ARMS = list(DEFAULT_ARMS)
Factory = Callable[..., ThompsonBandit]


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def make_bandit(redis: Redis, keys: Keys) -> Factory:
    """A bandit on the test Redis (channel ``demo`` unless told), seeded rng by default."""

    def build(channel: str = "demo", client: Redis | None = None, **options: Any) -> ThompsonBandit:
        options.setdefault("rng", np.random.default_rng(0))
        return ThompsonBandit(client or redis, keys, channel, ARMS, **options)

    return build


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[Redis]]:
    """Three separate clients, as three orchestrator replicas would have."""
    clients = [connect(redis_url) for _ in range(3)]
    yield clients
    for client in clients:
        await client.aclose()


async def give(bandit: ThompsonBandit, arm: str, rewards: list[float]) -> None:
    for reward in rewards:
        await bandit.update(arm, reward)


# --- choosing --------------------------------------------------------------------------------


async def test_select_picks_the_arm_with_strong_evidence_almost_always(
    make_bandit: Factory,
) -> None:
    bandit = make_bandit()
    await give(bandit, "music", [1.0] * 90 + [0.0] * 10)
    for arm in ARMS[:-1]:
        await give(bandit, arm, [1.0] * 10 + [0.0] * 90)
    picks = Counter([await bandit.select() for _ in range(500)])
    assert picks["music"] >= 495, picks


async def test_fresh_bandit_explores_every_arm(make_bandit: Factory) -> None:
    bandit = make_bandit()
    picks = Counter([await bandit.select() for _ in range(500)])
    assert set(picks) == set(ARMS)
    assert min(picks.values()) > 50, picks  # uniform: 100 each


async def test_draws_are_reproducible_with_a_seeded_rng(make_bandit: Factory) -> None:
    await make_bandit().update("talk", 0.5)
    one, two = make_bandit(rng=np.random.default_rng(7)), make_bandit(rng=np.random.default_rng(7))
    other = make_bandit(rng=np.random.default_rng(8))
    run_one = [await one.select() for _ in range(40)]
    assert run_one == [await two.select() for _ in range(40)]
    assert run_one != [await other.select() for _ in range(40)]


def test_ties_are_broken_at_random_among_the_best_only() -> None:
    rng = np.random.default_rng(1)
    values = np.array([1.0, 3.0, 3.0, 0.0])
    chosen = Counter(int(argmax_random_ties(values, rng)) for _ in range(1000))
    assert set(chosen) == {1, 2}
    assert 400 < chosen[1] < 600


# --- updating --------------------------------------------------------------------------------


async def test_update_arithmetic_is_exact(make_bandit: Factory) -> None:
    bandit = make_bandit(prior_alpha=2.0, prior_beta=3.0)
    await give(bandit, "talk", [1.0, 0.0, 0.25, 0.5])
    await bandit.update("music", 0.75)
    state = await bandit.state()
    assert state["talk"] == ArmState(alpha=2.0 + 1.75, beta=3.0 + 2.25, updates=4)
    assert state["music"] == ArmState(alpha=2.75, beta=3.25, updates=1)
    assert state["react"] == ArmState(alpha=2.0, beta=3.0, updates=0)
    assert state["talk"].mean == pytest.approx(3.75 / 9.0)


async def test_invalid_rewards_and_unknown_arms_are_refused(
    make_bandit: Factory, redis: Redis, keys: Keys
) -> None:
    bandit = make_bandit()
    for reward in (-0.01, 1.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reward"):
            await bandit.update("talk", reward)
    with pytest.raises(ValueError, match="unknown arm"):
        await bandit.update("juggling", 1.0)
    with pytest.raises(ValueError, match="unknown arm"):
        await bandit.update_once("juggling", 1.0, "seg-1", 60)
    assert not await redis.exists(keys.bandit("demo"), keys.bandit_applied("demo", "seg-1"))


def test_bad_settings_are_refused(make_bandit: Factory) -> None:
    with pytest.raises(ValueError, match="discount"):
        make_bandit(discount=0.0)
    with pytest.raises(ValueError, match="discount"):
        make_bandit(discount=1.5)
    with pytest.raises(ValueError, match="prior_alpha"):
        make_bandit(prior_alpha=0.0)
    with pytest.raises(ValueError, match="arm names"):
        ThompsonBandit(None, Keys(), "demo", ["talk", "Bad:Name"])  # type: ignore[arg-type]


async def test_three_replicas_applying_1000_updates_each_lose_none(
    make_bandit: Factory, replicas: list[Redis]
) -> None:
    bandits = [make_bandit(client=client) for client in replicas]
    rewards = [(n % 5) / 4 for n in range(1000)]  # 0, .25, .5, .75, 1: exact in binary

    async def replica(bandit: ThompsonBandit, offset: int) -> None:
        for n, reward in enumerate(rewards):
            await bandit.update(ARMS[(n + offset) % len(ARMS)], reward)

    await asyncio.gather(*(replica(bandit, offset) for offset, bandit in enumerate(bandits)))
    state = await bandits[0].state()
    assert sum(s.alpha for s in state.values()) == len(ARMS) + 3 * sum(rewards)
    assert sum(s.beta for s in state.values()) == len(ARMS) + 3 * sum(1 - r for r in rewards)
    assert sum(s.updates for s in state.values()) == 3000
    assert all(s.updates == 600 for s in state.values())


# --- exactly once ----------------------------------------------------------------------------


async def test_update_once_applies_once_under_three_concurrent_callers(
    make_bandit: Factory, replicas: list[Redis], redis: Redis, keys: Keys
) -> None:
    bandits = [make_bandit(client=client) for client in replicas]
    for round_ in range(20):
        token = f"seg-{round_}"
        applied = await asyncio.gather(*(b.update_once("talk", 1.0, token, 600) for b in bandits))
        assert sorted(applied) == [False, False, True]
        assert 0 < await redis.ttl(keys.bandit_applied("demo", token)) <= 600
    assert (await bandits[0].state())["talk"] == ArmState(alpha=21.0, beta=1.0, updates=20)


async def test_update_once_ignores_retries_but_not_new_tokens(make_bandit: Factory) -> None:
    bandit = make_bandit()
    assert await bandit.update_once("react", 0.5, "seg-a", 60)
    for _ in range(5):
        assert not await bandit.update_once("react", 0.5, "seg-a", 60)
        assert not await bandit.update_once("music", 1.0, "seg-a", 60)  # token used: any arm
    assert await bandit.update_once("react", 0.5, "seg-b", 60)
    state = await bandit.state()
    assert state["react"] == ArmState(alpha=2.0, beta=2.0, updates=2)
    assert state["music"] == ArmState(alpha=1.0, beta=1.0, updates=0)


# --- discount --------------------------------------------------------------------------------


async def test_discount_decays_every_arm_toward_the_prior(make_bandit: Factory) -> None:
    bandit = make_bandit(prior_alpha=1.0, prior_beta=2.0, discount=0.5)
    await bandit.update("talk", 1.0)  # talk: (2, 2)
    await bandit.update("music", 0.0)  # talk (1.5, 2); music (1, 3)
    await bandit.update("talk", 0.5)  # talk (1.25 + .5, 2 + .5); music (1, 2.5)
    state = await bandit.state()
    assert (state["talk"].alpha, state["talk"].beta) == (1.75, 2.5)
    assert (state["music"].alpha, state["music"].beta) == (1.0, 2.5)
    assert (state["react"].alpha, state["react"].beta) == (1.0, 2.0)


async def test_old_evidence_fades_geometrically(make_bandit: Factory) -> None:
    gamma = 0.9
    bandit = make_bandit(discount=gamma)
    await give(bandit, "talk", [1.0] * 10)
    await give(bandit, "music", [0.0] * 20)  # talk gets no reward, only decay
    talk = (await bandit.state())["talk"]
    expected = 1.0 + gamma**20 * sum(gamma**n for n in range(10))
    assert talk.alpha == pytest.approx(expected, rel=1e-12)
    assert talk.beta == 1.0
    music = (await bandit.state())["music"]
    assert music.beta == pytest.approx(1.0 + sum(gamma**n for n in range(20)), rel=1e-12)


@pytest.mark.parametrize("weight", [1.0, 14.79])
async def test_redis_script_matches_the_pure_update_bit_for_bit(
    make_bandit: Factory, weight: float
) -> None:
    options = {"prior_alpha": 1.5, "prior_beta": 0.7, "discount": 0.97, "weight": weight}
    bandit = make_bandit(**options)
    rng = np.random.default_rng(3)
    alpha, beta = np.full(len(ARMS), 1.5), np.full(len(ARMS), 0.7)
    for _ in range(200):
        arm, reward = int(rng.integers(len(ARMS))), float(rng.random())
        await bandit.update(ARMS[arm], reward)
        alpha, beta = posterior_update(alpha, beta, arm, reward, **options)
    state = await bandit.state()
    assert [state[arm].alpha for arm in ARMS] == alpha.tolist()
    assert [state[arm].beta for arm in ARMS] == beta.tolist()


# --- learning --------------------------------------------------------------------------------


async def test_learns_the_best_of_simulated_bernoulli_arms(make_bandit: Factory) -> None:
    truth = dict(zip(ARMS, [0.2, 0.3, 0.4, 0.5, 0.6], strict=True))  # music is best
    bandit = make_bandit(rng=np.random.default_rng(11))
    audience = np.random.default_rng(12)
    pulls: Counter[str] = Counter()
    for _ in range(2000):
        arm = await bandit.select()
        pulls[arm] += 1
        await bandit.update(arm, float(audience.random() < truth[arm]))
    ranking = await bandit.ranking()
    assert ranking[0] == "music", (ranking, await bandit.state())
    assert pulls["music"] > 1000, pulls  # uniform play would give ~400
    assert (await bandit.state())["music"].updates == pulls["music"]


# --- evidence weighted by the reward's noise ------------------------------------------------


def test_a_reward_counts_as_a_quarter_over_the_noise_variance_in_pseudo_observations() -> None:
    assert evidence_weight(0.5) == 1.0
    assert evidence_weight(0.1) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="reward_sd"):
        evidence_weight(0.0)


async def test_weighted_rewards_give_a_posterior_as_wide_as_gaussian_noise(
    make_bandit: Factory,
) -> None:
    """n rewards with noise sd s: the posterior sd of the mean is about s / sqrt(n)."""
    sd, n = 0.13, 16
    bandit = make_bandit(weight=evidence_weight(sd))
    rng = np.random.default_rng(5)
    for reward in np.clip(rng.normal(0.6, sd, n), 0, 1):
        await bandit.update("talk", float(reward))
    talk = (await bandit.estimates())["talk"]
    assert talk.n == n
    assert talk.sd == pytest.approx(sd / np.sqrt(n), rel=0.05)
    assert abs(talk.mean - 0.6) < 3 * sd / np.sqrt(n)
    assert (await bandit.estimates())["music"] == Estimate(mean=0.5, sd=np.sqrt(1 / 12), n=0)
