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
they agree bit for bit). The JSON backup (``data/bandit_state.json``) holds every
channel; see ``docs/bandit.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis

from shared.clock import format_ts, utc_now
from shared.keys import Keys
from shared.settings import BanditSettings

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
PathLike = str | os.PathLike[str]

DEFAULT_ARMS: tuple[str, ...] = ("talk", "q_and_a", "gameplay", "react", "music")
DEFAULT_STATE_PATH = Path("data/bandit_state.json")
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


class BanditStateError(Exception):
    """The JSON state file cannot be used: unreadable, corrupt, or without the channel."""


# --- the maths: pure functions, arms on the last axis ---------------------------------------


def check_reward(reward: float) -> float:
    """``reward`` as a float, or ValueError unless it is a finite number in [0, 1]."""
    value = float(reward)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"reward must be in [0, 1], got {reward!r}")
    return value


def argmax_random_ties(values: FloatArray, rng: np.random.Generator) -> IndexArray:
    """Index of the largest value along the last axis; equal maxima are chosen uniformly.

    Draws ``values.size`` uniforms from ``rng`` on every call (ties or not), so the
    random stream does not depend on the data.
    """
    best = values == values.max(axis=-1, keepdims=True)
    keys = np.where(best, rng.random(values.shape), -1.0)
    chosen: IndexArray = np.argmax(keys, axis=-1)
    return chosen


def sample_arm(alpha: FloatArray, beta: FloatArray, rng: np.random.Generator) -> IndexArray:
    """Thompson sampling: one Beta(alpha, beta) draw per arm, index of the best.

    ``alpha`` and ``beta`` have the arms on the last axis; leading axes are
    independent bandits (one choice each).
    """
    return argmax_random_ties(rng.beta(alpha, beta), rng)


def evidence_weight(reward_sd: float) -> float:
    """Beta pseudo-observations one reward is worth when rewards vary with sd ``reward_sd``.

    A Beta(alpha, beta) posterior with mean m has variance about m (1 - m) / (alpha + beta);
    n Gaussian observations with noise sd s give s^2 / n. Equal at m = 1/2 when every
    reward adds ``0.25 / s^2`` to alpha + beta: the posterior is then as wide as the
    evidence really is. ``reward_sd`` = 0.5 (a coin flip's sd) gives 1, the plain update.
    """
    return 0.25 / positive("reward_sd", reward_sd) ** 2


@dataclass(frozen=True)
class Estimate:
    """An arm's estimated reward in reward units: posterior mean, its sd, rewards behind it."""

    mean: float
    sd: float
    n: int


def decay(values: FloatArray, prior: float, discount: float) -> FloatArray:
    """``prior + discount * (values - prior)``; an exact copy when ``discount`` is 1."""
    if discount >= 1.0:
        return values.copy()
    return prior + discount * (values - prior)


