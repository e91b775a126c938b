"""A real local Redis Cluster: six ``redis-server`` processes in cluster mode.

Tests (and later ``make bench`` and the cluster compose profile's checks) use
:class:`LocalCluster` to run the services on a cluster shaped like production's
smallest: three masters, one replica each, created with ``redis-cli --cluster
create``. Every node listens on 127.0.0.1 on a free port with its cluster bus on
another free port (``cluster-port``, Redis 7.0+), keeps its data and
``nodes.conf`` in a private temporary directory, and is stopped, directory and
all, by :meth:`LocalCluster.close`: nothing here touches a server it did not
start. Every wait is bounded and fails with what it was waiting for.

:meth:`LocalCluster.kill_master` SIGKILLs a master and waits until its replica
has been promoted and the cluster answers ``cluster_state:ok`` again, which is
the failover the services must survive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis

from shared.redis_server import RedisUnavailable, free_port, server_binary, terminate

NODE_TIMEOUT_MS = 1000
"""``cluster-node-timeout``: how long a silent master is waited for before failover.

Production uses Redis's default (15 s); a test cluster fails over within about
two seconds of a kill with this."""


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES``: a node's id, address, role and its master (if a replica)."""

    node_id: str
    address: str
    is_master: bool
    master_id: str | None
    failed: bool
    slots: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, line: str) -> ClusterNodeInfo:
        """Parse ``<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...``."""
        fields = line.split()
        flags = fields[2].split(",")
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated, not owned
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        return cls(
            node_id=fields[0],
            address=fields[1].split("@")[0],
            is_master="master" in flags,
            master_id=None if fields[3] == "-" else fields[3],
            failed="fail" in flags or "fail?" in flags,
            slots=tuple(slots),
        )


def cli_binary() -> str:
    """Path of ``redis-cli``: ``PATH`` first, then the one beside the ``redis-server`` in use."""
    found = shutil.which("redis-cli")
    if found:
        return found
    beside = Path(server_binary()).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    raise RedisUnavailable(
        "no redis-cli found: install Redis 7 (apt-get install redis-server redis-tools)"
    )


class ClusterNode:
    """One ``redis-server --cluster-enabled yes`` child process with its own directory."""

    def __init__(
        self, root: Path, node_timeout_ms: int, ports: tuple[int, int], password: str = ""
    ) -> None:
        self.port, self.bus_port = ports
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.dir = root / str(self.port)
        self.dir.mkdir()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as the cluster names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process (again, after a kill: it rejoins from its ``nodes.conf``)."""
        args = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--cluster-replica-validity-factor",
            "0",  # a replica always stands for election, however long its link was down
            "--shutdown-timeout",
            "0",  # a stopping master does not wait for its replicas to catch up (7.0+)
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.password:  # clients and the replicas' link to their master both need it
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self._process = subprocess.Popen(  # own session: a Ctrl-C meant for us must not kill it
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        """A plain (non-cluster) client on this one node."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
            password=self.password or None,
        )

    def ask(self, *command: str) -> str | None:
        """Run one command on this node; None when it does not answer."""
        client = self.client()
        try:
            return str(client.execute_command(*command))  # type: ignore[no-untyped-call]
        except (redis.exceptions.RedisError, OSError):
            return None
        finally:
            client.close()

    def replication(self) -> dict[str, Any]:
        """``INFO replication`` of this node, parsed (empty when it does not answer)."""
        client = self.client()
        try:
            return dict(client.info("replication"))
        except (redis.exceptions.RedisError, OSError):
            return {}
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=5)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self._process is not None:
            terminate(self._process)


