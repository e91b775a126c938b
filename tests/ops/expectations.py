"""What each command of docs/operations.md must print (:data:`EXPECTED`), or why it is not run
(:data:`NOT_RUN`), with the values the doc's placeholders are filled with.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.keys import Stream
from tests.ops.servers import redis_clis

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
TOKEN = "ops-doc-dashboard-token"
OLD_PASSWORD = "old-" + uuid.uuid4().hex
NEW_PASSWORD = "new-" + uuid.uuid4().hex
COMMAND_TIMEOUT_S = 30.0
ERROR_REPLY = re.compile(
    r"^(\(error\) )?(ERR|WRONGTYPE|NOGROUP|NOAUTH|WRONGPASS|NOPERM|BUSYGROUP|NOSCRIPT|"
    r"EXECABORT|LOADING|READONLY|BUSYKEY|Could not connect)\b",
    re.MULTILINE,
)
PLACEHOLDER = re.compile(r"<[a-z][a-z-]*>")
DEMO_TAG = "{p32}"
"""The hash tag of ``demo``'s partition with the default 64 partitions, as the doc spells it."""
BOTH = ("main", "cluster")
CLIS = redis_clis()


@dataclass(frozen=True)
class Expect:
    """What one doc command must do here.

    ``prints``/``absent`` are substrings of its output (stdout and stderr); ``{name}``
    in them is replaced by a seeded value. ``fill`` maps a ``<placeholder>`` in the
    command to a seeded value's name. ``publish`` is for a blocking read: an event of
    that stream is published while the command waits, and its id must be printed.
    ``files`` are globs (in the working directory) that must match a non-empty file
    afterwards. ``servers`` are where it runs: ``main`` (the seeded single server),
    ``cluster`` (a six-node Redis Cluster holding a copy of the seeded keys) and
    ``password`` (a password-protected server of its own).
    """

    prints: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    code: int = 0
    fill: Mapping[str, str] = field(default_factory=dict)
    publish: Stream | None = None
    files: tuple[str, ...] = ()
    servers: tuple[str, ...] = ("main",)
    matches: str = ""
    """A regular expression the output must match (multiline)."""
    needs: tuple[str, ...] = ()
    """``redis7`` (a Redis 7 server: XINFO lag) or ``curl``."""


SAVE_SNIPPET = "python -c ' import asyncio from shared.bandit import bandit_factory ..."
LOAD_SNIPPET = "python -c ' import asyncio from shared.bandit import ThompsonBandit ..."

