"""The cluster profile (docker-compose.cluster.yml) checked without Docker.

The file is parsed and checked against what a six-node cluster in a compose network
needs (fixed addresses the nodes announce, one volume each, healthchecks, the create
job's order, every service on the cluster with ``REDIS_CLUSTER``). Then the file's
own command lines run on loopback: the six ``redis-server`` commands (with a free
port, bus port and 127.0.0.1 substituted for 6379, 16379 and each fixed address) and
the create job's script (with the nodes' loopback addresses substituted for their
service names), which must bring the cluster to ``cluster_state:ok``, skip a second
time, and bring it back after every node was restarted from its own files.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.redis_cluster_server import ClusterNodeInfo, cli_binary, distinct_free_ports
from shared.redis_server import server_binary, terminate
from tests.deploy.files import (
    CLUSTER_OVERRIDE,
    COMPOSE,
    SERVICE_SETTINGS,
    environment,
    load_compose,
    references,
    strings,
)

NODES = ["redis", *(f"redis-{n}" for n in range(2, 7))]
CREATE = "redis-cluster-create"
NETWORK = "redis-cluster"
PORT, BUS_PORT = "6379", "16379"


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return load_compose(CLUSTER_OVERRIDE)


def flag(command: list[str], name: str) -> str:
    """The value after ``name`` in a command line."""
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def node_address(service: dict[str, Any]) -> str:
    return str(service["networks"][NETWORK]["ipv4_address"])


def create_script(cluster: dict[str, Any]) -> str:
    """The create job's shell script, as the container's shell gets it (``$$`` -> ``$``)."""
    command = cluster["services"][CREATE]["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3, command
    script = str(command[2])
    assert references(script) == [], "the script must not depend on compose variables"
    return script.replace("$$", "$")


# ---- the file ---------------------------------------------------------------------------


def test_six_cluster_nodes_replace_the_single_redis(cluster: dict[str, Any]) -> None:
    """``redis`` becomes node 1 (so REDIS_URL and ``exec redis redis-cli`` still work) on a
    volume of its own: the single server's data is not mixed into a cluster node."""
    base = load_compose(COMPOSE)
    services = cluster["services"]
    volumes = set()
    for name in NODES:
        node = services[name]
        command = node["command"]
        assert command[0] == "redis-server", name
        assert flag(command, "--cluster-enabled") == "yes", name
        assert flag(command, "--cluster-config-file") == "nodes.conf", name
        assert flag(command, "--appendonly") == "yes", name
        assert flag(command, "--cluster-port") == BUS_PORT, name
        assert int(flag(command, "--cluster-node-timeout")) >= 1000, name
        assert node["image"] == base["services"]["redis"]["image"], name
        assert "redis-cli ping" in " ".join(node["healthcheck"]["test"]), name
        assert node["restart"] == "unless-stopped", name
        [mount] = node["volumes"]
        volume, target = mount.split(":")
        assert target == "/data" and volume in cluster["volumes"], name
        volumes.add(volume)
    assert len(volumes) == len(NODES), "one volume per node"
    assert "redis-data" not in volumes