class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, on loopback (see module doc)."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
        password: str = "",
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters_wanted = masters
        self.replicas = replicas
        self.password = password
        self._dir = tempfile.TemporaryDirectory(prefix="streamloop-cluster-")
        root = Path(self._dir.name)
        count = masters * (1 + replicas)
        ports = distinct_free_ports(2 * count)
        self.nodes = [
            ClusterNode(root, node_timeout_ms, (ports[2 * i], ports[2 * i + 1]), password)
            for i in range(count)
        ]

    @property
    def url(self) -> str:
        """``redis://`` URL (with the password) of the first node still running: any node
        is a valid entry point."""
        node = next(n for n in self.nodes if n.running)
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{node.address}/0"

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every node, running or not."""
        return [node.address for node in self.nodes]

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every node, create the cluster and wait until it is ready to serve."""
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self._wait(deadline, f"node {node.address} to answer PING", partial(_pings, node))
        self._create(deadline)
        self.wait_ready(deadline - time.monotonic())

    def _create(self, deadline: float) -> None:
        command = [
            cli_binary(),
            "--cluster",
            "create",
            *self.addresses,
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password  # not on the command line, where ps shows it
        try:
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise RedisUnavailable("redis-cli --cluster create did not finish in time") from error
        if done.returncode != 0:
            raise RedisUnavailable(
                f"redis-cli --cluster create failed ({done.returncode}): "
                f"{(done.stdout + done.stderr)[-2000:]}"
            )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok``, agrees on the masters,
        and every replica's link to its master is up (so a failover can happen)."""
        deadline = time.monotonic() + timeout_s
        self._wait(deadline, "cluster_state:ok on every running node", self._all_ok)
        self._wait(deadline, "every replica's link to its master", self._links_up)

    def _all_ok(self) -> bool:
        running = [node for node in self.nodes if node.running]
        views = set()
        for node in running:
            info = node.ask("CLUSTER", "INFO") or ""
            if "cluster_state:ok" not in info:
                return False
            try:
                masters = self._masters_seen_by(node)
            except RedisUnavailable:
                return False  # asked again on the next poll
            views.add(tuple(sorted(m.address for m in masters)))
        return len(views) == 1 and len(next(iter(views))) == self.masters_wanted

    def _links_up(self) -> bool:
        """Every running node but the masters is a replica in sync with its master.

        Counted, not just checked where a node already is a replica: right after
        ``redis-cli --cluster create`` every node still says ``role:master`` (the
        replicas are attached moments later and then make their first full sync), and
        a master killed before its replica synced leaves its slots to a replica
        without the data.
        """
        running = [node for node in self.nodes if node.running]
        synced = 0
        for node in running:
            info = node.replication()
            if info.get("role") != "slave":
                continue
            if info.get("master_link_status") != "up" or info.get("master_sync_in_progress"):
                return False
            synced += 1
        return synced == len(running) - self.masters_wanted

    def _masters_seen_by(self, node: ClusterNode) -> list[ClusterNodeInfo]:
        seen = self.topology(node, timeout_s=0)
        return [n for n in seen if n.is_master and not n.failed and n.slots]

    def topology(
        self, via: ClusterNode | None = None, *, timeout_s: float = 10.0
    ) -> list[ClusterNodeInfo]:
        """``CLUSTER NODES`` as seen by ``via`` (default: the first running node).

        Asks again for up to ``timeout_s`` (a loaded machine can be slow to answer),
        then raises :class:`RedisUnavailable`: an empty answer would read as "no nodes".
        """
        node = via or next(n for n in self.nodes if n.running)
        deadline = time.monotonic() + timeout_s
        while (raw := node.ask("CLUSTER", "NODES")) is None:
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"{node.address} did not answer CLUSTER NODES")
            time.sleep(0.05)
        return [ClusterNodeInfo.parse(line) for line in raw.splitlines() if line.strip()]

    def masters(self) -> list[ClusterNodeInfo]:
        """The masters serving slots now, by address."""
        return sorted(
            (n for n in self.topology() if n.is_master and not n.failed and n.slots),
            key=lambda n: n.address,
        )

    def node(self, address: str) -> ClusterNode:
        """The :class:`ClusterNode` at ``host:port``."""
        return next(node for node in self.nodes if node.address == address)

    def kill_master(self, address: str | None = None, timeout_s: float = 30.0) -> str:
        """SIGKILL a master (the first by address when None) and wait for its replica's
        promotion and ``cluster_state:ok``; return the promoted replica's address."""
        masters = self.masters()
        victim = next(m for m in masters if address in (None, m.address))
        replicas = [n for n in self.topology() if n.master_id == victim.node_id]
        if not replicas:
            raise RuntimeError(f"master {victim.address} has no replica to promote")
        self.node(victim.address).kill()
        deadline = time.monotonic() + timeout_s

        def promoted() -> str | None:
            try:
                seen = {n.node_id: n for n in self.topology(timeout_s=0)}
            except (StopIteration, RedisUnavailable):
                return None
            for replica in replicas:
                now = seen.get(replica.node_id)
                if now is not None and now.is_master and not now.failed and now.slots:
                    return now.address
            return None

        self._wait(deadline, f"a replica of {victim.address} to be promoted", promoted)
        self.wait_ready(max(1.0, deadline - time.monotonic()))
        return str(promoted())

    def restart(self, address: str, timeout_s: float = 30.0) -> None:
        """Start a killed node again and wait until every running node sees it healthy;
        it rejoins as a replica of whoever took its slots."""
        deadline = time.monotonic() + timeout_s
        self.node(address).start()

        def rejoined() -> bool:
            for node in self.nodes:
                if not node.running:
                    continue
                try:
                    seen = [n for n in self.topology(node, timeout_s=0) if n.address == address]
                except RedisUnavailable:
                    return False
                if not seen or seen[0].failed or (seen[0].is_master and not seen[0].slots):
                    return False
            return True

        self._wait(deadline, f"{address} to rejoin the cluster", rejoined)
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    @staticmethod
    def _wait(deadline: float, what: str, ready: Callable[[], object]) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every node and delete the cluster's directory."""
        for node in self.nodes:
            node.stop()
        self._dir.cleanup()


def _pings(node: ClusterNode) -> bool:
    if not node.running:
        raise RedisUnavailable(f"redis-server on port {node.port} exited at start")
    return node.ask("PING") is not None


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different ports nothing listens on right now (node and bus ports)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@contextlib.contextmanager
def local_cluster(
    masters: int = 3, replicas: int = 1, *, password: str = ""
) -> Iterator[LocalCluster]:
    """A started :class:`LocalCluster`, closed afterwards whatever happens."""
    cluster = LocalCluster(masters, replicas, password=password)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
