"""Two separate app processes on one PostgreSQL + Redis share sessions and counters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import PG_URL, REDIS_URL, TEST_SECRET, Backend
from tests.e2e.servers import free_port, running
from tests.support import STRONG_PASSWORD

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.parametrize("backend", ["production"], indirect=True),
]


def _sign_in(http: requests.Session, base: str, username: str, password: str) -> int:
    page = http.get(base + "/login", timeout=10)
    match = CSRF.search(page.text)
    assert match
    response = http.post(
        base + "/login",
        data={"csrf_token": match.group(1), "username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    return response.status_code


@pytest.fixture
def two_nodes(tmp_path: Path, backend: Backend) -> Iterator[tuple[str, str]]:
    assert PG_URL
    assert REDIS_URL
    env = {
        "IDP_DATABASE_URL": backend.database_url,
        "IDP_REDIS_URL": backend.redis_url or "",
        "IDP_REDIS_NAMESPACE": backend.redis_namespace,
        "IDP_SECRET_KEY": TEST_SECRET,
        "IDP_ISSUER": "http://127.0.0.1",
        "IDP_LOGIN_FAILURES_BEFORE_BACKOFF": "3",
        "IDP_LOG_LEVEL": "WARNING",
    }
    nodes = []
    for name in ("a", "b"):
        data = tmp_path / name
        data.mkdir()
        # every node loads the same key files (copied by the operator in real life)
        (data / "keys").symlink_to(tmp_path / "shared-keys", target_is_directory=True)
        nodes.append({**env, "IDP_DATA_DIR": str(data)})
    from config.settings import build_settings
    from idp.core.keys import ensure_keys

    ensure_keys(build_settings({"data_dir": tmp_path / "seed", "secret_key": TEST_SECRET}))
    (tmp_path / "seed" / "keys").rename(tmp_path / "shared-keys")
    from idp.cli import initialise

    initialise(
        build_settings(
            {
                "data_dir": tmp_path / "a",
                "secret_key": TEST_SECRET,
                "database_url": backend.database_url,
            }
        )
    )
    port_a, port_b = free_port(), free_port()
    with (
        running(
            ["serve", "--port", str(port_a), "--workers", "2"], nodes[0], port_a, tmp_path / "a.log"
        ) as (url_a, _),
        running(
            ["serve", "--port", str(port_b), "--workers", "2"], nodes[1], port_b, tmp_path / "b.log"
        ) as (url_b, _),
    ):
        yield url_a, url_b


def test_a_session_made_on_one_node_works_on_the_other(two_nodes: tuple[str, str]) -> None:
    node_a, node_b = two_nodes
    http = requests.Session()
    assert _register(http, node_a, "shared")
    assert http.get(node_a + "/account", allow_redirects=False, timeout=10).status_code == 200
    # the same cookie, presented to the other node (a load balancer may do exactly this)
    other = requests.Session()
    other.cookies.update(http.cookies)
    assert other.get(node_b + "/account", allow_redirects=False, timeout=10).status_code == 200


def test_failure_counters_are_shared_between_nodes(two_nodes: tuple[str, str]) -> None:
    node_a, node_b = two_nodes
    assert _register(requests.Session(), node_a, "victim")
    for guess in range(3):
        assert _sign_in(requests.Session(), node_a, "victim", f"guess {guess}") == 401
    assert _sign_in(requests.Session(), node_b, "victim", STRONG_PASSWORD) == 429


def _register(http: requests.Session, base: str, username: str) -> bool:
    page = http.get(base + "/register", timeout=10)
    match = CSRF.search(page.text)
    assert match
    response = http.post(
        base + "/register",
        data={
            "csrf_token": match.group(1),
            "username": username,
            "password": STRONG_PASSWORD,
            "password_confirm": STRONG_PASSWORD,
        },
        allow_redirects=False,
        timeout=10,
    )
    return response.status_code == 302