def test_nodes_announce_fixed_addresses_outside_the_dynamic_range(
    cluster: dict[str, Any],
) -> None:
    """Redis 7's cluster bus knows nodes only by IP, and nodes.conf keeps them: fixed
    addresses, announced, survive containers being recreated with new IPs."""
    [pool] = cluster["networks"][NETWORK]["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    dynamic = ipaddress.ip_network(pool["ip_range"])
    assert dynamic.subnet_of(subnet)  # type: ignore[arg-type]
    addresses = []
    for name in NODES:
        node = cluster["services"][name]
        address = ipaddress.ip_address(node_address(node))
        assert address in subnet and address not in dynamic, name
        assert flag(node["command"], "--cluster-announce-ip") == str(address), name
        assert list(node["networks"]) == [NETWORK], name
        addresses.append(address)
    assert len(set(addresses)) == len(NODES)


def test_the_create_job_lists_every_node_and_waits_for_all_of_them(
    cluster: dict[str, Any],
) -> None:
    job = cluster["services"][CREATE]
    script = create_script(cluster)
    assert "--cluster create $NODES --cluster-replicas 1 --cluster-yes" in script
    [line] = [line for line in script.splitlines() if line.strip().startswith("NODES=")]
    listed = line.split("=", 1)[1].strip('"').split()
    assert listed == [f"{name}:{PORT}" for name in NODES]
    assert job["depends_on"] == {name: {"condition": "service_healthy"} for name in NODES}
    assert job["restart"] == "no", "a one-shot job"
    assert job["image"] == cluster["services"]["redis"]["image"]
    assert NETWORK in job["networks"]


def test_every_service_uses_the_cluster_once_it_is_created(cluster: dict[str, Any]) -> None:
    services = cluster["services"]
    for name in SERVICE_SETTINGS:
        service = services[name]
        env = environment(service)
        assert env["REDIS_CLUSTER"] == "true", name
        host = env["REDIS_URL"].removeprefix("redis://").split("/")[0]
        assert host == f"redis:{PORT}" and "redis" in NODES, name
        assert service["depends_on"] == {CREATE: {"condition": "service_completed_successfully"}}, (
            name
        )
        assert set(service["networks"]) == {"default", NETWORK}, name
        assert "redis_cluster" in SERVICE_SETTINGS[name].model_fields


def test_redis_exporter_reads_the_cluster(cluster: dict[str, Any]) -> None:
    exporter = cluster["services"]["redis-exporter"]
    assert environment(exporter)["REDIS_EXPORTER_IS_CLUSTER"] == "true"
    assert NETWORK in exporter["networks"]
    assert "redis-exporter" in load_compose(COMPOSE)["services"]


def test_the_file_names_no_secret_and_no_variable(cluster: dict[str, Any]) -> None:
    assert [ref for text in strings(cluster) for ref in references(text)] == []


# ---- the command lines, run on loopback ------------------------------------------------


class LoopbackNodes:
    """The compose file's six node commands as local processes, each in its own directory."""

    def __init__(self, cluster: dict[str, Any], root: Path) -> None:
        ports = distinct_free_ports(2 * len(NODES))
        self.ports = dict(zip(NODES, ports[::2], strict=True))
        self.bus_ports = dict(zip(NODES, ports[1::2], strict=True))
        self.commands = {name: cluster["services"][name]["command"] for name in NODES}
        self.root = root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, name: str) -> list[str]:
        """The file's command, with loopback for the fixed address and free ports."""
        local = {
            BUS_PORT: str(self.bus_ports[name]),
            flag(self.commands[name], "--cluster-announce-ip"): "127.0.0.1",
        }
        args = [local.get(arg, arg) for arg in self.commands[name]]
        assert args[0] == "redis-server"
        return [server_binary(), *args[1:], "--port", str(self.ports[name]), "--bind", "127.0.0.1"]

    def start(self) -> None:
        for name in NODES:
            directory = self.root / name
            directory.mkdir(exist_ok=True)
            self.processes[name] = subprocess.Popen(  # cwd: the image's WORKDIR /data
                self.command(name), cwd=directory, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for name in NODES:
            self.client(name).ping()  # the healthcheck the job waits for

    def stop(self) -> None:
        for process in self.processes.values():
            terminate(process)

    def client(self, name: str) -> redis.Redis:
        from redis.backoff import ConstantBackoff
        from redis.retry import Retry

        return redis.Redis(
            port=self.ports[name], decode_responses=True,
            retry=Retry(ConstantBackoff(0.1), 50),
            retry_on_error=[redis.ConnectionError],
        )  # fmt: skip

    def run_create_job(self, script: str) -> subprocess.CompletedProcess[str]:
        for name in NODES:
            script = script.replace(f"{name}:{PORT}", f"127.0.0.1:{self.ports[name]}")
        return subprocess.run(
            ["sh", "-c", script], capture_output=True, text=True, timeout=180, check=False,
            env={"PATH": str(Path(cli_binary()).parent) + ":/usr/bin:/bin"},
        )  # fmt: skip

    def cluster_info(self) -> dict[str, str]:
        raw = str(self.client("redis").execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
        return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)

    def topology(self) -> list[ClusterNodeInfo]:
        raw = str(self.client("redis").execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
        return [ClusterNodeInfo.parse(line) for line in raw.splitlines() if line.strip()]


@pytest.fixture
def loopback(cluster: dict[str, Any], tmp_path: Path) -> Iterator[LoopbackNodes]:
    nodes = LoopbackNodes(cluster, tmp_path)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def test_the_files_commands_create_a_cluster_once_and_bring_it_back_after_a_restart(
    cluster: dict[str, Any], loopback: LoopbackNodes
) -> None:
    script = create_script(cluster)

    first = loopback.run_create_job(script)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[OK] All 16384 slots covered." in first.stdout
    assert loopback.cluster_info()["cluster_state"] == "ok"
    topology = loopback.topology()
    masters = [node for node in topology if node.is_master and node.slots]
    assert len(topology) == 6 and len(masters) == 3
    assert all(node.address.startswith("127.0.0.1:") for node in topology), "announced"

    again = loopback.run_create_job(script)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cluster_state:ok already: nothing to create" in again.stdout
    assert "--cluster create" not in again.stdout and "Performing" not in again.stdout

    loopback.stop()  # `docker compose down` then `up`: every node from its nodes.conf
    loopback.start()
    recovered = loopback.run_create_job(script)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "Performing" not in recovered.stdout, "an existing cluster is never re-created"
    assert recovered.stdout.rstrip().endswith("cluster_state:ok")
    assert loopback.cluster_info()["cluster_state"] == "ok"
    assert {n.node_id for n in loopback.topology()} == {n.node_id for n in topology}
