"""The simulated audience: determinism, activity behaviour, publishing, pacing, outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from services.ingest.settings import IngestSettings
from services.ingest.sources.audience import (
    channel_rng,
    draw_donation,
    new_state,
    simulate,
    stream_id_for,
    switch_activity,
)
from services.ingest.sources.scenario import Scenario, default_scenario
from services.ingest.sources.simulator import SimSource
from shared.events import (
    STREAM_OF_TYPE,
    ActivityChangedEvent,
    DonationEvent,
    EventBase,
    ViewerCountEvent,
    parse_fields,
    to_fields,
)
from shared.keys import EVENT_STREAMS, Stream
from shared.money import DEFAULT_USD_RATES, to_usd
from shared.publisher import Publisher, PublishResult
from shared.redis_client import connect

T0 = datetime(2026, 2, 27, 18, 0, tzinfo=UTC)
HOUR_S = 3600.0


def offline(
    settings: IngestSettings,
    scenario: Scenario | None = None,
    *,
    channel: str = "demo",
    activity: str | None = None,
    duration_s: float = HOUR_S,
    start: datetime = T0,
) -> list[EventBase]:
    """A whole broadcast simulated without Redis, optionally in one fixed activity."""
    scenario = scenario or default_scenario()
    rng = channel_rng(settings.sim_seed, channel)
    state = new_state(scenario, settings, channel, start, rng)
    if activity:
        switch_activity(state, activity)
    return simulate(state, rng, duration_s, settings.sim_tick_s)


def plain_settings(**overrides: Any) -> IngestSettings:
    return IngestSettings(_env_file=None, **overrides)


def count(events: Iterable[EventBase], kind: str) -> int:
    return sum(1 for event in events if event.type == kind)


async def read_events(redis: Redis, settings: IngestSettings) -> dict[Stream, list[EventBase]]:
    """Every event on every event stream of the channels' partitions, parsed, in entry order
    (entry ids of one server's streams compare across partitions)."""
    keys = settings.keys
    partitions = sorted(keys.partitions.channels_by_partition(settings.channels))
    found: dict[Stream, list[EventBase]] = {}
    for kind in EVENT_STREAMS:
        entries: list[Any] = []
        for partition in partitions:
            entries += list(await redis.xrange(keys.stream(kind, partition)) or [])
        entries.sort(key=lambda entry: tuple(int(part) for part in entry[0].split("-")))
        found[kind] = [parse_fields(fields) for _entry_id, fields in entries]
    return found


async def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0) -> None:
    """Poll the async ``condition`` until it is truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class CountingPublisher(Publisher):
    """A real publisher that also counts its calls."""

    calls = 0

    async def publish_many(self, events: Iterable[EventBase | Any]) -> PublishResult:
        self.calls += 1
        return await super().publish_many(events)


# --- pure behaviour, no Redis ---------------------------------------------------------------


def test_same_seed_and_start_give_identical_events_and_another_seed_does_not() -> None:
    first = offline(plain_settings(sim_seed=1))
    again = offline(plain_settings(sim_seed=1))
    other = offline(plain_settings(sim_seed=2))
    assert [to_fields(e) for e in first] == [to_fields(e) for e in again]
    assert [to_fields(e) for e in first] != [to_fields(e) for e in other]
    ids = [event.id for event in first]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "sim-demo-20260227T180000Z:1"


def test_events_follow_the_simulated_clock_in_order() -> None:
    events = offline(plain_settings(), duration_s=600)
    stamps = [event.ts for event in events]
    assert stamps == sorted(stamps)
    assert stamps[0] == T0 and stamps[-1] == T0 + timedelta(seconds=600)
    assert events[0].type == "stream_started" and events[-1].type == "stream_ended"


def test_q_and_a_hour_has_far_more_chat_than_music_hour() -> None:
    settings = plain_settings()
    q_and_a = count(offline(settings, activity="q_and_a"), "chat")
    music = count(offline(settings, activity="music"), "chat")
    assert q_and_a > 4 * music, (q_and_a, music)
    gameplay = offline(settings, activity="gameplay")
    last_count = [e for e in gameplay if isinstance(e, ViewerCountEvent)][-1].count
    assert last_count > 1.5 * default_scenario().initial_viewers  # drifted toward its target


def test_unknown_activity_behaves_like_the_initial_one_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = plain_settings()
    scenario = default_scenario()
    state = new_state(scenario, settings, "demo", T0, channel_rng(1, "demo"))
    with caplog.at_level(logging.WARNING, logger="services.ingest.sim"):
        assert switch_activity(state, "music")
        assert switch_activity(state, "karaoke")
        assert switch_activity(state, "music") and switch_activity(state, "karaoke")
    assert state.activity == "karaoke"
    assert state.behaviour == scenario.activities[scenario.initial_activity]
    warnings = [r for r in caplog.records if "karaoke" in r.getMessage()]
    assert len(warnings) == 1


def test_donations_in_other_currencies_use_the_fx_table() -> None:
    scenario = default_scenario()
    behaviour = scenario.activities["music"]
    rng = channel_rng(3, "demo")
    draws = [draw_donation(behaviour, scenario, rng, DEFAULT_USD_RATES) for _ in range(2000)]
    for draw in draws:
        assert draw.usd == to_usd(draw.local, draw.currency, DEFAULT_USD_RATES)
        assert draw.local == draw.local.to_integral_value() and draw.local >= 1
    foreign = [draw for draw in draws if draw.currency != "USD"]
    assert set(draw.currency for draw in foreign) == set(scenario.donation_currency_weights)
    assert 0.25 < len(foreign) / len(draws) < 0.45  # music: 35 % given in other currencies


def test_simulated_eur_tips_are_whole_euros_at_the_configured_rate() -> None:
    rates = {"USD": Decimal(1), "EUR": Decimal("1.25")}
    settings = plain_settings(fx_rates_usd=rates)
    base = default_scenario()
    music = base.activities["music"].model_copy(
        update={"donation_other_currency_share": 1.0, "donations_per_min_per_100_viewers": 1.0}
    )
    scenario = base.model_copy(
        update={"activities": {"music": music}, "initial_activity": "music",
                "donation_currency_weights": {"EUR": 1.0}}
    )  # fmt: skip
    donations = [e for e in offline(settings, scenario) if isinstance(e, DonationEvent)]
    assert len(donations) > 20
    for donation in donations:
        assert donation.currency == "EUR"
        euros = donation.amount / Decimal("1.25")
        assert euros == euros.to_integral_value() and euros >= 1


def test_every_kind_of_event_is_produced_and_round_trips_the_contract() -> None:
    scenario = default_scenario().model_copy(update={"raids_per_hour": 6.0})
    events = offline(plain_settings(), scenario, activity="gameplay", duration_s=2 * HOUR_S)
    kinds = Counter(event.type for event in events)
    assert set(kinds) == set(STREAM_OF_TYPE)
    for event in events:
        assert event.source == "sim" and event.channel == "demo"
        assert parse_fields(to_fields(event)) == event


# --- SimSource against a real Redis ---------------------------------------------------------


async def test_sim_source_publishes_the_offline_broadcast_on_the_right_streams(
    redis: Redis, make_settings: Callable[..., IngestSettings]
) -> None:
    settings = make_settings(
        IngestSettings, channels="demo,other", sim_speed=50_000, sim_duration_s=900, sim_seed=5
    )
    source = SimSource(redis, settings, Publisher(redis, settings), start=T0)
    await asyncio.wait_for(source.run(asyncio.Event()), timeout=10)
    published = await read_events(redis, settings)
    for kind, events in published.items():
        assert all(event.stream == kind for event in events)
    for channel in ("demo", "other"):
        expected = offline(settings, channel=channel, duration_s=900)
        for kind, events in published.items():
            mine = [to_fields(e) for e in events if e.channel == channel]
            assert mine == [to_fields(e) for e in expected if e.stream == kind], (channel, kind)
        lifecycle = [e for e in published[Stream.LIFECYCLE] if e.channel == channel]
        assert [e.type for e in lifecycle[:2]] == ["stream_started", "activity_changed"]
        assert lifecycle[-1].type == "stream_ended"
        assert lifecycle[-1].ts == T0 + timedelta(minutes=15)
        opening = lifecycle[1]
        assert isinstance(opening, ActivityChangedEvent)
        assert opening.activity == "talk" and opening.decided_by == "sim"
        assert opening.reason == "stream start"
    assert len(published[Stream.CHAT]) > 100


async def test_follows_activity_changed_for_its_channel_only(
    redis: Redis, make_settings: Callable[..., IngestSettings]
) -> None:
    settings = make_settings(IngestSettings, sim_speed=1800, sim_seed=11)
    scenario = default_scenario().model_copy(update={"initial_activity": "q_and_a"})
    publisher = Publisher(redis, settings)
    source = SimSource(redis, settings, publisher, start=T0, scenario=scenario)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await wait_for(lambda: _lifecycle_length_at_least(redis, settings, 2))
        await publisher.publish(_change("other", "music", "x1"))
        stale = _change("demo", "music", "x0").model_copy(update={"stream_id": "sim-demo-old"})
        await publisher.publish(stale)  # an earlier stream's decision: not this broadcast's
        await wait_for(lambda: _sim_time_past(redis, settings, T0 + timedelta(minutes=20)))
        switched_near = await _sim_time(redis, settings)
        await publisher.publish(_change("demo", "music", "x2"))
        end = switched_near + timedelta(minutes=30)
        await wait_for(lambda: _sim_time_past(redis, settings, end))
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    chat = [e.ts for e in (await read_events(redis, settings))[Stream.CHAT]]
    window = timedelta(minutes=18)
    before = sum(1 for ts in chat if ts < T0 + window)
    after = sum(1 for ts in chat if ts >= chat[-1] - window)
    assert before > 300, before  # q_and_a kept despite the other channel's and stream's switch
    assert after * 3 < before, (before, after)


async def test_an_hour_at_high_speed_takes_seconds_in_batched_publishes(
    redis: Redis, make_settings: Callable[..., IngestSettings]
) -> None:
    settings = make_settings(IngestSettings, sim_speed=1800, sim_duration_s=HOUR_S)
    publisher = CountingPublisher(redis, settings)
    began = time.monotonic()
    await asyncio.wait_for(SimSource(redis, settings, publisher).run(asyncio.Event()), 15)
    elapsed_s = time.monotonic() - began
    total = sum(len(events) for events in (await read_events(redis, settings)).values())
    assert 1.5 <= elapsed_s < 10, elapsed_s  # 3600 simulated s / 1800 = 2 s of pacing
    assert total > 500
    assert publisher.calls < total / 20, (publisher.calls, total)


async def test_stop_ends_a_live_speed_stream_promptly_with_stream_ended(
    redis: Redis, make_settings: Callable[..., IngestSettings]
) -> None:
    settings = make_settings(IngestSettings, sim_speed=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(SimSource(redis, settings, Publisher(redis, settings)).run(stop))
    await asyncio.sleep(1.2)
    stop.set()
    await asyncio.wait_for(task, timeout=3)
    lifecycle = (await read_events(redis, settings))[Stream.LIFECYCLE]
    assert lifecycle[0].type == "stream_started"
    assert lifecycle[-1].type == "stream_ended"
    lag = datetime.now(UTC) - lifecycle[-1].ts
    assert timedelta(seconds=-1) < lag < timedelta(seconds=5)  # default start is now, 1x speed


async def test_lost_connection_is_retried_and_nothing_is_lost(
    redis_url: str,
    redis: Redis,
    make_settings: Callable[..., IngestSettings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(IngestSettings, sim_speed=600, sim_seed=9)
    target = urlsplit(redis_url)
    proxy = Proxy(target.hostname or "localhost", target.port or 6379)
    await proxy.start()
    client = connect(redis_url.replace(target.netloc, _with_port(target.netloc, proxy.port)))
    stop = asyncio.Event()
    source = SimSource(client, settings, Publisher(client, settings), start=T0)
    task = asyncio.create_task(source.run(stop))
    try:
        with caplog.at_level(logging.WARNING, logger="services.ingest.sim"):
            await wait_for(lambda: _chat_count_at_least(redis, settings, 50))
            await proxy.stop()
            await asyncio.sleep(1.5)
            before_outage_end = await redis.xlen(settings.keys.channel_stream("chat", "demo"))
            await proxy.start()
            await wait_for(lambda: _chat_count_at_least(redis, settings, before_outage_end + 200))
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await client.aclose()
        await proxy.stop()
    published = await read_events(redis, settings)
    seqs = sorted(int(e.id.rsplit(":", 1)[1]) for events in published.values() for e in events)
    assert seqs == list(range(1, len(seqs) + 1))  # every event id once, none lost
    assert any("Redis unreachable" in r.getMessage() for r in caplog.records)
    assert published[Stream.LIFECYCLE][-1].type == "stream_ended"


def _with_port(netloc: str, port: int) -> str:
    credentials, _, _hostport = netloc.rpartition("@")
    return f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"


def _change(channel: str, activity: str, event_id: str) -> ActivityChangedEvent:
    return ActivityChangedEvent(
        id=event_id, channel=channel, ts=datetime.now(UTC), source="sim",
        stream_id=stream_id_for(channel, T0), activity=activity, decided_by="orchestrator",
    )  # fmt: skip


async def _lifecycle_length_at_least(redis: Redis, settings: IngestSettings, n: int) -> bool:
    return int(await redis.xlen(settings.keys.channel_stream("lifecycle", "demo"))) >= n


async def _chat_count_at_least(redis: Redis, settings: IngestSettings, n: int) -> bool:
    return int(await redis.xlen(settings.keys.channel_stream("chat", "demo"))) >= n


async def _sim_time(redis: Redis, settings: IngestSettings) -> datetime:
    """The simulated clock as seen on the streams: the latest viewer count's ts."""
    last: list[Any] = list(
        await redis.xrevrange(settings.keys.channel_stream("viewers", "demo"), count=1) or []
    )
    return parse_fields(last[0][1]).ts if last else T0


