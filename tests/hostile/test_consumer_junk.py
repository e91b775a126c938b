"""The consumer path: junk entries go to events:dead with a reason; valid ones are handled once."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.consumer import ConsumerRunner
from shared.events import EventBase, parse_fields, to_fields
from shared.redis_client import connect_settings
from shared.settings import ConsumerSettings
from tests.hostile.strategies import EVENTS, FLAT_DICTS, JUNK_TEXT, mutated_entries
from tests.shared.counting_handler import CountingHandler

GROUP = "hostile"
RUN = itertools.count()


def is_valid_on(fields: dict[Any, Any], stream_kind: str) -> bool:
    try:
        event = parse_fields(fields)
    except pydantic.ValidationError:
        return False
    return event.stream.value == stream_kind


JUNK = st.one_of(FLAT_DICTS, mutated_entries(JUNK_TEXT)).filter(lambda fields: len(fields) > 0)


@pytest.mark.usefixtures("hostile_cleanup")
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    junk=st.lists(JUNK, min_size=1, max_size=6),
    valid=st.lists(EVENTS, min_size=1, max_size=6, unique_by=lambda e: (e.type, e.id)),
)
def test_junk_is_dead_lettered_and_valid_entries_are_handled_once(
    runner: asyncio.Runner,
    make_settings: Any,
    key_prefix: str,
    junk: list[dict[Any, Any]],
    valid: list[EventBase],
) -> None:
    # A fresh sub-prefix per example so examples never see each other's entries.
    prefix = f"{key_prefix}{next(RUN)}:"
    cfg: ConsumerSettings = make_settings(
        ConsumerSettings,
        redis_key_prefix=prefix,
        consumer_name="h1",
        consumer_block_ms=20,
        consumer_reclaim_interval_s=0.05,
        partitions=1,  # every channel in partition 0: this is about junk, not partitioning
    )
    runner.run(_check(cfg, junk, valid))


async def _check(cfg: ConsumerSettings, junk: list[dict[Any, Any]], valid: list[EventBase]) -> None:
    redis = connect_settings(cfg)
    keys = cfg.keys
    chat_stream = keys.stream("chat", 0)
    try:
        expected_dead: dict[str, str] = {}
        for fields in junk:
            if is_valid_on(fields, "chat"):
                continue  # a mutation that happens to be a valid chat entry is not junk
            entry_id = await redis.xadd(chat_stream, fields)
            expected_dead[entry_id] = chat_stream
        expected_handled = set()
        for event in valid:
            await redis.xadd(keys.stream(event.stream, 0), to_fields(event))
            expected_handled.add(f"{event.type}:{event.id}")
        counts_key = f"{cfg.redis_key_prefix}counts"
        consumer = ConsumerRunner(redis, cfg, GROUP, CountingHandler(counts_key), partition=0)
        total = len(expected_dead) + len(valid)
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            async with asyncio.timeout(10):
                while consumer.summary.handled + consumer.summary.dead_lettered < total:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # anything extra would show up now
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)

        dead = await redis.xrange(keys.dead(0))
        dead_ids = {fields["entry_id"]: fields for _, fields in dead}
        assert set(dead_ids) == set(expected_dead), (dead_ids, expected_dead)
        for entry_id, letter in dead_ids.items():
            assert letter["reason"].strip(), letter
            assert letter["stream"] == expected_dead[entry_id]
            assert letter["group"] == GROUP
        counts = await redis.hgetall(counts_key)
        assert set(counts) == expected_handled
        assert set(counts.values()) == {"1"}
        assert consumer.summary.handled == len(valid)
        assert consumer.summary.dead_lettered == len(expected_dead)
        for stream in keys.partition_streams(0):
            if await redis.exists(stream):
                pending = await redis.xpending(stream, GROUP)
                assert pending["pending"] == 0, (stream, pending)
    finally:
        await redis.aclose()


@pytest.mark.usefixtures("hostile_cleanup")
def test_a_non_utf8_entry_is_dead_lettered_not_fatal(
    runner: asyncio.Runner, make_settings: Any
) -> None:
    cfg: ConsumerSettings = make_settings(
        ConsumerSettings, consumer_name="h1", consumer_block_ms=20
    )
    runner.run(_check_bytes(cfg))


async def _check_bytes(cfg: ConsumerSettings) -> None:
    redis = connect_settings(cfg)
    try:
        stream = cfg.keys.channel_stream("chat", "demo")
        entry_id = await redis.xadd(stream, {"v": b"\xff"})
        consumer = ConsumerRunner(
            redis,
            cfg,
            GROUP,
            CountingHandler(f"{cfg.redis_key_prefix}c"),
            partition=cfg.partitioning.of("demo"),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            async with asyncio.timeout(5):
                while consumer.summary.dead_lettered < 1 and not task.done():
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)  # re-raises the runner's crash
        [(_, letter)] = await redis.xrange(cfg.keys.channel_dead("demo"))
        assert letter["entry_id"] == entry_id and letter["reason"]
    finally:
        await redis.aclose()