def posterior_update(
    alpha: FloatArray,
    beta: FloatArray,
    arm: int | IndexArray,
    reward: float | FloatArray,
    *,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    discount: float = 1.0,
    weight: float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """New (alpha, beta) after ``reward`` on ``arm``; the inputs are not modified.

    Every arm first decays toward the prior (:func:`decay`), then the pulled arm
    gets ``alpha += weight * reward`` and ``beta += weight * (1 - reward)``
    (``weight``: pseudo-observations one reward is worth, :func:`evidence_weight`).
    ``arm`` and ``reward`` have the leading shape of ``alpha`` (scalars for a single
    bandit). Rewards must lie in [0, 1] (ValueError otherwise).
    """
    rewards = np.asarray(reward, dtype=np.float64)
    if not np.all((rewards >= 0.0) & (rewards <= 1.0)):
        raise ValueError(f"rewards must be in [0, 1], got {reward!r}")
    hit = np.arange(alpha.shape[-1]) == np.asarray(arm)[..., None]
    gained = np.where(hit, weight * rewards[..., None], 0.0)
    lost = np.where(hit, weight * (1.0 - rewards[..., None]), 0.0)
    return (
        decay(alpha, prior_alpha, discount) + gained,
        decay(beta, prior_beta, discount) + lost,
    )


# --- state as Python sees it ---------------------------------------------------------------


@dataclass(frozen=True)
class ArmState:
    """One arm's posterior Beta(alpha, beta) and how many updates it has had.

    ``alpha`` and ``beta`` are pseudo-counts of good and bad segments, prior
    included (and discounted, with a discount); ``updates`` is the raw number of
    rewards applied to the arm, never discounted.
    """

    alpha: float
    beta: float
    updates: int = 0

    @property
    def mean(self) -> float:
        """Posterior mean ``alpha / (alpha + beta)``: the expected reward of the arm."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def sd(self) -> float:
        """Posterior standard deviation of the arm's expected reward."""
        total = self.alpha + self.beta
        return math.sqrt(self.alpha * self.beta / (total * total * (total + 1)))

    def estimate(self) -> Estimate:
        """Mean, sd and update count as an :class:`Estimate`."""
        return Estimate(mean=self.mean, sd=self.sd, n=self.updates)


class ArmSnapshot(BaseModel):
    """One arm in the JSON file."""

    alpha: float = Field(gt=0, allow_inf_nan=False)
    beta: float = Field(gt=0, allow_inf_nan=False)
    updates: int = Field(default=0, ge=0)


class Priors(BaseModel):
    """The prior Beta(alpha, beta) a channel was saved with."""

    alpha: float = Field(gt=0, allow_inf_nan=False)
    beta: float = Field(gt=0, allow_inf_nan=False)


class ChannelSnapshot(BaseModel):
    """One channel in the JSON file: its arms, priors, discount, the evidence weight of one
    reward (1 in files written before it was recorded) and save time (RFC 3339)."""

    arms: dict[str, ArmSnapshot]
    priors: Priors
    discount: float = Field(gt=0, le=1)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    saved_at: str


class StateFile(BaseModel):
    """The whole JSON file: ``{"channels": {channel: ChannelSnapshot}}``."""

    channels: dict[str, ChannelSnapshot] = Field(default_factory=dict)


# --- the Redis-backed bandit ---------------------------------------------------------------


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
        """Write this channel's state into the JSON file at ``path``, keeping other channels.

        The folder is created; the file is replaced atomically (temp file +
        rename) under an advisory lock (``<path>.lock``), so concurrent savers
        never lose each other's channels. A corrupt existing file is moved aside
        to ``<path>.corrupt`` (logged) rather than blocking the save.
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
        entry = (await asyncio.to_thread(read_state, Path(path))).channels.get(channel)
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
        file = Path(path)
        if not await asyncio.to_thread(file.exists):
            return False
        entry = (await asyncio.to_thread(read_state, file)).channels.get(self.channel)
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


def positive(name: str, value: float) -> float:
    """``value`` as a float, or ValueError unless finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


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


# --- the JSON file -------------------------------------------------------------------------


def read_state(path: Path) -> StateFile:
    """The state file at ``path``; :class:`BanditStateError` if missing, unreadable or corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BanditStateError(f"{path}: cannot read the bandit state: {error}") from error
    try:
        return StateFile.model_validate_json(text)
    except ValidationError as error:
        raise BanditStateError(f"{path}: not a valid bandit state file: {error}") from error


def write_channel(path: Path, channel: str, snapshot: ChannelSnapshot) -> None:
    """Merge ``channel``'s snapshot into the file at ``path`` (see :meth:`ThompsonBandit.save`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_name(path.name + ".lock")):
        state = StateFile()
        if path.exists():
            try:
                state = read_state(path)
            except BanditStateError as error:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                log.error("%s; moved aside to %s, writing a fresh file", error, aside)
        state.channels[channel] = snapshot
        replace_atomically(path, state.model_dump_json(indent=2) + "\n")


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``lock_path`` while inside."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, fsync it, and rename it over ``path``."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


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
