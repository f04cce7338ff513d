"""Real Redis servers for tests: one server, a Sentinel set, a Cluster.

Each server is its own ``redis-server`` process on a free port of 127.0.0.1, in its
own process group, with its files in a temporary directory and nothing kept on disk
(``--save "" --appendonly no``). Use the context managers (``running_redis``,
``running_sentinels``, ``running_cluster``): they stop every process they started,
also when the test fails. A server can be killed (SIGKILL) and started again on the
same port to test restarts and failovers.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

REDIS_SERVER = "redis-server"
REDIS_CLI = "redis-cli"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def free_port(*, with_bus: bool = False) -> int:
    """A port nobody listens on (and, for a cluster node, its bus port +10000 too)."""
    for _ in range(200):
        port = random.randint(20000, 50000)  # noqa: S311 - a port, not a secret
        wanted = [port, port + 10000] if with_bus else [port]
        if all(_bindable(p) for p in wanted):
            return port
    raise RuntimeError("no free port found in 200 tries")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``condition`` (errors count as not yet) until it holds; seconds it took."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


@dataclass
class RedisProcess:
    """One ``redis-server`` (a data server, a cluster node, or a sentinel)."""

    port: int
    directory: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / f"redis-{self.port}.log"

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [REDIS_SERVER, *self.args],
                cwd=self.directory,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )
        wait_until(self._answers, timeout=START_TIMEOUT, what=f"redis-server on {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server on {self.port} exited: {self.tail()}")
        return bool(self.client().ping())

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ask(self, *command: str) -> object:
        """One command on a fresh connection (never a pooled one that a kill broke)."""
        with self.client() as connection:
            return connection.execute_command(*command)

    def info(self, section: str) -> dict[str, object]:
        with self.client() as connection:
            return dict(connection.info(section))

    def cluster_state(self) -> str:
        answer = self.ask("CLUSTER", "INFO")
        if isinstance(answer, dict):
            return str(answer.get("cluster_state"))
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        return "ok" if "cluster_state:ok" in text else "not ok"

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def data_server_args(port: int, directory: Path, *extra: str) -> list[str]:
    return [
        "--port", str(port), "--bind", HOST, "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--daemonize", "no", *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def _stopping(processes: list[RedisProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.kill()


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisProcess]:
    """One Redis server; ``redis://127.0.0.1:PORT/0``."""
    port = free_port()
    server = RedisProcess(port, directory, data_server_args(port, directory))
    with _stopping([server]):
        server.start()
        yield server


@dataclass
class SentinelSet:
    """A primary, a replica and three sentinels (quorum 2) watching ``service``."""

    service: str
    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def primary_port(self) -> int:
        """The port the sentinels currently name as the primary."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                answer = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                if isinstance(answer, list) and answer:
                    return int(answer[1])
        raise RuntimeError("no sentinel answers")

    def current_primary(self) -> RedisProcess:
        port = self.primary_port()
        return self.primary if port == self.primary.port else self.replica

    def wait_ready(self) -> None:
        """Replica in sync, every sentinel knows the replica and the two other sentinels
        (so that a failover can be agreed at once)."""

        def ready() -> bool:
            primary = self.current_primary()
            other = self.replica if primary is self.primary else self.primary
            if other.process is None or other.info("replication").get("master_link_status") != "up":
                return False
            for sentinel in self.sentinels:
                known = sentinel.ask("SENTINEL", "SENTINELS", self.service)
                replicas = sentinel.ask("SENTINEL", "REPLICAS", self.service)
                if not isinstance(known, list) or len(known) < len(self.sentinels) - 1:
                    return False
                if not isinstance(replicas, list) or not replicas:
                    return False
            return True

        wait_until(ready, timeout=30, what="sentinel set ready")


@contextlib.contextmanager
def running_sentinels(directory: Path, *, service: str = "idp-store") -> Iterator[SentinelSet]:
    primary_port, replica_port = free_port(), free_port()
    primary = RedisProcess(primary_port, directory, data_server_args(primary_port, directory))
    replica = RedisProcess(
        replica_port,
        directory,
        data_server_args(replica_port, directory, "--replicaof", HOST, str(primary_port)),
    )
    sentinels = []
    for _ in range(3):
        port = free_port()
        config = directory / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind {HOST}\ndir {directory}\ndaemonize no\n"
            f"sentinel monitor {service} {HOST} {primary_port} 2\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 3000\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        sentinels.append(RedisProcess(port, directory, [str(config), "--sentinel"]))
    with _stopping([*sentinels, replica, primary]):
        for process in (primary, replica, *sentinels):
            process.start()
        servers = SentinelSet(service, primary, replica, sentinels)
        servers.wait_ready()
        yield servers


@dataclass
class Cluster:
    """Cluster nodes: ``primaries``, each serving a part of the hash slots, and
    ``replicas`` (by default none; ``running_cluster(replicas=1)`` gives the first
    primary one, so that it can fail over)."""

    primaries: list[RedisProcess]
    replicas: list[RedisProcess]

    @property
    def nodes(self) -> list[RedisProcess]:
        return [*self.primaries, *self.replicas]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.primaries)

    def wait_ok(self) -> None:
        """Every running node reports ``cluster_state:ok``."""
        wait_until(
            lambda: all(n.cluster_state() == "ok" for n in self.nodes if n.process is not None),
            timeout=30,
            what="cluster_state:ok on every running node",
        )

    def restart(self, node: RedisProcess) -> None:
        """SIGKILL one node and start it again, empty, as the same cluster member."""
        node.kill()
        node.start()
        self.wait_ok()

    def is_primary(self, node: RedisProcess) -> bool:
        return node.info("replication").get("role") == "master"


def _cluster_node(directory: Path) -> RedisProcess:
    port = free_port(with_bus=True)
    return RedisProcess(
        port,
        directory,
        data_server_args(
            port,
            directory,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(directory / f"nodes-{port}.conf"),
            "--cluster-node-timeout",
            "2000",
        ),
    )


def _wait_in_sync(replica: RedisProcess) -> None:
    wait_until(
        lambda: replica.info("replication").get("master_link_status") == "up",
        timeout=30,
        what=f"replica {replica.port} in sync",
    )


def _cli(*args: str) -> None:
    subprocess.run([REDIS_CLI, *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def running_cluster(directory: Path, *, size: int = 3, replicas: int = 0) -> Iterator[Cluster]:
    primaries = [_cluster_node(directory) for _ in range(size)]
    followers = [_cluster_node(directory) for _ in range(replicas)]
    with _stopping([*followers, *primaries]):
        for node in (*primaries, *followers):
            node.start()
        addresses = [f"{HOST}:{node.port}" for node in primaries]
        _cli("--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes")
        cluster = Cluster(primaries, [])
        cluster.wait_ok()
        leader = primaries[0]
        leader_id = leader.ask("CLUSTER", "MYID")
        for follower in followers:
            _cli(
                "--cluster",
                "add-node",
                f"{HOST}:{follower.port}",
                f"{HOST}:{leader.port}",
                "--cluster-slave",
                "--cluster-master-id",
                leader_id.decode() if isinstance(leader_id, bytes) else str(leader_id),
            )
            _wait_in_sync(follower)
            cluster.replicas.append(follower)
        cluster.wait_ok()
        yield cluster