EXPECTED: dict[str, Expect] = {
    # the key prefix note
    "python -m shared.partitions demo": Expect(prints=(DEMO_TAG,)),
    "redis-cli -c --scan --pattern 'events:*'": Expect(
        prints=tuple(f"events:{DEMO_TAG}:{kind}" for kind in ("chat", "donation", "dead"))
    ),
    "redis-cli -c CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ "
    '{ sub(/@.*/, "", $2); print $2 }\' | while read -r node; do redis-cli -h "${node%:*}" '
    "-p \"${node##*:}\" --scan --pattern 'events:*'; done": Expect(
        servers=("cluster",),
        prints=tuple(f"events:{DEMO_TAG}:{kind}" for kind in ("chat", "lifecycle", "dead")),
    ),
    "redis-cli --cluster call 127.0.0.1:6379 DBSIZE --cluster-only-masters": Expect(
        servers=("cluster",), matches=r"(^127\.0\.0\.1:\d+: \d+\n){3}", absent=("MOVED",)
    ),
    # tailing
    "redis-cli -c XREAD BLOCK 0 STREAMS 'events:{p32}:chat' '$'": Expect(
        publish=Stream.CHAT, prints=(f"events:{DEMO_TAG}:chat", "ops-doc-live")
    ),
    "redis-cli -c XREAD BLOCK 0 STREAMS 'events:{p32}:donation' 'events:{p32}:sub' '$' '$'": Expect(
        publish=Stream.DONATION, prints=(f"events:{DEMO_TAG}:donation", "ops-doc-live")
    ),
    "redis-cli -c XREVRANGE 'events:{p32}:chat' + - COUNT 5": Expect(
        servers=BOTH, prints=("type", "chat", "{last_chat}")
    ),
    "redis-cli -c XRANGE 'events:{p32}:lifecycle' - + COUNT 10": Expect(
        servers=BOTH, prints=("stream_started", "activity_changed", "{stream_id}")
    ),
    "redis-cli -c XLEN 'events:{p32}:viewers'": Expect(servers=BOTH, prints=("{viewer_entries}",)),
    # consumer groups
    "redis-cli -c XINFO GROUPS 'events:{p32}:chat'": Expect(
        servers=BOTH,
        needs=("redis7",),
        prints=("name", "analytics", "pending", "3", "lag", "last-delivered-id"),
    ),
    "redis-cli -c XINFO CONSUMERS 'events:{p32}:chat' analytics": Expect(
        servers=BOTH, prints=("analytics-7c9f-12", "analytics-4b1d-7", "pending", "idle")
    ),
    "redis-cli -c XPENDING 'events:{p32}:chat' analytics": Expect(
        servers=BOTH, prints=("3", "analytics-4b1d-7", "{pending_first}")
    ),
    "redis-cli -c XPENDING 'events:{p32}:chat' analytics - + 10": Expect(
        servers=BOTH, prints=("{pending_first}", "analytics-4b1d-7")
    ),
    "redis-cli -c XPENDING 'events:{p32}:chat' analytics IDLE 60000 - + 10": Expect(
        servers=BOTH, prints=("{pending_first}", "analytics-4b1d-7")
    ),
    "curl -s http://127.0.0.1:8000/metrics | grep streamloop_consumer_lag": Expect(
        needs=("redis7", "curl"),
        matches=r'^streamloop_consumer_lag\{group="analytics",(partition="32",)?stream="chat"\} ',
    ),
    # dead letters
    "redis-cli -c XLEN 'events:{p32}:dead'": Expect(servers=BOTH, prints=("3",)),
    "redis-cli -c XRANGE 'events:{p32}:dead' - + COUNT 20": Expect(
        servers=BOTH,
        prints=("reason", "timestamp has no timezone", "handler failed 1 times", "raw", "group"),
    ),
    "python -m shared.dead_letters list": Expect(
        prints=(
            "3 dead letters, newest first (the 64 events:{pNN}:dead hold 3):",
            "{broken_dead}  from events:{p32}:chat {broken_entry}  group analytics",
            "reason: ts: Value error, timestamp has no timezone",
            'raw:    v=1 type=chat id=m-81 channel=demo ts="2026-02-27 10:30:00"',
            "{tip_dead}  from events:{p32}:donation",
            "{chat_dead}  from events:{p32}:chat",
        )
    ),
    "python -m shared.dead_letters list --stream chat --limit 5": Expect(
        prints=("2 dead letters from chat, newest first", "{broken_dead}", "{chat_dead}"),
        absent=("{tip_dead}",),
    ),
    "python -m shared.dead_letters list --channel demo": Expect(
        prints=(
            "3 dead letters of channel demo, newest first (events:{p32}:dead holds 3):",
            "{broken_dead}",
            "{tip_dead}",
            "{chat_dead}",
        ),
    ),
    "python -m shared.dead_letters requeue --all --dry-run": Expect(
        code=1,
        prints=(
            "would requeue {tip_dead}: donation streamlabs:sl-5f2c on demo",
            "would requeue {chat_dead}: chat twitch:m-82 on demo",
            "not requeued {broken_dead} (from events:{p32}:chat): still breaks the contract: ts: ",
            "dry run, nothing changed: 2 would be requeued, 1 would stay in the dead-letter",
        ),
    ),
    "python -m shared.dead_letters requeue <dead-letter-id>": Expect(
        fill={"<dead-letter-id>": "tip_dead"},
        prints=("requeued {tip_dead}: donation streamlabs:sl-5f2c", "1 requeued, 0 not requeued"),
    ),
    "python -m shared.dead_letters requeue --all --stream chat": Expect(
        code=1,
        prints=(
            "requeued {chat_dead}: chat twitch:m-82 on demo",
            "not requeued {broken_dead}",
            "1 requeued, 1 not requeued (left in the dead-letter streams)",
        ),
        absent=("{tip_dead}",),
    ),
    "redis-cli -c XDEL 'events:{p32}:dead' <entry-id>": Expect(
        servers=BOTH, fill={"<entry-id>": "broken_dead_entry"}, prints=("1",)
    ),
    # live figures
    "redis-cli -c HGETALL 'metrics:{p32}:demo'": Expect(
        servers=BOTH,
        prints=("is_live", "engagement_score", "viewer_count", "{stream_id}", "version"),
    ),
    "redis-cli -c HGET 'metrics:{p32}:demo' engagement_score": Expect(
        servers=BOTH, matches=r"^[0-9]+(\.[0-9]+)?$"
    ),
    "redis-cli -c ZRANGE 'analytics:{p32}:demo:clock' 0 -1 WITHSCORES": Expect(
        servers=BOTH, prints=("now",)
    ),
    'curl -s -H "Authorization: Bearer $DASHBOARD_TOKEN" '
    "http://127.0.0.1:8000/api/channels/demo/metrics": Expect(
        needs=("curl",), prints=('"channel":"demo"', '"is_live":true', '"stream_id":"{stream_id}"')
    ),
    # the bandit
    "redis-cli -c HGETALL 'bandit:{p32}:demo'": Expect(
        servers=BOTH, prints=("talk:alpha", "gameplay:beta", "music:updates", "updates")
    ),
    "redis-cli -c XREVRANGE 'decisions:{p32}:demo' + - COUNT 5": Expect(
        servers=BOTH,
        prints=("decided_by", "bandit", "fallback", "no Claude advisor", "orchestrator-1"),
    ),
    "redis-cli -c HGETALL 'orchestrator:{p32}:on_air:demo'": Expect(
        servers=BOTH, prints=("activity", "since_ms", "{stream_id}", "at_ms")
    ),
    'curl -s -H "Authorization: Bearer $DASHBOARD_TOKEN" '
    "http://127.0.0.1:8000/api/channels/demo/bandit": Expect(
        needs=("curl",), prints=('"channel":"demo"', '"arm":"gameplay"', '"mean":')
    ),
    # scaling
    "redis-cli -c ZRANGE orchestrator:replicas 0 -1 WITHSCORES": Expect(
        servers=BOTH, prints=("orchestrator-1", "orchestrator-2")
    ),
    "redis-cli -c GET 'orchestrator:{p32}:lease:demo'": Expect(
        servers=BOTH, prints=("orchestrator-1",)
    ),
    "redis-cli -c PTTL 'orchestrator:{p32}:lease:demo'": Expect(
        servers=BOTH, matches=r"^[1-9][0-9]{3,}$"
    ),
    # bandit backup and restore
    SAVE_SNIPPET: Expect(
        prints=("saved demo to data/bandit_state.json",),
        files=("data/bandit_state/demo.json",),
    ),
    "mkdir -p backups && cp -r data/bandit_state "
    '"backups/bandit_state-$(date +%Y%m%d-%H%M)"': Expect(
        files=("backups/bandit_state-*/demo.json",)
    ),
    LOAD_SNIPPET: Expect(prints=("demo {'talk': ", "'gameplay': 0.7")),
    """redis-cli -c -D "" --raw DUMP 'bandit:{p32}:demo' > bandit-demo.dump""": Expect(
        servers=BOTH, files=("bandit-demo.dump",)
    ),
    "redis-cli -c -x RESTORE 'bandit:{p32}:demo:restoring' 0 < bandit-demo.dump": Expect(
        servers=BOTH, prints=("OK",)
    ),
    "redis-cli -c RENAME 'bandit:{p32}:demo:restoring' 'bandit:{p32}:demo'": Expect(
        servers=BOTH, prints=("OK",)
    ),
    # rotating secrets
    "redis-cli -c XREVRANGE 'decisions:{p32}:demo' + - COUNT 1": Expect(
        servers=BOTH, prints=("decided_by",)
    ),
    'REDISCLI_AUTH="$OLD_REDIS_PASSWORD" redis-cli ACL SETUSER default ">$NEW_REDIS_PASSWORD"': (
        Expect(servers=("password",), prints=("OK",))
    ),
    'REDISCLI_AUTH="$NEW_REDIS_PASSWORD" redis-cli PING': Expect(
        servers=("password",), prints=("PONG",)
    ),
    'REDISCLI_AUTH="$NEW_REDIS_PASSWORD" redis-cli ACL SETUSER default "<$OLD_REDIS_PASSWORD"': (
        Expect(servers=("password",), prints=("OK",))
    ),
}
"""Doc command (as :func:`command_key` spells it; a trailing `` ...`` matches a prefix)."""

