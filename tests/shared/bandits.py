"""What the bandit tests share: the arms, a factory of bandits on the test Redis, feeding one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from redis.asyncio import Redis

from shared.bandit import DEFAULT_ARMS, ThompsonBandit
from shared.keys import Keys

ARMS = list(DEFAULT_ARMS)
Factory = Callable[..., ThompsonBandit]


def bandit_factory(redis: Redis, keys: Keys) -> Factory:
    """Bandits on ``redis`` (channel ``demo`` unless told), seeded rng by default."""

    def build(channel: str = "demo", client: Redis | None = None, **options: Any) -> ThompsonBandit:
        options.setdefault("rng", np.random.default_rng(0))
        return ThompsonBandit(client or redis, keys, channel, ARMS, **options)

    return build


async def give(bandit: ThompsonBandit, arm: str, rewards: list[float]) -> None:
    """Apply ``rewards`` to ``arm``, one update each."""
    for reward in rewards:
        await bandit.update(arm, reward)
