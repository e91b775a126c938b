"""The simulated audience: a pure, Redis-free model of a channel's viewers.

:func:`new_state`, :func:`step`, :func:`switch_activity` and :func:`simulate` take a
:class:`ChannelState` and a numpy ``Generator``, so the same seed and start always
give the same events. What the audience does each step depends on the activity on
air (see :mod:`services.ingest.sources.scenario`). Every event's ``ts`` is read off
the state's simulated clock. :mod:`services.ingest.sources.simulator` runs this
model against Redis; tests, benchmarks and the soak drive it directly.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from services.ingest.settings import IngestSettings
from services.ingest.sources.scenario import (
    ActivityBehaviour,
    Scenario,
    Tier,
)
from shared.clock import as_utc, to_millis
from shared.events import (
    ActivityChangedEvent,
    BitsEvent,
    ChatEvent,
    DonationEvent,
    EventBase,
    FollowEvent,
    RaidEvent,
    StreamEndedEvent,
    StreamStartedEvent,
    SubEvent,
    ViewerCountEvent,
)
from shared.money import to_usd

log = logging.getLogger("services.ingest.sim")

T = TypeVar("T")
Maker = Callable[["ChannelState", np.random.Generator, datetime], EventBase]

MAX_DONATION_USD = 10_000.0
MAX_CHEER_BITS = 100_000
PENDING_ID = "pending"

_ADJECTIVES = (
    "happy", "sleepy", "lucky", "cosmic", "salty", "fuzzy", "brave", "quiet", "turbo", "mellow",
    "spicy", "pixel", "lazy", "shiny", "wild", "cozy", "frosty", "sneaky", "jolly", "rusty",
)  # fmt: skip
_NOUNS = (
    "otter", "panda", "wizard", "noodle", "falcon", "cactus", "ninja", "potato", "comet", "badger",
    "pickle", "raven", "toaster", "koala", "dragon", "muffin", "walrus", "lynx", "bean", "golem",
)  # fmt: skip


@dataclass
class ChannelState:
    """Everything one simulated broadcast remembers between steps (mutable, one per channel).

    ``elapsed_s`` is simulated seconds since ``start``; ``viewers`` is kept as a
    float so slow drift accumulates, and is rounded only when reported.
    """

    scenario: Scenario
    settings: IngestSettings
    channel: str
    stream_id: str
    start: datetime
    activity: str
    behaviour: ActivityBehaviour
    viewers: float
    chatters: list[str]
    chatter_cdf: npt.NDArray[np.float64]
    elapsed_s: float = 0.0
    viewer_counts_sent: int = 0
    seq: int = 0
    warned_activities: set[str] = field(default_factory=set)

    @property
    def now(self) -> datetime:
        """The simulated clock, to the millisecond (the precision of ``ts`` on the streams)."""
        return to_millis(self.start + timedelta(seconds=self.elapsed_s))

    def next_id(self) -> str:
        """A new event id, unique within this broadcast: ``{stream_id}:{seq}``."""
        self.seq += 1
        return f"{self.stream_id}:{self.seq}"


@dataclass(frozen=True)
class DonationDraw:
    """One simulated tip: what the donor gave (``local`` in ``currency``) and its USD value."""

    local: Decimal
    currency: str
    usd: Decimal


def stream_id_for(channel: str, start: datetime) -> str:
    """``sim-{channel}-{start as compact UTC}``, e.g. ``sim-demo-20260227T103000Z``."""
    return f"sim-{channel}-{as_utc(start):%Y%m%dT%H%M%SZ}"


def channel_rng(seed: int, channel: str) -> np.random.Generator:
    """The random generator of one channel, derived from ``SIM_SEED`` and the channel name."""
    return np.random.default_rng([seed % 2**64, zlib.crc32(channel.encode())])


def zipf_cdf(users: int, exponent: float) -> npt.NDArray[np.float64]:
    """Cumulative share of chat of the first ``users`` chatters, weight ``rank ** -exponent``."""
    weights = np.arange(1, users + 1, dtype=np.float64) ** -exponent
    cdf: npt.NDArray[np.float64] = np.cumsum(weights / weights.sum())
    return cdf


def new_state(
    scenario: Scenario,
    settings: IngestSettings,
    channel: str,
    start: datetime,
    rng: np.random.Generator,
) -> ChannelState:
    """A broadcast of ``channel`` starting at ``start``, in the scenario's initial activity."""
    start = to_millis(start)
    behaviour = scenario.activities[scenario.initial_activity]
    pool = max(activity.chatter_pool_users for activity in scenario.activities.values())
    return ChannelState(
        scenario=scenario,
        settings=settings,
        channel=channel,
        stream_id=stream_id_for(channel, start),
        start=start,
        activity=scenario.initial_activity,
        behaviour=behaviour,
        viewers=float(scenario.initial_viewers),
        chatters=make_names(rng, pool),
        chatter_cdf=zipf_cdf(
            behaviour.chatter_pool_users, behaviour.chatter_concentration_exponent
        ),
    )


