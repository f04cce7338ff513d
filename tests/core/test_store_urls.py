"""``IDP_REDIS_URL`` for one server, a Sentinel service and a Cluster: what is accepted,
what stops start-up (naming the variable, never the password), and a store that
nothing answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from config import SettingsError, load_settings
from config.settings import RedisTopology, parse_redis_url, redact_url
from idp.core.store import RedisStore, StoreUnavailable


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://cache:6379/0", RedisTopology("single")),
        ("rediss://:pw@cache:6380/1", RedisTopology("single")),
        ("unix:///run/redis.sock", RedisTopology("single")),
        (
            "redis+sentinel://s1,s2:26380,10.0.0.3:26381/idp-store",
            RedisTopology(
                "sentinel", (("s1", 26379), ("s2", 26380), ("10.0.0.3", 26381)), "idp-store"
            ),
        ),
        (
            "redis+sentinel://idp:p%40ss@s1:26379/mymaster/3",
            RedisTopology(
                "sentinel", (("s1", 26379),), "mymaster", 3, username="idp", password="p@ss"
            ),
        ),
        (
            "redis+cluster://:pw@n1:7000,n2:7001,[::1]:7002",
            RedisTopology("cluster", (("n1", 7000), ("n2", 7001), ("::1", 7002)), password="pw"),
        ),
        ("redis+cluster://n1/", RedisTopology("cluster", (("n1", 6379),))),
    ],
)
def test_accepted_urls(url: str, expected: RedisTopology) -> None:
    assert parse_redis_url(url) == expected
    assert load_settings({"IDP_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memcached://cache:11211", "must be one of"),
        ("cache:6379", "must be one of"),
        ("redis+sentinel://:hunter2@s1:26379", "needs the service name"),
        ("redis+sentinel://:hunter2@s1:26379/", "needs the service name"),
        ("redis+sentinel://:hunter2@s1:26379/svc/x", "DB must be a number"),
        ("redis+sentinel://:hunter2@s1:26379/svc?db=1", "no query"),
        ("redis+sentinel://:hunter2@s1,,s2/svc", "bad host list"),
        ("redis+sentinel://:hunter2@s1:99999/svc", "bad host list"),
        ("redis+sentinel://:hun/ter2@s1/svc", "bad host list"),  # an unescaped "/"
        ("redis+cluster://:hunter2@n1:7000/1", "database 0 only"),
        ("redis+cluster://:hunter2@", "bad host list"),
        ("redis+cluster://:hunter2@[::1:7000", "bad host list"),
    ],
)
def test_a_wrong_url_stops_start_up_naming_the_variable(url: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"IDP_REDIS_URL": url})
    message = str(caught.value)
    assert "IDP_REDIS_URL" in message
    assert reason in message
    assert "hunter2" not in message
    assert "ter2" not in message


def test_redact_url_hides_the_password_of_every_form() -> None:
    assert redact_url("redis+sentinel://:s3cret@s1:26379,s2:26379/svc/0") == (
        "redis+sentinel://:***@s1:26379,s2:26379/svc/0"
    )
    assert redact_url("redis+cluster://idp:s3cret@n1:7000,n2:7001") == (
        "redis+cluster://idp:***@n1:7000,n2:7001"
    )
    assert "s3cret" not in redact_url("redis+cluster://:s3cret@[::1")


@pytest.mark.parametrize("namespace", ["idp{rv}:", "{idp}:", "idp}"])
def test_the_namespace_has_no_braces(namespace: str) -> None:
    # a brace in the prefix would become the hash tag of every key: one slot for all
    with pytest.raises(SettingsError, match="IDP_REDIS_NAMESPACE"):
        load_settings({"IDP_REDIS_NAMESPACE": namespace})
    with pytest.raises(ValueError, match="braces"):
        RedisStore("redis://127.0.0.1:1/0", namespace=namespace)


@pytest.fixture(
    params=[
        "redis+sentinel://:topsecret@127.0.0.1:1,127.0.0.1:2/idp-store/0",
        "redis+cluster://:topsecret@127.0.0.1:1,127.0.0.1:2",
    ],
    ids=["sentinel", "cluster"],
)
def unanswered(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    store = RedisStore(request.param)
    yield store
    store.close()


def test_nothing_answers_store_unavailable_soon_without_the_password(
    unanswered: RedisStore,
) -> None:
    operations: list[Callable[[], object]] = [unanswered.ping, lambda: unanswered.get("k")]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            operation()
        assert time.monotonic() - started < 5
        assert "127.0.0.1:1" in str(caught.value)
        assert "topsecret" not in str(caught.value)
