"""The short-lived state store: sessions, codes, nonces, counters.

One small interface, two implementations chosen by configuration:

* ``MemoryStore`` keeps state in this process. It is for one process only (the
  embedded mode); it refuses to be used from a second process.
* ``RedisStore`` keeps state in Redis, shared by every worker and node.

Single-use values are consumed with ``take`` (atomic get-and-delete), so two
parallel redemptions can never both succeed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol, TypeVar

import redis
from redis import crc
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode
from redis.exceptions import CrossSlotTransactionError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from config import redact_url
from config.settings import parse_redis_url

T = TypeVar("T")
log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The store cannot be reached; the message names the URL without its password."""


class StoreMisuse(Exception):
    """The in-process store was used from more than one process."""


class Store(Protocol):
    """Keys are strings, values bytes; every value expires (``ttl`` in seconds)."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: float) -> None: ...

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent; True when this call created the key."""
        ...

    def take(self, key: str) -> bytes | None:
        """Return and delete the value atomically; None if absent or already taken."""
        ...

    def delete(self, *keys: str) -> None: ...

    def exists(self, *keys: str) -> int:
        """How many of the keys exist (one round trip)."""
        ...

    def get_many(self, *keys: str) -> list[bytes | None]:
        """The values of the keys, read together (one round trip, one atomic read: on
        Redis Cluster the keys must share a hash tag, e.g. ``{rv}``)."""
        ...

    def set_add(self, key: str, member: str, ttl: float) -> None:
        """Add to a set; the set's lifetime restarts at ``ttl``."""
        ...

    def set_members(self, key: str) -> frozenset[str]: ...

    def set_remove(self, key: str, *members: str) -> None: ...

    def incr(self, key: str, ttl: float) -> int:
        """Increment a counter; the first increment starts its ``ttl``."""
        ...

    def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key does not exist."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    @property
    def shared(self) -> bool:
        """True when several processes may use the store together."""
        ...

    @property
    def disruptions(self) -> int:
        """How often this process found itself talking to a server instance it had not
        seen before (a restart, a failover): each time, the store may have lost or
        missed data. Starts at 0; only ever grows."""
        ...


