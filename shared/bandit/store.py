"""The Redis-backed bandit: one channel's posteriors in the hash ``bandit:{channel}``.

:class:`ThompsonBandit` chooses by reading the hash and applies every update
with one atomic Lua script (:data:`UPDATE_SCRIPT`), so any number of replicas
may share a channel; :data:`RESTORE_SCRIPT` seeds or overwrites it from the
JSON backup (:mod:`shared.bandit.backup`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from redis.asyncio import Redis

from shared.bandit.backup import DEFAULT_STATE_PATH, backup_exists, read_channel, write_channel
from shared.bandit.posterior import (
    Estimate,
    FloatArray,
    check_reward,
    evidence_weight,
    positive,
    sample_arm,
)
from shared.bandit.state import ArmSnapshot, ArmState, BanditStateError, ChannelSnapshot, Priors
from shared.clock import format_ts, utc_now
from shared.keys import Keys
from shared.settings import BanditSettings

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

DEFAULT_ARMS: tuple[str, ...] = ("talk", "q_and_a", "gameplay", "react", "music")
ARM_NAME = re.compile(r"[a-z0-9_]{1,64}")
TOTAL_UPDATES = "updates"

UPDATE_SCRIPT = """
-- KEYS[1] state hash; KEYS[2], KEYS[3] (update_once only) the token's applied marker
-- and the channel's rewards hash (token -> reward)
-- ARGV: arm, reward, prior_alpha, prior_beta, discount, weight, [marker TTL s, token]
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[7]) then
  return 0
end
local arm, reward = ARGV[1], tonumber(ARGV[2])
local prior_a, prior_b, gamma = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local weight = tonumber(ARGV[6])
local function fmt(x) return string.format('%.17g', x) end
if gamma < 1 then
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    local field, x = flat[i], tonumber(flat[i + 1])
    if string.sub(field, -6) == ':alpha' then
      redis.call('HSET', KEYS[1], field, fmt(prior_a + gamma * (x - prior_a)))
    elseif string.sub(field, -5) == ':beta' then
      redis.call('HSET', KEYS[1], field, fmt(prior_b + gamma * (x - prior_b)))
    end
  end
end
local a = tonumber(redis.call('HGET', KEYS[1], arm .. ':alpha') or ARGV[3])
local b = tonumber(redis.call('HGET', KEYS[1], arm .. ':beta') or ARGV[4])
redis.call('HSET', KEYS[1], arm .. ':alpha', fmt(a + weight * reward),
  arm .. ':beta', fmt(b + weight * (1 - reward)))
