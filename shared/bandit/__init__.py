"""Beta-Bernoulli Thompson sampling over the stream's activities, state in Redis.

Each arm (an activity such as ``talk``) has a Beta(alpha, beta) posterior over
its expected reward. A reward is a number in [0, 1] (the orchestrator's score of
one chunk; 0 and 1 are the Bernoulli case): it adds ``w r`` to alpha and
``w (1 - r)`` to beta, so one update always adds exactly ``w`` to ``alpha + beta``.
``w`` (:func:`evidence_weight`, from ``BANDIT_REWARD_SD``) makes the posterior as wide
as a Gaussian mean's with the reward's measured noise; ``w = 1`` is the plain update.
Choosing draws one sample per arm and takes the largest
(Thompson sampling); ties, which only occur when samples round to 0 or 1, are
broken at random.

With a discount gamma < 1 ("discounted Thompson sampling"), every update first
pulls every arm's alpha and beta toward the prior, ``x <- prior + gamma * (x -
prior)``, so evidence that is ``n`` updates old weighs ``gamma ** n``: about
``1 / (1 - gamma)`` recent updates dominate, and the bandit follows an audience
whose tastes change. gamma = 1 keeps all evidence.

The maths lives in pure numpy functions (:func:`sample_arm`,
:func:`posterior_update`) that work on any number of leading axes, so
``tools/bench_bandit.py`` runs 100 simulated bandits at once through the same
code. :class:`ThompsonBandit` keeps the state of one channel in the Redis hash
``bandit:{channel}`` and applies updates with one Lua script, which performs
exactly :func:`posterior_update`'s floating-point operations (the tests check
they agree bit for bit). The JSON backup (``BANDIT_STATE_PATH``,
``data/bandit_state.json``) keeps one file per channel
(``data/bandit_state/{channel}.json``); see ``docs/bandit.md``.

Modules: :mod:`~shared.bandit.posterior` (the maths), :mod:`~shared.bandit.state`
(arm state and the backup's models), :mod:`~shared.bandit.store` (the Redis
hash, its Lua scripts and :class:`ThompsonBandit`), :mod:`~shared.bandit.backup`
(the JSON files). Import from ``shared.bandit``.
"""

from shared.bandit.backup import (
    DEFAULT_STATE_PATH,
    channel_path,
    read_channel,
    read_state,
    write_channel,
)
from shared.bandit.posterior import (
    Estimate,
    argmax_random_ties,
    check_reward,
    decay,
    evidence_weight,
    posterior_update,
    sample_arm,
)
from shared.bandit.state import (
    ArmSnapshot,
    ArmState,
    BanditStateError,
    ChannelSnapshot,
    Priors,
    StateFile,
)
from shared.bandit.store import (
    DEFAULT_ARMS,
    ThompsonBandit,
    bandit_factory,
    stored_arms,
    validate_arms,
)

__all__ = [
    "DEFAULT_ARMS",
    "DEFAULT_STATE_PATH",
    "ArmSnapshot",
    "ArmState",
    "BanditStateError",
    "ChannelSnapshot",
    "Estimate",
    "Priors",
    "StateFile",
    "ThompsonBandit",
    "argmax_random_ties",
    "bandit_factory",
    "channel_path",
    "check_reward",
    "decay",
    "evidence_weight",
    "posterior_update",
    "read_channel",
    "read_state",
    "sample_arm",
    "stored_arms",
    "validate_arms",
    "write_channel",
]