async def _sim_time_past(redis: Redis, settings: IngestSettings, moment: datetime) -> bool:
    return await _sim_time(redis, settings) >= moment


class Proxy:
    """A TCP pass-through to Redis that can be cut (every connection dropped) and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()
        self.server, self.writers = None, []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
            self.writers += [writer, up_writer]
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            self.handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def test_one_blocking_lifecycle_reader_serves_every_channel(
    redis: Redis, make_settings: Callable[..., IngestSettings]
) -> None:
    """Forty channels for 2.5 real seconds: the lifecycle stream is read once per batch of
    new entries or per idle BLOCK, not by forty channels ten times a second (1,000 reads)."""
    channels = [f"ch{n:02d}" for n in range(40)]
    settings = make_settings(IngestSettings, channels=",".join(channels), sim_speed=60)
    before = await _xread_calls(redis)
    stop = asyncio.Event()
    task = asyncio.create_task(SimSource(redis, settings, Publisher(redis, settings)).run(stop))
    try:
        await asyncio.sleep(2.0)
        await Publisher(redis, settings).publish(_change("ch07", "music", "x7"))
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    reads = await _xread_calls(redis) - before
    lifecycle = (await read_events(redis, settings))[Stream.LIFECYCLE]
    idle_blocks = 2.5 / 0.5
    assert 1 <= reads <= len(lifecycle) + idle_blocks + 5, (reads, len(lifecycle))
    assert reads < 200, reads
    assert {e.channel for e in lifecycle if e.type == "stream_ended"} == set(channels)


async def _xread_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))