NOT_RUN: dict[str, str] = {
    "docker compose -f docker-compose.yml -f docker-compose.cluster.yml up --build": (
        "needs Docker (tests/deploy/test_compose_cluster.py runs the file's commands)"
    ),
    "docker compose -f docker-compose.yml -f docker-compose.cluster.yml exec redis "
    "redis-cli -c CLUSTER INFO": "needs Docker and the compose stack",
    "docker compose -f docker-compose.yml -f docker-compose.cluster.yml logs "
    "redis-cluster-create": "needs Docker and the compose stack",
    "docker compose up -d --scale orchestrator=3": "needs Docker and the compose stack",
    "docker compose up -d --force-recreate ingest": "needs Docker and the compose stack",
    "REPLICA_ID=orchestrator-2 ORCHESTRATOR_PORT=8012 python -m services.orchestrator": (
        "a service that runs until stopped (tests/orchestrator/test_scaling.py runs replicas)"
    ),
    'curl -s -H "Client-Id: $TWITCH_CLIENT_ID" -H "Authorization: Bearer $TWITCH_APP_TOKEN" '
    "'https://api.twitch.tv/helix/eventsub/subscriptions?status=enabled'": (
        "talks to Twitch's Helix API with real credentials"
    ),
    'curl -s -X DELETE -H "Client-Id: $TWITCH_CLIENT_ID" -H "Authorization: Bearer '
    '$TWITCH_APP_TOKEN" "https://api.twitch.tv/helix/eventsub/subscriptions?id=$SUBSCRIPTION_ID"': (
        "deletes a real Twitch EventSub subscription"
    ),
    "curl -s -X POST https://id.twitch.tv/oauth2/revoke -d "
    '"client_id=$TWITCH_CLIENT_ID&token=$OLD_TWITCH_USER_TOKEN"': "revokes a real Twitch token",
}
"""Doc commands that cannot run in a test, each with the reason."""