class MemoryStore:
    """In-process store for the embedded mode and tests. Its data lives and dies with
    the process, so it is never disrupted while the process lives."""

    shared = False
    disruptions = 0

    def __init__(self, *, namespace: str = "", lock_file: Path | None = None) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._namespace = namespace
        self._pid = os.getpid()
        self._lock_file = lock_file
        self._lock_handle: IO[bytes] | None = None
        self._operations = 0

    def _key(self, key: str) -> str:
        return self._namespace + key

    def _guard(self) -> None:
        if os.getpid() != self._pid:
            raise StoreMisuse(
                "the in-process store was created in another process; with several "
                "worker processes set IDP_REDIS_URL"
            )
        if self._lock_file is not None and self._lock_handle is None:
            with self._lock:
                if self._lock_handle is None:  # another thread may have just taken it
                    self._acquire_process_lock(self._lock_file)

    def _acquire_process_lock(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreMisuse(
                f"another process already uses the in-process store of {path.parent}; "
                "run one worker process, or set IDP_REDIS_URL for several"
            ) from None
        self._lock_handle = handle

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._data[key]
            return None
        return entry[0]

    def _sweep(self, now: float) -> None:
        self._operations += 1
        if self._operations % 1024:
            return
        expired = [key for key, (_, expires) in self._data.items() if expires <= now]
        for key in expired:
            del self._data[key]

    def get(self, key: str) -> bytes | None:
        self._guard()
        with self._lock:
            return self._live(self._key(key), time.monotonic())

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._guard()
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            self._data[self._key(key)] = (value, now + ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        self._guard()
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            full = self._key(key)
            if self._live(full, now) is not None:
                return False
            self._data[full] = (value, now + ttl)
            return True

    def take(self, key: str) -> bytes | None:
        self._guard()
        now = time.monotonic()
        with self._lock:
            value = self._live(self._key(key), now)
            if value is not None:
                del self._data[self._key(key)]
            return value

    def delete(self, *keys: str) -> None:
        self._guard()
        with self._lock:
            for key in keys:
                self._data.pop(self._key(key), None)

    def exists(self, *keys: str) -> int:
        self._guard()
        now = time.monotonic()
        with self._lock:
            return sum(self._live(self._key(key), now) is not None for key in keys)

    def get_many(self, *keys: str) -> list[bytes | None]:
        _one_slot("get_many", keys)
        self._guard()
        now = time.monotonic()
        with self._lock:
            return [self._live(self._key(key), now) for key in keys]

    def set_add(self, key: str, member: str, ttl: float) -> None:
        self._guard()
        now = time.monotonic()
        with self._lock:
            full = self._key(key)
            current = self._live(full, now)
            members = set(json.loads(current)) if current is not None else set()
            members.add(member)
            self._data[full] = (json.dumps(sorted(members)).encode(), now + ttl)

    def set_members(self, key: str) -> frozenset[str]:
        self._guard()
        with self._lock:
            current = self._live(self._key(key), time.monotonic())
            return frozenset(json.loads(current)) if current is not None else frozenset()

    def set_remove(self, key: str, *members: str) -> None:
        self._guard()
        now = time.monotonic()
        with self._lock:
            full = self._key(key)
            current = self._live(full, now)
            if current is None:
                return
            remaining = set(json.loads(current)) - set(members)
            if remaining:
                self._data[full] = (json.dumps(sorted(remaining)).encode(), self._data[full][1])
            else:
                del self._data[full]

    def incr(self, key: str, ttl: float) -> int:
        self._guard()
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            full = self._key(key)
            current = self._live(full, now)
            if current is None:
                self._data[full] = (b"1", now + ttl)
                return 1
            count = int(current) + 1
            self._data[full] = (str(count).encode(), self._data[full][1])
            return count

    def ttl(self, key: str) -> float | None:
        self._guard()
        now = time.monotonic()
        with self._lock:
            full = self._key(key)
            if self._live(full, now) is None:
                return None
            return self._data[full][1] - now

    def ping(self) -> None:
        """Always reachable; does not claim the data directory (CLI commands ping too)."""

    def close(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None


class ServerIdentities:
    """Which Redis server instances this process has talked to, by ``run_id`` (new at
    every start of a server, different on a replica). Each connection reports the
    server it reached as soon as it is made, before any command runs on it, so a
    restart or a failover is noticed before the first answer that the new server gives.

    Servers are grouped by the part of the data they hold: one group for a single
    server or a Sentinel-monitored primary, one per cluster shard (named by its first
    hash slot, which a failover to the shard's replica keeps). The first server seen in
    a group is no disruption; every further one is.
    """

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.disruptions = 0

    def connected(self, connection: redis.connection.AbstractConnection) -> None:
        """``redis_connect_func`` of every connection: set it up as usual, then ask
        the server who it is."""
        connection.on_connect()  # type: ignore[no-untyped-call]
        self.identify(connection)

    def identify(self, connection: redis.connection.AbstractConnection) -> None:
        self.seen(
            _ask(connection, "INFO", "server", read=_run_id) or f"connection-{id(connection)}"
        )

    def identify_cluster_node(self, connection: redis.connection.AbstractConnection) -> None:
        """Called by ``RedisCluster`` on each new node connection, after its own set-up
        (RedisCluster keeps ``redis_connect_func`` for itself and chains this one)."""
        run_id = _ask(connection, "INFO", "server", read=_run_id)
        shard = _ask(connection, "CLUSTER", "NODES", read=_shard_of_myself)
        self.seen(run_id or f"connection-{id(connection)}", shard=shard or "?")

    def seen(self, server: str, *, shard: str = "") -> None:
        with self._lock:
            known = self._seen.setdefault(shard, set())
            if server in known:
                return
            if known:
                self.disruptions += 1
            known.add(server)


def _ask(
    connection: redis.connection.AbstractConnection,
    *command: str,
    read: Callable[[str], str | None],
) -> str | None:
    try:
        connection.send_command(*command)  # type: ignore[no-untyped-call]
        answer = connection.read_response()
    except redis.ResponseError:
        return None  # renamed or refused: every new connection counts as a new server
    text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
    return read(text)


def _run_id(info: str) -> str | None:
    for line in info.splitlines():
        if line.startswith("run_id:"):
            return line.removeprefix("run_id:").strip()
    return None


def _shard_of_myself(nodes: str) -> str | None:
    """From ``CLUSTER NODES``: the first slot of the primary this node is (or
    replicates), e.g. ``slot:5461``; None for a primary without slots."""
    lines = [line.split() for line in nodes.splitlines() if line.strip()]
    by_id = {fields[0]: fields for fields in lines if len(fields) >= 8}
    myself = next((f for f in by_id.values() if "myself" in f[2].split(",")), None)
    if myself is None:
        return None
    primary = by_id.get(myself[3], myself) if myself[3] != "-" else myself
    slots = [item for item in primary[8:] if not item.startswith("[")]  # skip migrations
    if not slots:
        return None
    return f"slot:{min(int(item.split('-')[0]) for item in slots)}"


def key_slot(key: str) -> int:
    """The Redis Cluster hash slot of a key (CRC16 of its hash tag, or of the key)."""
    return crc.key_slot(key.encode())


def _one_slot(operation: str, keys: tuple[str, ...]) -> None:
    if len({key_slot(key) for key in keys}) > 1:
        raise ValueError(
            f"{operation}: the keys must share one hash tag such as {{rv}} so that they "
            f"live in one Redis Cluster hash slot (got {len(keys)} keys in several slots)"
        )


# Redis clients of the three topologies (redis-py types a cluster apart from a server).
_Client = redis.Redis | redis.RedisCluster
_CONNECT_TIMEOUT = 3
_TIMEOUT = 5
_SENTINEL_TIMEOUT = 1
# A failing command is tried again, briefly, then reported unavailable.
_HA_RETRY_ATTEMPTS = 2
_HA_RETRY_CAP_SECONDS = 0.25
# On Sentinel, a single-use value is handed out only once a replica has its deletion
# (or after this wait): a failover right after a take cannot bring the value back.
_REPLICA_WAIT_MILLIS = 100
_NO_REPLICA_PAUSE = 5


class RedisStore:
    """Redis-backed store shared by every worker and node: one server, the primary of
    a Sentinel-monitored service, or a Cluster (``IDP_REDIS_URL``, see
    ``config.settings.parse_redis_url``).

    On a Cluster, every operation on several keys either keeps them in one hash slot
    (``get_many``: the caller gives them one hash tag; the transactions of ``set_add``
    and ``incr`` touch one key) or is split per slot by redis-py (``exists``,
    ``delete``: no atomicity needed).
    """

    shared = True

    def __init__(self, url: str, *, namespace: str = "idp:") -> None:
        if "{" in namespace or "}" in namespace:
            raise ValueError("the store namespace must not contain braces (hash tags)")
        self.url = url
        self._namespace = namespace
        self._servers = ServerIdentities()
        self._topology = parse_redis_url(url)
        self._client: _Client | None = None
        self._client_lock = threading.Lock()
        self._no_replica_until = 0.0
        self._sentinels: Sentinel | None = None
        if self._topology.kind != "cluster":  # a cluster client connects when built
            self._client = self._build_client()

    @property
    def topology(self) -> str:
        """``single``, ``sentinel`` or ``cluster``."""
        return self._topology.kind

    @property
    def disruptions(self) -> int:
        return self._servers.disruptions

    def _build_client(self) -> _Client:
        topology = self._topology
        if topology.kind == "single":
            return redis.Redis.from_url(
                self.url,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_TIMEOUT,
                health_check_interval=30,
                redis_connect_func=self._servers.connected,
            )
        retry = Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=_HA_RETRY_CAP_SECONDS),
            _HA_RETRY_ATTEMPTS,
        )
        if topology.kind == "sentinel":
            sentinels = self._sentinels = Sentinel(  # type: ignore[no-untyped-call]
                list(topology.hosts),
                # each sentinel is asked once, briefly; the next one is asked if it fails
                sentinel_kwargs={
                    "socket_connect_timeout": _SENTINEL_TIMEOUT,
                    "socket_timeout": _SENTINEL_TIMEOUT,
                    "retry": Retry(NoBackoff(), 0),
                },
            )
            primary: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
                topology.service_name,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_TIMEOUT,
                username=topology.username,
                password=topology.password,
                db=topology.db,
                retry=retry,
                health_check_interval=30,
                redis_connect_func=self._servers.connected,
            )
            return primary
        return redis.RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in topology.hosts
            ],
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_TIMEOUT,
            username=topology.username,
            password=topology.password,
            retry=retry,
            health_check_interval=30,
            redis_connect_func=self._servers.identify_cluster_node,
        )

    @property
    def _redis(self) -> _Client:
        """The redis-py client (built on first use for a cluster, whose client connects
        as it is built)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _key(self, key: str) -> str:
        return self._namespace + key

    def _call(self, operation: str, fn: Callable[[_Client], T]) -> T:
        try:
            return fn(self._redis)
        except (redis.RedisError, RedisClusterException) as exc:
            if isinstance(exc, (redis.exceptions.ClusterCrossSlotError, CrossSlotTransactionError)):
                raise  # a programming error, not an outage
            raise StoreUnavailable(
                f"cannot reach the store at {redact_url(self.url)} ({operation}): {exc}"
            ) from None

    def get(self, key: str) -> bytes | None:
        return self._call("get", lambda r: r.get(self._key(key)))  # type: ignore[return-value]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._call("set", lambda r: r.set(self._key(key), value, px=_millis(ttl)))

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        full = self._key(key)
        if self._topology.kind == "sentinel":
            created = self._call(
                "add", lambda r: self._replicated(r, "set", full, value, px=_millis(ttl), nx=True)
            )
        else:
            created = self._call("add", lambda r: r.set(full, value, px=_millis(ttl), nx=True))
        return bool(created)

    def take(self, key: str) -> bytes | None:
        full = self._key(key)
        if self._topology.kind == "sentinel":
            value = self._call("take", lambda r: self._replicated(r, "getdel", full))
            return value if isinstance(value, bytes) else None
        return self._call("take", lambda r: r.getdel(full))  # type: ignore[return-value]

    def _replicated(self, client: _Client, command: str, *args: object, **kwargs: object) -> object:
        """Run one write, then WAIT until a replica has it (same round trip), so that an
        answer this store gives survives a failover to that replica. Without a replica
        (e.g. just after a failover) each wait would time out: then writes are not
        waited for during ``_NO_REPLICA_PAUSE`` seconds."""
        wait = time.monotonic() >= self._no_replica_until
        pipe = client.pipeline(transaction=False)
        getattr(pipe, command)(*args, **kwargs)
        if wait:
            pipe.execute_command("WAIT", 1, _REPLICA_WAIT_MILLIS)
        result, *replicas = pipe.execute()
        if wait and int(replicas[0]) < 1:
            self._no_replica_until = time.monotonic() + _NO_REPLICA_PAUSE
            log.warning(
                "store: no replica acknowledged a write within %d ms; not waiting for "
                "replicas for %d s",
                _REPLICA_WAIT_MILLIS,
                _NO_REPLICA_PAUSE,
            )
        return result

    def delete(self, *keys: str) -> None:
        if keys:
            self._call("delete", lambda r: r.delete(*(self._key(k) for k in keys)))

    def exists(self, *keys: str) -> int:
        if not keys:
            return 0
        count = self._call("exists", lambda r: r.exists(*(self._key(k) for k in keys)))
        return int(count)

    def get_many(self, *keys: str) -> list[bytes | None]:
        if not keys:
            return []
        _one_slot("get_many", keys)
        values = self._call("get_many", lambda r: r.mget([self._key(k) for k in keys]))
        return list(values)  # type: ignore[arg-type]

    def set_add(self, key: str, member: str, ttl: float) -> None:
        full = self._key(key)

        def run(client: _Client) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.sadd(full, member)
            pipe.pexpire(full, _millis(ttl))
            pipe.execute()

        self._call("set_add", run)

    def set_members(self, key: str) -> frozenset[str]:
        members = self._call("set_members", lambda r: r.smembers(self._key(key)))
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def set_remove(self, key: str, *members: str) -> None:
        if members:
            self._call("set_remove", lambda r: r.srem(self._key(key), *members))

    def incr(self, key: str, ttl: float) -> int:
        full = self._key(key)

        def run(client: _Client) -> int:
            pipe = client.pipeline(transaction=True)
            pipe.incr(full)
            pipe.pexpire(full, _millis(ttl), nx=True)
            count, _ = pipe.execute()
            return int(count)

        return self._call("incr", run)

    def ttl(self, key: str) -> float | None:
        millis = self._call("ttl", lambda r: r.pttl(self._key(key)))
        remaining = int(millis)
        if remaining == -2:
            return None
        return None if remaining < 0 else remaining / 1000

    def ping(self) -> None:
        self._call("ping", lambda r: r.ping())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._sentinels is not None:
            for sentinel in self._sentinels.sentinels:
                sentinel.close()


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def build_store(redis_url: str | None, *, data_dir: Path, namespace: str = "idp:") -> Store:
    if redis_url:
        return RedisStore(redis_url, namespace=namespace)
    log.warning(
        "EMBEDDED MODE: short-lived state is kept in this process only; "
        "run one worker, and set IDP_REDIS_URL for production"
    )
    return MemoryStore(namespace=namespace, lock_file=data_dir / "store.lock")
