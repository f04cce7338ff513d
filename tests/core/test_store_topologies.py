"""The store on every Redis topology that ``IDP_REDIS_URL`` can name, on real servers.

The behaviour tests of ``tests/core/test_store.py`` run again here (imported, not
copied) against one Redis server, a Sentinel set (primary, replica, three sentinels)
and a three-node Cluster, each started once for this module on free ports. Then what
only a highly available topology has: a failover under load, a cluster node restart,
and the provider's own flows (sign-in, code, token, introspection) on each.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from idp.app import create_app
from idp.core.runtime import Runtime
from idp.core.store import RedisStore, StoreUnavailable
from tests.conftest import Backend, EnglishClient, make_settings

# The behaviour tests, collected here a second time with this module's `backend`.
from tests.core.test_store import (  # noqa: F401 - collected by pytest
    s,
    test_a_store_starts_undisrupted,
    test_add_only_when_absent,
    test_counters_start_their_window_on_first_increment,
    test_exists_counts_live_keys,
    test_get_many_reads_several_keys_at_once,
    test_get_many_refuses_keys_in_several_hash_slots,
    test_parallel_increments_are_not_lost,
    test_parallel_takes_let_exactly_one_win,
    test_set_get_delete,
    test_sets,
    test_store_fixture_matches_backend,
    test_take_is_single_use,
    test_values_expire,
)
from tests.oauth_support import RP, register
from tests.redis_servers import (
    Cluster,
    SentinelSet,
    running_cluster,
    running_redis,
    running_sentinels,
    wait_until,
)
from tests.support import create_user

TOPOLOGIES = ["single", "sentinel", "cluster"]
RecordProperty = Callable[[str, object], None]


@pytest.fixture(scope="session", autouse=True)
def _redis_binaries() -> None:
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not on PATH: these tests start their own servers")


@dataclass
class Topology:
    kind: str
    url: str


@pytest.fixture(scope="module", params=TOPOLOGIES)
def redis_topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "single":
        with running_redis(directory) as server:
            yield Topology("single", f"redis://127.0.0.1:{server.port}/0")
    elif request.param == "sentinel":
        with running_sentinels(directory) as sentinels:
            yield Topology("sentinel", sentinels.url)
    else:
        with running_cluster(directory) as cluster:
            yield Topology("cluster", cluster.url)


@pytest.fixture
def backend(redis_topology: Topology, sqlite_template: Path, tmp_path: Path) -> Backend:
    """Overrides the suite's back end: the store of the topology under test, a fresh
    namespace per test (the servers are this module's own)."""
    database = tmp_path / "idp.sqlite3"
    shutil.copyfile(sqlite_template, database)
    namespace = f"idp-test:{uuid.uuid4().hex[:8]}:"
    return Backend("production", f"sqlite:///{database}", redis_topology.url, namespace)


def test_the_store_is_built_for_the_topology(
    redis_topology: Topology, backend: Backend, tmp_path: Path
) -> None:
    store = backend.make_store(tmp_path)
    try:
        assert isinstance(store, RedisStore)
        assert store.topology == redis_topology.kind
        store.ping()
    finally:
        store.close()


def test_sign_in_code_flow_token_and_introspection(
    redis_topology: Topology, backend: Backend, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, backend)
    assert settings.redis_url == redis_topology.url  # accepted by the settings
    store = RedisStore(redis_topology.url, namespace=settings.redis_namespace)
    app: Flask = create_app(settings, store=store)
    app.config["TESTING"] = True
    app.test_client_class = EnglishClient
    try:
        create_user(app)
        _, secret = register(app, "rp", first_party=True, scope="openid profile")
        rp = RP(app, "rp", secret)
        browser = app.test_client()
        tokens, _ = rp.tokens(browser)
        introspected = rp.post(browser, "/introspect", {"token": tokens["access_token"]})
        assert introspected.get_json()["active"] is True
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert browser.get("/userinfo", headers=bearer).status_code == 200
        revoked = rp.post(browser, "/revoke", {"token": tokens["access_token"]})
        assert revoked.status_code == 200
        introspected = rp.post(browser, "/introspect", {"token": tokens["access_token"]})
        assert introspected.get_json() == {"active": False}
        assert browser.get("/userinfo", headers=bearer).status_code == 401
        assert store.disruptions == 0
    finally:
        Runtime.of(app).database.dispose()
        store.close()


# -- failures that only a highly available topology survives


@dataclass
class Load:
    """Threads that use the store without pause; what each operation ended with."""

    store: RedisStore
    codes: list[str]
    stop: threading.Event
    lock: threading.Lock
    taken: Counter[str]
    failures: list[tuple[float, BaseException]]
    successes: list[float]

    def run(self, worker: int) -> None:
        chooser = random.Random(worker)  # noqa: S311 - test data, not a secret
        counter = 0
        while not self.stop.is_set():
            counter += 1
            key = f"w{worker}:{counter}"
            code = chooser.choice(self.codes)
            try:
                self.store.set(key, b"v", 30)
                self.store.get(key)
                self.store.incr(f"w{worker}:hits", 30)
                if self.store.take(code) is not None:
                    with self.lock:
                        self.taken[code] += 1
            except BaseException as exc:  # noqa: BLE001 - every kind is recorded and judged
                with self.lock:
                    self.failures.append((time.monotonic(), exc))
                time.sleep(0.02)
            else:
                with self.lock:
                    self.successes.append(time.monotonic())


def test_sentinel_failover_under_load(tmp_path: Path, record_property: RecordProperty) -> None:
    with running_sentinels(tmp_path) as sentinels:
        store = RedisStore(sentinels.url, namespace="idp:")
        try:
            _failover_under_load(sentinels, store, record_property)
        finally:
            store.close()


def _failover_under_load(
    sentinels: SentinelSet, store: RedisStore, record_property: RecordProperty
) -> None:
    codes = [f"code:{n}" for n in range(3000)]
    for code in codes:
        store.set(code, code.encode(), 60)
    load = Load(store, codes, threading.Event(), threading.Lock(), Counter(), [], [])
    threads = [threading.Thread(target=load.run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        assert load.successes, "no operation succeeded before the failover"
        assert store.disruptions == 0
        killed_at = time.monotonic()
        sentinels.primary.kill()
        wait_until(
            lambda: sentinels.primary_port() == sentinels.replica.port,
            timeout=20,
            what="the sentinels promote the replica",
        )
        wait_until(
            lambda: any(t > killed_at and t > _last(load.failures) for t in load.successes[-50:]),
            timeout=10,
            what="operations succeed again after the failover",
        )
        time.sleep(1.0)  # keep the load on the new primary for a while
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    wrong = [exc for _, exc in load.failures if not isinstance(exc, StoreUnavailable)]
    assert not wrong, f"failures other than StoreUnavailable: {wrong[:3]!r}"
    assert load.failures, "the failover went unnoticed: the test did not test it"
    outage = _last(load.failures) - killed_at
    recovered = min(t for t in load.successes if t > _last(load.failures)) - killed_at
    record_property("sentinel_outage_seconds", round(outage, 2))
    record_property("sentinel_recovery_seconds", round(recovered, 2))
    print(
        f"sentinel failover: {len(load.failures)} StoreUnavailable, last {outage:.2f} s "
        f"after the kill; all clear at {recovered:.2f} s; {len(load.successes)} rounds ok, "
        f"{sum(load.taken.values())} single-use values taken once each"
    )
    assert recovered < 15
    assert store.disruptions >= 1  # the new primary is a server never seen before
    assert load.taken, "no single-use value was taken: the test did not test it"
    assert max(load.taken.values()) == 1, "a single-use value was taken twice"
    # and a write after the failover is on the new primary, the former replica
    store.set("after", b"failover", 30)
    assert sentinels.replica.ask("GET", "idp:after") == b"failover"


def _last(failures: list[tuple[float, BaseException]]) -> float:
    return failures[-1][0] if failures else 0.0


def test_a_cluster_failover_and_a_node_restart_are_disruptions(tmp_path: Path) -> None:
    with running_cluster(tmp_path, replicas=1) as cluster:
        store = RedisStore(cluster.url, namespace="idp:")
        try:
            _cluster_failover_and_restart(cluster, store)
        finally:
            store.close()


def _cluster_failover_and_restart(cluster: Cluster, store: RedisStore) -> None:
    keys = [f"k{n}" for n in range(30)]  # spread over every primary's slots
    for key in keys:
        store.set(key, b"v", 60)
    assert store.exists(*keys) == len(keys)
    assert store.disruptions == 0  # three primaries met for the first time: no disruption
    errors: list[BaseException] = []

    def all_keys_writable() -> bool:
        try:
            for key in keys:
                store.set(key, b"again", 60)
        except Exception as exc:  # noqa: BLE001 - every kind is recorded and judged
            errors.append(exc)
            return False
        return True

    # the first primary dies: its replica takes over its slots
    killed_at = time.monotonic()
    cluster.primaries[0].kill()
    wait_until(all_keys_writable, timeout=20, what="every slot writable after the failover")
    print(f"cluster failover: writable again after {time.monotonic() - killed_at:.2f} s")
    assert errors, "no operation failed while the primary was down: nothing was tested"
    assert all(isinstance(exc, StoreUnavailable) for exc in errors), errors[:3]
    assert cluster.is_primary(cluster.replicas[0])
    assert store.disruptions == 1
    # a primary without a replica restarts, empty, as the same member
    cluster.restart(cluster.primaries[1])
    wait_until(all_keys_writable, timeout=20, what="every slot writable after the restart")
    assert all(isinstance(exc, StoreUnavailable) for exc in errors), errors[:3]
    assert store.disruptions == 2
    assert store.exists(*keys) == len(keys)
    assert store.get_many("{rv}:a", "{rv}:b") == [None, None]
