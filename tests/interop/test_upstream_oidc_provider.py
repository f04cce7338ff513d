"""The city's upstream client against an independent OpenID provider: panva's
``oidc-provider`` (OpenID-certified; ``op.mjs``), run by Node like the openid-client
tests. Its development interactions (any password) stand in for the person's sign-in
there; the tests drive its login and consent forms with ``requests``, and hand the
redirect back to the city's callback.

Needs ``node`` and ``tests/interop/node_modules`` with the locked ``oidc-provider``;
skipped otherwise, unless ``IDP_TEST_INTEROP=required``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from federation.upstream.container import Upstreams
from tests.federation.test_upstream_signin import invoke_json, level_of, links, signed_in_as
from tests.interop.independent_op import independent_op, sign_in_at
from tests.interop.test_openid_client import node  # noqa: F401 - a fixture
from tests.support import csrf_token, text

SECRET = "city-secret-at-the-independent-op"
PERSON = "11010519491231002X"
REDIRECT_URI = "http://localhost/federation/op/callback"


@pytest.fixture
def op(node: str, tmp_path: Path) -> Iterator[str]:  # noqa: F811 - the node fixture
    clients = [
        {
            "client_id": "city",
            "client_secret": SECRET,
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
            "response_types": ["code"],
            "grant_types": ["authorization_code"],
        }
    ]
    accounts = {"pat": {"name": "王小丽", "id_number": PERSON, "trust_level": "L3"}}
    with independent_op(node, tmp_path / "op.log", clients, accounts) as running:
        yield running.issuer


@pytest.fixture
def city(app: Flask, op: str) -> Flask:
    invoke_json(
        app, "add-upstream", "--name", "op", "--issuer", op, "--client-id", "city",
        "--client-secret", SECRET, "--scope", "openid profile realname",
        "--identity-claim", "id_number", "--identity-type", "resident_id",
        "--level-claim", "trust_level", "--level-map", "L3=3", "--link-min-level", "3",
    )  # fmt: skip
    Upstreams.of(app).timeouts = (3.0, 10.0)
    return app


def at_the_op(client: FlaskClient, browser: requests.Session) -> str:
    """From the city's link through the OP's login and consent to the callback URL
    (the path and query the OP redirected the browser to)."""
    start = client.get("/federation/op/login")
    assert start.status_code == 302
    parts = urlsplit(sign_in_at(browser, start.location, "pat", REDIRECT_URI))
    return f"{parts.path}?{parts.query}"


def test_sign_in_through_an_independent_openid_provider(city: Flask) -> None:
    client = city.test_client()
    callback = at_the_op(client, requests.Session())
    assert "iss=" in callback  # oidc-provider sends RFC 9207's iss
    choice = client.get(callback)
    assert choice.status_code == 302, text(choice)
    assert choice.location.startswith("/federation/new")
    page = text(client.get(choice.location))
    created = client.post("/federation/new", data={"csrf_token": csrf_token(page)})
    assert created.location == "/account"
    [link] = links(city)
    assert link.subject == "pat"
    assert level_of(city, link.user_id) == 3
    # the callback URL replayed (even in the same browser) signs nobody in
    replay = city.test_client()
    assert replay.get(callback).status_code == 400
    assert signed_in_as(replay) is None
    # a second sign-in reuses the link
    again = city.test_client()
    assert again.get(at_the_op(again, requests.Session())).location == "/account"
    assert len(links(city)) == 1


def test_a_mixed_up_iss_from_the_independent_provider_is_refused(city: Flask) -> None:
    client = city.test_client()
    callback = at_the_op(client, requests.Session())
    forged = re.sub(r"iss=[^&]+", "iss=https%3A%2F%2Fother-op.example", callback)
    assert forged != callback
    assert client.get(forged).status_code == 400
    assert signed_in_as(client) is None
    assert links(city) == []
