"""SCIM 2.0 provisioning over the network against a real running instance (``idp
serve``): the provincial hall's provisioning agent (a plain HTTP client here, holding
a client-credentials token with scope ``scim``) creates, filters, updates and
deactivates an account at the city, and the deactivation ends the person's signed-in
session and access token there."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TEST_SECRET
from tests.e2e.servers import free_port, idp, running
from tests.support import STRONG_PASSWORD

pytestmark = pytest.mark.multiprocess
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class Agent:
    """The provincial hall's provisioning agent: a SCIM client over HTTP."""

    def __init__(self, base: str, client_id: str, secret: str) -> None:
        token = requests.post(
            base + "/token",
            data={"grant_type": "client_credentials", "scope": "scim"},
            auth=(client_id, secret),
            timeout=10,
        )
        assert token.status_code == 200, token.text
        self.base = base + "/scim/v2"
        self.headers = {"Authorization": "Bearer " + token.json()["access_token"]}

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **headers: str
    ) -> requests.Response:
        sent = {**self.headers, **headers}
        if body is not None:
            sent["Content-Type"] = SCIM_JSON
        return requests.request(
            method,
            self.base + path,
            data=None if body is None else json.dumps(body),
            headers=sent,
            timeout=10,
        )


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Agent]]:
    tmp_path: Path = tmp_path_factory.mktemp("scim")
    port = free_port()
    env = {
        "IDP_DATA_DIR": str(tmp_path / "city"),
        "IDP_SECRET_KEY": TEST_SECRET + "city",
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "IDP_LOG_LEVEL": "WARNING",
    }
    idp(env, "init")
    client = json.loads(
        idp(env, "clients", "create", "--client-id", "province-scim", "--name", "Province",
            "--grant-type", "client_credentials", "--scope", "scim", "--json")
    )  # fmt: skip
    with running(
        ["serve", "--port", str(port), "--workers", "1"], env, port, tmp_path / "city.log"
    ) as (url, _):
        yield url, Agent(url, "province-scim", client["client_secret"])


def signed_in(browser: requests.Session, base: str) -> bool:
    return browser.get(base + "/account", timeout=10, allow_redirects=False).status_code == 200


def sign_in(base: str, username: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(base + "/login", timeout=10)
    match = CSRF.search(page.text)
    assert match
    browser.post(
        base + "/login",
        data={"csrf_token": match.group(1), "username": username, "password": STRONG_PASSWORD},
        timeout=20,
    )
    return browser


def test_the_province_provisions_filters_updates_and_deactivates_an_account(
    city: tuple[str, Agent],
) -> None:
    base, agent = city
    created = agent.call(
        "POST",
        "/Users",
        {
            "schemas": [CORE_USER],
            "userName": "wang.xiaoli",
            "externalId": "province-0001",
            "password": STRONG_PASSWORD,
            "emails": [{"value": "wang@example.gov.cn", "type": "work", "primary": True}],
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"].startswith(SCIM_JSON)
    user = created.json()
    assert created.headers["Location"] == user["meta"]["location"]
    assert "password" not in user  # returned never
    # the person can sign in at the city with the provisioned password
    browser = sign_in(base, "wang.xiaoli")
    assert signed_in(browser, base)
    # filter by externalId and by e-mail; an invalid filter is a SCIM error
    found = agent.call("GET", '/Users?filter=externalId eq "province-0001"').json()
    assert found["totalResults"] == 1
    assert found["Resources"][0]["id"] == user["id"]
    found = agent.call("GET", '/Users?filter=emails.value co "@example.gov.cn"').json()
    assert [r["userName"] for r in found["Resources"]] == ["wang.xiaoli"]
    bad = agent.call("GET", '/Users?filter=userName eq "x" and')
    assert bad.status_code == 400
    assert bad.json()["scimType"] == "invalidFilter"
    # an update with the current version; a stale version changes nothing
    etag = created.headers["ETag"]
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "displayName", "value": "王小丽"}],
    }
    updated = agent.call("PATCH", f"/Users/{user['id']}", patch, **{"If-Match": etag})
    assert updated.status_code == 200, updated.text
    assert updated.json()["displayName"] == "王小丽"
    stale = agent.call("PATCH", f"/Users/{user['id']}", patch, **{"If-Match": etag})
    assert stale.status_code == 412
    # deactivation: the account's session at the city ends, a new sign-in is refused
    off = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    done = agent.call("PATCH", f"/Users/{user['id']}", off)
    assert done.status_code == 200, done.text
    assert done.json()["active"] is False
    assert not signed_in(browser, base)
    assert not signed_in(sign_in(base, "wang.xiaoli"), base)
    # and the agent sees it so
    again = agent.call("GET", f"/Users/{user['id']}").json()
    assert again["active"] is False


def test_a_token_without_the_scim_scope_is_refused_over_the_network(
    city: tuple[str, Agent],
) -> None:
    base, agent = city
    anonymous = requests.get(base + "/scim/v2/Users", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    forged = agent.call("GET", "/Users", Authorization="Bearer not-a-token")
    assert forged.status_code == 401
