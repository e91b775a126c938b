"""A password-protected cluster: the password in REDIS_URL reaches every node.

The nodes run with ``requirepass`` and ``masterauth`` (replicas authenticate to
their masters too), so the client must authenticate on each node it is sent to,
not only on the one REDIS_URL names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.exceptions import AuthenticationError, RedisClusterException

from shared.redis_client import connect_settings
from shared.redis_cluster_server import LocalCluster, local_cluster
from shared.settings import BaseServiceSettings

PASSWORD = "cluster-test-secret"


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[LocalCluster]:
    """A cluster whose every node requires :data:`PASSWORD`."""
    with local_cluster(password=PASSWORD) as cluster:
        yield cluster


def settings_for(url: str) -> BaseServiceSettings:
    return BaseServiceSettings(_env_file=None, redis_url=url, redis_cluster=True)  # type: ignore[call-arg]


async def test_the_password_in_the_url_reaches_every_master(
    password_cluster: LocalCluster, key_prefix: str
) -> None:
    client = connect_settings(settings_for(password_cluster.url))
    try:
        keys = [f"{key_prefix}{n}" for n in range(100)]
        for key in keys:
            await client.set(key, "1")
        nodes = {str(client.get_node_from_key(key).name) for key in keys}  # type: ignore[attr-defined]
        assert nodes == {m.address for m in password_cluster.masters()}
        for key in keys:
            await client.delete(key)
    finally:
        await client.aclose()


async def test_a_wrong_password_is_refused_not_retried_into_a_hang(
    password_cluster: LocalCluster,
) -> None:
    node = password_cluster.nodes[0].address
    client = connect_settings(settings_for(f"redis://:wrong@{node}/0"))
    try:
        with pytest.raises((AuthenticationError, RedisClusterException)) as raised:
            await client.ping()
        assert "WRONGPASS" in str(raised.value) or "password" in str(raised.value).lower()
    finally:
        await client.aclose()