redis.call('HINCRBY', KEYS[1], arm .. ':updates', 1)
redis.call('HINCRBY', KEYS[1], 'updates', 1)
if KEYS[3] then
  redis.call('HSET', KEYS[3], ARGV[8], fmt(reward))
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
return 1
"""

RESTORE_SCRIPT = """
-- KEYS[1] state hash; ARGV[1] 'seed' (only into an absent hash) or 'overwrite';
-- ARGV[2..] field, value, ...
if ARGV[1] == 'seed' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
end
return 1
"""


class ThompsonBandit:
    """Thompson sampling for one channel, its posteriors in the hash ``bandit:{channel}``.

    Any number of replicas may share a channel: choosing only reads, and every
    update is one atomic Lua script. Arms absent from Redis count at the prior.
    ``discount`` is gamma in (0, 1] (see the module doc); ``rng`` makes the draws
    reproducible (a fresh unseeded generator by default).
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        channel: str,
        arms: Sequence[str] = DEFAULT_ARMS,
        *,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        discount: float = 1.0,
        weight: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.arms: tuple[str, ...] = validate_arms(arms)
        self.weight = positive("weight", weight)
        self.prior_alpha = positive("prior_alpha", prior_alpha)
        self.prior_beta = positive("prior_beta", prior_beta)
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        self.discount = float(discount)
        self.channel = channel
        self._redis = redis
        self._keys = keys
        self._key = keys.bandit(channel)
        self._rng = rng if rng is not None else np.random.default_rng()
        self._update = redis.register_script(UPDATE_SCRIPT)
        self._restore = redis.register_script(RESTORE_SCRIPT)

    async def select(self) -> str:
        """The arm to play next: one posterior draw per arm, the largest wins."""
        alpha, beta = await self._posteriors()
        return self.arms[int(sample_arm(alpha, beta, self._rng))]

    async def update(self, arm: str, reward: float) -> None:
        """Apply ``reward`` (in [0, 1]) to ``arm``, with the discount, in one atomic step.

        ValueError for an unknown arm or a reward outside [0, 1].
        """
        await self._update(keys=[self._key], args=self._update_args(arm, reward))

    async def update_once(self, arm: str, reward: float, token: str, ttl_s: int) -> bool:
        """:meth:`update`, unless ``token`` was already used for this channel.

        The marker ``bandit:{channel}:applied:{token}`` (SET NX, expiring after
        ``ttl_s`` seconds) and the update are one script, so retries and
        concurrent callers apply a token exactly once while its marker lives.
        The same script records the reward in ``bandit:{channel}:rewards`` (token ->
        reward, see :meth:`rewards`; the hash expires ``ttl_s`` after its last write).
        Returns whether this call applied it.
        """
        if not token:
            raise ValueError("token must not be empty")
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {ttl_s!r}")
        marker = self._keys.bandit_applied(self.channel, token)
        rewards = self._keys.bandit_rewards(self.channel)
        args = [*self._update_args(arm, reward), int(ttl_s), token]
        return bool(await self._update(keys=[self._key, marker, rewards], args=args))

    async def rewards(self, tokens: Sequence[str]) -> dict[str, float]:
        """The rewards :meth:`update_once` applied with ``tokens`` (tokens never applied, or
        applied before rewards were recorded, are absent)."""
        if not tokens:
            return {}
        values = await self._redis.hmget(self._keys.bandit_rewards(self.channel), list(tokens))
        return {token: float(value) for token, value in zip(tokens, values, strict=True) if value}

    async def state(self) -> dict[str, ArmState]:
        """Every configured arm's posterior, in arm order (arms absent from Redis at the prior)."""
        raw = await self._redis.hgetall(self._key)
        fields = {as_text(name): as_text(value) for name, value in raw.items()}
        return {arm: self._arm_state(fields, arm) for arm in self.arms}

    async def estimates(self) -> dict[str, Estimate]:
        """Per arm, in arm order: the posterior mean reward, its standard deviation, and the
        number of rewards (chunks) applied; for context summaries, the dashboard and reports."""
        return {arm: state.estimate() for arm, state in (await self.state()).items()}

    async def ranking(self) -> list[str]:
        """Arms by posterior mean, best first (equal means keep the configured order)."""
        states = await self.state()
        return sorted(self.arms, key=lambda arm: -states[arm].mean)

    async def save(self, path: PathLike = DEFAULT_STATE_PATH) -> None:
        """Write this channel's state to its own file in the backup at ``path``.

        ``data/bandit_state.json`` saves ``demo`` to ``data/bandit_state/demo.json``
        (:mod:`shared.bandit.backup`); no other channel's file is touched. The folder
        is created; the file is replaced atomically (temp file + rename). A corrupt
        existing file is moved aside to ``<file>.corrupt`` (logged) rather than
        blocking the save.
        """
        snapshot = await self.snapshot()
        await asyncio.to_thread(write_channel, Path(path), self.channel, snapshot)

    async def snapshot(self) -> ChannelSnapshot:
        """This channel's state as it would be saved (``saved_at`` is now)."""
        arms = {
            arm: ArmSnapshot(alpha=state.alpha, beta=state.beta, updates=state.updates)
            for arm, state in (await self.state()).items()
        }
        return ChannelSnapshot(
            arms=arms,
            priors=Priors(alpha=self.prior_alpha, beta=self.prior_beta),
            discount=self.discount,
            weight=self.weight,
            saved_at=format_ts(utc_now()),
        )

    @classmethod
    async def load(
        cls,
        path: PathLike,
        redis: Redis,
        keys: Keys,
        channel: str,
        arms: Sequence[str] = DEFAULT_ARMS,
        **options: Any,
    ) -> Self:
        """A bandit whose Redis state is replaced by the channel's state in the file.

        Configured arms the file lacks go back to the prior; arms in the file that
        are not configured are skipped. ``options`` go to the constructor. Raises
        :class:`BanditStateError` (Redis untouched) when the file is missing,
        corrupt, or has no entry for ``channel``.
        """
        bandit = cls(redis, keys, channel, arms, **options)
        if not await asyncio.to_thread(backup_exists, Path(path)):
            raise BanditStateError(f"{path}: cannot read the bandit state: no such backup")
        entry = await asyncio.to_thread(read_channel, Path(path), channel)
        if entry is None:
            raise BanditStateError(f"{path}: no bandit state for channel {channel!r}")
        await bandit._write(entry, mode="overwrite")
        return bandit

    async def seed_if_empty(self, path: PathLike = DEFAULT_STATE_PATH) -> bool:
        """Seed the channel from the file if Redis has no state for it; returns whether it did.

        Atomic: only an absent hash is written. A missing file, or one without
        this channel, gives False; a corrupt one raises :class:`BanditStateError`.
        Redis is untouched in all those cases.
        """
        entry = await asyncio.to_thread(read_channel, Path(path), self.channel)
        if entry is None:
            return False
        return await self._write(entry, mode="seed")

    async def _write(self, entry: ChannelSnapshot, *, mode: str) -> bool:
        """Write ``entry``'s arms into the hash (``seed``: only if absent; ``overwrite``)."""
        self._warn_mismatch(entry)
        fields = list(restore_fields(entry, self.arms))
        applied = await self._restore(keys=[self._key], args=[mode, *fields])
        return bool(applied)

    def _warn_mismatch(self, entry: ChannelSnapshot) -> None:
        """Log saved arms that are not configured, and a prior that differs from ours."""
        skipped = sorted(set(entry.arms) - set(self.arms))
        if skipped:
            log.warning("%s: saved arms %s are not configured; skipped", self.channel, skipped)
        if entry.priors != Priors(alpha=self.prior_alpha, beta=self.prior_beta):
            log.warning(
                "%s: state saved with prior Beta(%s, %s), now Beta(%s, %s)",
                self.channel,
                entry.priors.alpha,
                entry.priors.beta,
                self.prior_alpha,
                self.prior_beta,
            )

    async def _posteriors(self) -> tuple[FloatArray, FloatArray]:
        """alpha and beta of every configured arm, the prior where Redis has none."""
        names = [f"{arm}:{side}" for arm in self.arms for side in ("alpha", "beta")]
        values = await self._redis.hmget(self._key, names)
        priors = [self.prior_alpha, self.prior_beta] * len(self.arms)
        found = [
            prior if value is None else float(value)
            for value, prior in zip(values, priors, strict=True)
        ]
        pairs = np.array(found).reshape(len(self.arms), 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    def _arm_state(self, fields: Mapping[str, str], arm: str) -> ArmState:
        return ArmState(
            alpha=float(fields.get(f"{arm}:alpha", self.prior_alpha)),
            beta=float(fields.get(f"{arm}:beta", self.prior_beta)),
            updates=int(fields.get(f"{arm}:updates", 0)),
        )

    def _update_args(self, arm: str, reward: float) -> list[str | float]:
        if arm not in self.arms:
            raise ValueError(f"unknown arm {arm!r}; arms are {', '.join(self.arms)}")
        return [
            arm, check_reward(reward), self.prior_alpha, self.prior_beta, self.discount,
            self.weight,
        ]  # fmt: skip


def validate_arms(arms: Sequence[str]) -> tuple[str, ...]:
    """``arms`` as a tuple: at least one, no repeats, each ``[a-z0-9_]{1,64}``."""
    names = tuple(arms)
    if not names:
        raise ValueError("a bandit needs at least one arm")
    if len(set(names)) != len(names):
        raise ValueError(f"arm names repeat: {names}")
    for name in names:
        if not ARM_NAME.fullmatch(name):
            raise ValueError(f"arm names are [a-z0-9_], 1 to 64 characters: {name!r}")
    return names


def as_text(value: bytes | str) -> str:
    """A Redis reply as ``str`` (clients here decode already; raw clients give bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def restore_fields(entry: ChannelSnapshot, arms: Sequence[str]) -> Iterator[str]:
    """Hash fields and values (flat) for the configured ``arms`` that ``entry`` holds."""
    total = 0
    for arm in arms:
        saved = entry.arms.get(arm)
        if saved is None:
            continue
        total += saved.updates
        yield from (f"{arm}:alpha", repr(saved.alpha), f"{arm}:beta", repr(saved.beta))
        yield from (f"{arm}:updates", str(saved.updates))
    if total:
        yield from (TOTAL_UPDATES, str(total))


async def stored_arms(redis: Redis, keys: Keys, channel: str) -> dict[str, ArmState]:
    """The arms a channel's bandit holds in Redis, for readers that do not know the arm list
    (the dashboard): every arm with an ``{arm}:alpha`` field, by name. Empty when none."""
    raw = await redis.hgetall(keys.bandit(channel))
    fields = {as_text(name): as_text(value) for name, value in raw.items()}
    arms = sorted(name.removesuffix(":alpha") for name in fields if name.endswith(":alpha"))
    return {
        arm: ArmState(
            alpha=float(fields[f"{arm}:alpha"]),
            beta=float(fields.get(f"{arm}:beta", 1.0)),
            updates=int(fields.get(f"{arm}:updates", 0)),
        )
        for arm in arms
    }


def bandit_factory(
    redis: Redis,
    settings: BanditSettings,
    rng: np.random.Generator | None = None,
    cls: type[ThompsonBandit] | None = None,
) -> Callable[[str], ThompsonBandit]:
    """One :class:`ThompsonBandit` per channel as ``settings`` configure it, built on first use.

    The orchestrator and the retro worker both use this, so they share arms, priors
    and discount; ``rng`` makes draws reproducible; ``cls`` (a subclass, for the learning
    benchmark's baselines) replaces :class:`ThompsonBandit`.
    """
    rng = rng if rng is not None else np.random.default_rng()
    make = cls if cls is not None else ThompsonBandit

    @functools.cache
    def bandit(channel: str) -> ThompsonBandit:
        return make(
            redis,
            settings.keys,
            channel,
            settings.activities,
            prior_alpha=settings.bandit_prior_alpha,
            prior_beta=settings.bandit_prior_beta,
            discount=settings.bandit_discount,
            weight=evidence_weight(settings.bandit_reward_sd),
            rng=rng,
        )

    return bandit
