"""The same behaviour tests run against the in-process store and Redis."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.core.store import MemoryStore, RedisStore, Store, StoreMisuse, StoreUnavailable
from tests.conftest import Backend


@pytest.fixture
def s(store: Store) -> Store:
    return store


def test_set_get_delete(s: Store) -> None:
    assert s.get("a") is None
    s.set("a", b"1", 30)
    assert s.get("a") == b"1"
    s.delete("a")
    assert s.get("a") is None


def test_values_expire(s: Store) -> None:
    s.set("short", b"x", 0.05)
    remaining = s.ttl("short")
    assert remaining is not None
    assert 0 < remaining <= 0.05
    time.sleep(0.12)
    assert s.get("short") is None
    assert s.ttl("short") is None


def test_add_only_when_absent(s: Store) -> None:
    assert s.add("jti", b"1", 30)
    assert not s.add("jti", b"2", 30)
    assert s.get("jti") == b"1"


def test_take_is_single_use(s: Store) -> None:
    s.set("code", b"grant", 30)
    assert s.take("code") == b"grant"
    assert s.take("code") is None


def test_parallel_takes_let_exactly_one_win(s: Store) -> None:
    for round_ in range(5):
        key = f"code-{round_}"
        s.set(key, b"grant", 30)
        results: list[bytes | None] = []
        barrier = threading.Barrier(16)

        def redeem(
            key: str = key,
            barrier: threading.Barrier = barrier,
            results: list[bytes | None] = results,
        ) -> None:
            barrier.wait()
            results.append(s.take(key))

        threads = [threading.Thread(target=redeem) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count(b"grant") == 1
        assert results.count(None) == 15


def test_counters_start_their_window_on_first_increment(s: Store) -> None:
    assert s.incr("fails", 30) == 1
    assert s.incr("fails", 30) == 2
    assert s.incr("fails", 30) == 3
    remaining = s.ttl("fails")
    assert remaining is not None
    assert 29 < remaining <= 30
    s.set("window", b"0", 0.05)
    s.delete("window")
    assert s.incr("window", 0.05) == 1
    time.sleep(0.12)
    assert s.incr("window", 30) == 1


def test_parallel_increments_are_not_lost(s: Store) -> None:
    def bump() -> None:
        for _ in range(50):
            s.incr("hits", 30)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert s.get("hits") == b"400"


def test_memory_store_refuses_a_second_process(tmp_path: Path) -> None:
    first = MemoryStore(lock_file=tmp_path / "store.lock")
    second = MemoryStore(lock_file=tmp_path / "store.lock")
    try:
        first.set("k", b"v", 10)
        with pytest.raises(StoreMisuse, match="IDP_REDIS_URL"):
            second.set("k", b"v", 10)
    finally:
        first.close()
        second.close()


def test_memory_store_refuses_use_after_fork(tmp_path: Path) -> None:
    store = MemoryStore()
    store.set("k", b"v", 10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what happened through the pipe
        try:
            store.get("k")
            os.write(write, b"used")
        except StoreMisuse:
            os.write(write, b"refused")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"refused"
    os.close(read)


@pytest.fixture
def dead_redis() -> Iterator[RedisStore]:
    store = RedisStore("redis://:topsecret@127.0.0.1:1/0")
    yield store
    store.close()


def test_unreachable_redis_is_reported_without_its_password(dead_redis: RedisStore) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        dead_redis.ping()
    assert "127.0.0.1:1" in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_store_fixture_matches_backend(backend: Backend, s: Store) -> None:
    assert s.shared == (backend.name == "production")


def test_exists_counts_live_keys(s: Store) -> None:
    s.set("a", b"1", 30)
    s.set("b", b"1", 0.05)
    assert s.exists("a", "b", "c") == 2
    time.sleep(0.12)
    assert s.exists("a", "b", "c") == 1
    assert s.exists() == 0


def test_sets(s: Store) -> None:
    assert s.set_members("group") == set()
    s.set_add("group", "a", 30)
    s.set_add("group", "b", 30)
    s.set_add("group", "a", 30)
    assert s.set_members("group") == {"a", "b"}
    s.set_remove("group", "a", "zzz")
    assert s.set_members("group") == {"b"}
    s.set_remove("group", "b")
    assert s.set_members("group") == set()
    s.set_add("short", "x", 0.05)
    time.sleep(0.12)
    assert s.set_members("short") == set()


def test_get_many_reads_several_keys_at_once(s: Store) -> None:
    s.set("{rv}:a", b"1", 30)
    s.set("{rv}:c", b"3", 30)
    assert s.get_many("{rv}:a", "{rv}:b", "{rv}:c") == [b"1", None, b"3"]
    assert s.get_many() == []


def test_a_store_starts_undisrupted(s: Store) -> None:
    s.set("x", b"1", 30)
    assert s.get("x") == b"1"
    assert s.disruptions == 0


def test_get_many_refuses_keys_in_several_hash_slots(s: Store) -> None:
    # the same on every back end, so that a caller's mistake shows before Redis Cluster
    with pytest.raises(ValueError, match="hash tag"):
        s.get_many("{rv}:a", "rv:b")
    with pytest.raises(ValueError, match="hash tag"):
        s.get_many("a", "b", "c")
    assert s.get_many("{rv}:a", "{rv}:b") == [None, None]
