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


def _register_rp(backend: Backend) -> str:
    """Register a first-party client straight in the shared database; returns its secret."""
    from idp.core.clock import SystemClock
    from idp.core.db import Database
    from idp.core.keys import Secrets
    from idp.oauth.clients import ClientRegistry, Registration

    database = Database(backend.database_url, pool_size=1)
    registry = ClientRegistry(
        database, Secrets(TEST_SECRET.encode()), SystemClock(), cache_seconds=0, allow_http=True
    )
    with database.session() as session:
        _, secret = registry.create(
            session,
            Registration(
                client_id="shared-rp",
                redirect_uris=[CALLBACK],
                first_party=True,
                scope="openid profile offline_access",
            ),
        )
    database.dispose()
    assert secret
    return secret


CALLBACK = "http://127.0.0.1:9/callback"


def test_a_code_from_one_node_is_redeemed_at_the_other_and_revocation_is_shared(
    two_nodes: tuple[str, str], backend: Backend
) -> None:
    import base64
    import hashlib
    import secrets as pysecrets
    from urllib.parse import parse_qs, urlencode, urlsplit

    node_a, node_b = two_nodes
    secret = _register_rp(backend)
    browser = requests.Session()
    assert _register(browser, node_a, "carol")
    verifier = pysecrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": "shared-rp",
        "redirect_uri": CALLBACK,
        "scope": "openid profile",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    response = browser.get(
        f"{node_a}/authorize?{urlencode(params)}", allow_redirects=False, timeout=10
    )
    assert response.status_code == 302
    callback = response.headers["Location"]
    assert callback.startswith(CALLBACK), callback
    code = parse_qs(urlsplit(callback).query)["code"][0]

    auth = requests.auth.HTTPBasicAuth("shared-rp", secret)

    def redeem(node: str) -> requests.Response:
        return requests.post(
            f"{node}/token",
            auth=auth,
            timeout=10,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            },
        )

    tokens = redeem(node_b).json()
    assert "id_token" in tokens, tokens
    access = tokens["access_token"]
    info = requests.get(
        f"{node_a}/userinfo", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )
    assert info.json()["preferred_username"] == "carol"
    assert (
        requests.post(f"{node_b}/introspect", auth=auth, data={"token": access}, timeout=10).json()[
            "active"
        ]
        is True
    )
    assert (
        requests.post(f"{node_a}/revoke", auth=auth, data={"token": access}, timeout=10).status_code
        == 200
    )
    assert requests.post(
        f"{node_b}/introspect", auth=auth, data={"token": access}, timeout=10
    ).json() == {"active": False}
    # and the code cannot be redeemed again at either node
    again = redeem(node_a)
    assert again.json()["error"] == "invalid_grant"
    assert redeem(node_b).json()["error"] == "invalid_grant"