def make_names(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct, plausible user names (``cosmicotter417``)."""
    names: dict[str, None] = {}
    while len(names) < count:
        names[fresh_name(rng)] = None
    return list(names)


def fresh_name(rng: np.random.Generator) -> str:
    """One random user name, e.g. a new follower or a raiding channel."""
    adjective = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
    noun = _NOUNS[int(rng.integers(len(_NOUNS)))]
    return f"{adjective}{noun}{int(rng.integers(1000))}"


def opening_events(state: ChannelState) -> list[EventBase]:
    """``stream_started``, then ``activity_changed`` to the initial activity (decided by sim)."""
    common = {"channel": state.channel, "ts": state.now, "source": "sim"}
    return [
        StreamStartedEvent(id=state.next_id(), stream_id=state.stream_id, **common),
        ActivityChangedEvent(
            id=state.next_id(),
            stream_id=state.stream_id,
            activity=state.activity,
            reason="stream start",
            decided_by="sim",
            **common,
        ),
    ]


def closing_event(state: ChannelState) -> StreamEndedEvent:
    """``stream_ended`` at the current simulated time."""
    return StreamEndedEvent(
        id=state.next_id(),
        channel=state.channel,
        ts=state.now,
        source="sim",
        stream_id=state.stream_id,
    )


def switch_activity(state: ChannelState, activity: str) -> bool:
    """Make ``activity`` the one on air; ``False`` when it already was.

    An activity the scenario does not describe keeps its name but behaves like the
    initial activity, with one warning per unknown name.
    """
    if activity == state.activity:
        return False
    behaviour = state.scenario.behaviour(activity)
    if behaviour is None:
        behaviour = state.scenario.activities[state.scenario.initial_activity]
        if activity not in state.warned_activities:
            state.warned_activities.add(activity)
            log.warning(
                "%s: activity %r is not in the scenario; simulating it like %r",
                state.channel, activity, state.scenario.initial_activity,
            )  # fmt: skip
    log.info("%s: activity %s -> %s", state.channel, state.activity, activity)
    state.activity = activity
    state.behaviour = behaviour
    state.chatter_cdf = zipf_cdf(
        behaviour.chatter_pool_users, behaviour.chatter_concentration_exponent
    )
    return True


def step(state: ChannelState, rng: np.random.Generator, dt_s: float) -> list[EventBase]:
    """Advance the simulated clock by ``dt_s`` seconds; the events of that interval, by ``ts``.

    Audience actions are Poisson counts at the current activity's rates scaled by
    viewers; viewer counts are reported every ``viewer_count_interval_s``.
    """
    events = audience_events(state, rng, dt_s)
    events += raid_events(state, rng, dt_s)
    drift_viewers(state, rng, dt_s)
    events += viewer_count_events(state, dt_s)
    state.elapsed_s += dt_s
    events.sort(key=lambda event: event.ts)
    return [event.model_copy(update={"id": state.next_id()}) for event in events]


def simulate(
    state: ChannelState, rng: np.random.Generator, duration_s: float, tick_s: float
) -> list[EventBase]:
    """A whole broadcast of ``duration_s`` simulated seconds, offline, opening to closing."""
    events = opening_events(state)
    while state.elapsed_s < duration_s - 1e-9:
        events += step(state, rng, min(tick_s, duration_s - state.elapsed_s))
    return [*events, closing_event(state)]


def audience_events(state: ChannelState, rng: np.random.Generator, dt_s: float) -> list[EventBase]:
    """Chat, tips, cheers, subs and follows during the next ``dt_s`` seconds (ids pending)."""
    behaviour = state.behaviour
    scale = state.viewers / 100 * dt_s / 60
    makers: list[tuple[float, Maker]] = [
        (behaviour.chat_msgs_per_min_per_100_viewers, make_chat),
        (behaviour.donations_per_min_per_100_viewers, make_donation),
        (behaviour.cheers_per_min_per_100_viewers, make_cheer),
        (behaviour.subs_per_min_per_100_viewers, make_sub),
        (behaviour.resubs_per_min_per_100_viewers, make_resub),
        (behaviour.gifts_per_min_per_100_viewers, make_gift),
        (behaviour.follows_per_min_per_100_viewers, make_follow),
    ]
    events: list[EventBase] = []
    for rate, make in makers:
        for _ in range(int(rng.poisson(rate * scale))):
            events.append(make(state, rng, ts_within(state, rng, dt_s)))
    return events


def raid_events(state: ChannelState, rng: np.random.Generator, dt_s: float) -> list[EventBase]:
    """Incoming raids during the next ``dt_s`` seconds; part of each raid stays as viewers."""
    scenario = state.scenario
    events: list[EventBase] = []
    for _ in range(int(rng.poisson(scenario.raids_per_hour * dt_s / 3600))):
        size = lognormal(rng, scenario.raid_median_viewers, scenario.raid_log_sigma)
        count = max(1, min(round(size), 100_000_000))
        state.viewers += count * scenario.raid_stay_share
        events.append(
            RaidEvent(
                **_common(state, ts_within(state, rng, dt_s)),
                stream_id=state.stream_id,
                user=fresh_name(rng),
                count=count,
            )
        )
    return events


def drift_viewers(state: ChannelState, rng: np.random.Generator, dt_s: float) -> None:
    """Move the viewer count toward the activity's target, plus Gaussian noise."""
    behaviour = state.behaviour
    minutes = dt_s / 60
    pull = 1 - (1 - behaviour.viewer_drift_share_per_min) ** minutes
    noise = state.viewers * behaviour.viewer_noise_share_per_min * math.sqrt(minutes)
    change = (behaviour.target_viewers - state.viewers) * pull + noise * rng.standard_normal()
    state.viewers = max(0.0, state.viewers + change)


def viewer_count_events(state: ChannelState, dt_s: float) -> list[EventBase]:
    """The viewer counts due in ``[elapsed_s, elapsed_s + dt_s)``, on a fixed schedule."""
    interval_s = state.scenario.viewer_count_interval_s
    events: list[EventBase] = []
    while state.viewer_counts_sent * interval_s < state.elapsed_s + dt_s:
        offset_s = state.viewer_counts_sent * interval_s
        ts = to_millis(state.start + timedelta(seconds=offset_s))
        events.append(ViewerCountEvent(**_common(state, ts), count=round(state.viewers)))
        state.viewer_counts_sent += 1
    return events


def ts_within(state: ChannelState, rng: np.random.Generator, dt_s: float) -> datetime:
    """A uniformly random moment in the next ``dt_s`` simulated seconds."""
    offset_s = state.elapsed_s + float(rng.random()) * dt_s
    return to_millis(state.start + timedelta(seconds=offset_s))


def make_chat(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A chat line from a chatter picked by the activity's concentration."""
    lines = [*state.behaviour.chat_lines, *state.scenario.chat_lines]
    text = lines[int(rng.integers(len(lines)))]
    return ChatEvent(**_common(state, ts), user=pick_chatter(state, rng), text=text)


def make_donation(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A tip, converted to USD with ``FX_RATES_USD``; ``currency`` keeps the original code."""
    draw = draw_donation(state.behaviour, state.scenario, rng, state.settings.fx_rates_usd)
    messages = state.scenario.donation_messages
    return DonationEvent(
        **_common(state, ts),
        user=pick_chatter(state, rng),
        amount=draw.usd,
        currency=draw.currency,
        message=messages[int(rng.integers(len(messages)))],
    )


def make_cheer(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A bits cheer (its USD amount is fixed by the model: one cent a bit)."""
    behaviour = state.behaviour
    bits = lognormal(rng, behaviour.cheer_median_bits, behaviour.cheer_log_sigma)
    count = int(nice_amount(min(bits, MAX_CHEER_BITS)))
    user = pick_chatter(state, rng)
    return BitsEvent(**_common(state, ts), user=user, bits=count, message=f"Cheer{count}")


def make_sub(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A new subscription at a tier drawn from ``sub_tier_shares``."""
    tier = pick_tier(state.scenario, rng)
    amount = state.settings.sub_usd(tier)
    user = pick_chatter(state, rng)
    return SubEvent(**_common(state, ts), type="sub", user=user, tier=tier, amount=amount)


def make_resub(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A resubscription; months are 1 + geometric, averaging ``resub_months_mean``."""
    tier = pick_tier(state.scenario, rng)
    months = 1 + int(rng.geometric(1 / (state.scenario.resub_months_mean - 1)))
    return SubEvent(
        **_common(state, ts),
        type="resub",
        user=pick_chatter(state, rng),
        tier=tier,
        months=min(months, 1000),
        amount=state.settings.sub_usd(tier),
    )


def make_gift(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A gift of several subs, sized by ``gift_subs_weights``; amount covers them all."""
    tier = pick_tier(state.scenario, rng)
    weights = state.scenario.gift_subs_weights
    count = choose(rng, list(weights), list(weights.values()))
    return SubEvent(
        **_common(state, ts),
        type="gift",
        user=pick_chatter(state, rng),
        tier=tier,
        count=count,
        amount=state.settings.sub_usd(tier, count),
    )


def make_follow(state: ChannelState, rng: np.random.Generator, ts: datetime) -> EventBase:
    """A follow by someone new (not from the chatter pool)."""
    return FollowEvent(**_common(state, ts), stream_id=state.stream_id, user=fresh_name(rng))


def draw_donation(
    behaviour: ActivityBehaviour,
    scenario: Scenario,
    rng: np.random.Generator,
    rates_usd: dict[str, Decimal],
) -> DonationDraw:
    """A tip of lognormal USD value, given as a round amount in USD or another currency.

    The donor's amount is a whole number of units with two significant figures
    (``5``, ``12``, ``1500`` JPY); ``usd`` is that amount converted with ``rates_usd``.
    """
    value_usd = min(
        lognormal(rng, behaviour.donation_median_usd, behaviour.donation_log_sigma),
        MAX_DONATION_USD,
    )
    currency = "USD"
    if rng.random() < behaviour.donation_other_currency_share:
        weights = scenario.donation_currency_weights
        currency = choose(rng, list(weights), list(weights.values()))
    local = nice_amount(value_usd / float(rates_usd.get(currency, Decimal(1))))
    return DonationDraw(local=local, currency=currency, usd=to_usd(local, currency, rates_usd))


def nice_amount(value: float) -> Decimal:
    """``value`` as a whole number with two significant figures, at least 1 (``1234.5`` -> 1200)."""
    if value < 1.5:
        return Decimal(1)
    return Decimal(f"{value:.2g}").quantize(Decimal(1))


def lognormal(rng: np.random.Generator, median: float, log_sigma: float) -> float:
    """A lognormal draw with the given median and standard deviation of the natural log."""
    return float(rng.lognormal(math.log(median), log_sigma))


def choose(rng: np.random.Generator, options: Sequence[T], weights: Sequence[float]) -> T:
    """One of ``options``, with probability proportional to ``weights``."""
    shares = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=shares / shares.sum()))]


def pick_tier(scenario: Scenario, rng: np.random.Generator) -> Tier:
    """A sub tier (``1000``/``2000``/``3000``) drawn from ``sub_tier_shares``."""
    shares = scenario.sub_tier_shares
    return choose(rng, list(shares), list(shares.values()))


def pick_chatter(state: ChannelState, rng: np.random.Generator) -> str:
    """A member of the activity's chatter pool, regulars first (Zipf weights)."""
    index = int(np.searchsorted(state.chatter_cdf, rng.random(), side="right"))
    return state.chatters[min(index, len(state.chatter_cdf) - 1)]


def _common(state: ChannelState, ts: datetime) -> dict[str, Any]:
    return {"id": PENDING_ID, "channel": state.channel, "ts": ts, "source": "sim"}
