"""The city's upstream client against an independent OpenID provider: panva's
``oidc-provider`` (OpenID-certified; ``op.mjs``), run by Node like the openid-client
tests. Its development interactions (any password) stand in for the person's sign-in
there; the tests drive its login and consent forms with ``requests``, and hand the
redirect back to the city's callback. From the attacker's side (issue 13's Done-when):
a mixed-up ``iss``, a tampered ID token and one minted for another sign-in's nonce (a
man in the middle of the token endpoint, ``token_proxy``), a replayed callback and a
state used twice; ``private_key_jwt`` with the city's keys fetched from its served
``jwks_uri``, and refused when the OP holds another key for the client.

Needs ``node`` and ``tests/interop/node_modules`` with the locked ``oidc-provider``;
skipped otherwise, unless ``IDP_TEST_INTEROP=required``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey
from sqlalchemy import select

from federation.upstream.container import Upstreams
from federation.upstream.models import Upstream
from idp.core.runtime import db
from tests.federation.test_upstream_signin import (
    failures,
    invoke_json,
    level_of,
    links,
    signed_in_as,
)
from tests.interop.independent_op import (
    TokenProxy,
    TokenTamper,
    independent_op,
    sign_in_at,
    token_proxy,
)
from tests.interop.support import serving
from tests.interop.test_openid_client import node  # noqa: F401 - a fixture
from tests.support import csrf_token, text

SECRET = "city-secret-at-the-independent-op"
PERSON = "11010519491231002X"
OTHER_PERSON = "110105194912310021"
REDIRECT_URI = "http://localhost/federation/op/callback"


@pytest.fixture
def city_jwks_uri(app: Flask) -> Iterator[str]:
    """The city app served on a loopback port, for the OP to fetch its JWKS from."""
    with serving(app) as url:
        yield url + "/jwks.json"


@pytest.fixture
def op(node: str, tmp_path: Path, city_jwks_uri: str) -> Iterator[str]:  # noqa: F811 - the node fixture
    code_flow: dict[str, Any] = {
        "redirect_uris": [REDIRECT_URI],
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
    }
    stranger = ECKey.generate_key("P-256", {"kid": "not-the-city"}).as_dict(private=False)
    clients: list[dict[str, Any]] = [
        {
            "client_id": "city",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            **code_flow,
        },
        {
            # the city's keys, fetched from its jwks_uri
            "client_id": "city-keys",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": city_jwks_uri,
            **code_flow,
        },
        {
            # someone else's key registered under this client id
            "client_id": "city-other-keys",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [stranger]},
            **code_flow,
        },
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


# -- the attacker's side, against the real provider's tokens ----------------------------


def _b64json(part: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def through(app: Flask, proxy: TokenProxy) -> None:
    """The city's token requests to the OP go through ``proxy`` (a man in the middle)."""
    with app.app_context():
        row = db().scalar(select(Upstream).where(Upstream.name == "op"))
        assert row is not None
        assert row.discovery is not None
        proxy.target = row.discovery["token_endpoint"]
        row.discovery = {**row.discovery, "token_endpoint": proxy.url}
        db().commit()


@pytest.fixture
def proxy(city: Flask) -> Iterator[TokenProxy]:
    with token_proxy("http://127.0.0.1:9/unset") as running:
        through(city, running)
        yield running


def _broken_signature(answer: dict[str, Any]) -> dict[str, Any]:
    head, body, signature = answer["id_token"].split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {**answer, "id_token": f"{head}.{body}.{flipped}"}


def _changed_claims(answer: dict[str, Any]) -> dict[str, Any]:
    """Another person's subject and number under the OP's own signature."""
    head, body, signature = answer["id_token"].split(".")
    claims = dict(_b64json(body), sub="someone-important", id_number=OTHER_PERSON)
    return {**answer, "id_token": f"{head}.{_b64(claims)}.{signature}"}


@pytest.mark.parametrize("tamper", [_broken_signature, _changed_claims])
def test_a_tampered_id_token_from_the_independent_provider_is_refused(
    city: Flask, proxy: TokenProxy, tamper: TokenTamper
) -> None:
    proxy.tamper = tamper
    client = city.test_client()
    answer = client.get(at_the_op(client, requests.Session()))
    assert answer.status_code == 400
    assert signed_in_as(client) is None
    assert links(city) == []
    assert failures(city) == ["id_token_signature"]
    # the OP's own answer went through the man in the middle, and was sound
    [genuine] = proxy.passed
    assert _b64json(genuine["id_token"].split(".")[1])["sub"] == "pat"


def test_the_token_proxy_alone_changes_nothing(city: Flask, proxy: TokenProxy) -> None:
    """The control for the tampering tests: untouched answers through the proxy sign in."""
    client = city.test_client()
    choice = client.get(at_the_op(client, requests.Session()))
    assert choice.status_code == 302, text(choice)
    assert choice.location.startswith("/federation/new")
    assert len(proxy.passed) == 1
    assert failures(city) == []


def test_an_id_token_minted_for_another_sign_in_is_refused(city: Flask, proxy: TokenProxy) -> None:
    """Two sign-ins at the OP; the second is answered with the first one's ID token
    (genuinely signed by the OP, same person and client, another nonce)."""
    first, second = city.test_client(), city.test_client()
    first_callback = at_the_op(first, requests.Session())
    second_callback = at_the_op(second, requests.Session())
    assert first.get(first_callback).status_code == 302
    [earlier] = proxy.passed
    proxy.tamper = lambda answer: {**answer, "id_token": earlier["id_token"]}
    answer = second.get(second_callback)
    assert answer.status_code == 400
    assert signed_in_as(second) is None
    assert failures(city) == ["id_token_nonce"]
    # the OP had answered the second sign-in with its own token: only the nonce differs
    own, swapped = (_b64json(t["id_token"].split(".")[1]) for t in proxy.passed[::-1])
    assert own["sub"] == swapped["sub"] == "pat"
    assert own["nonce"] != swapped["nonce"]


def test_a_state_used_twice_signs_nobody_in(city: Flask) -> None:
    """The city's authorization request replayed at the OP gets a fresh, valid code for
    the same state; the city has spent that state, so nothing is redeemed."""
    client, browser = city.test_client(), requests.Session()
    start = client.get("/federation/op/login")
    used = sign_in_at(browser, start.location, "pat", REDIRECT_URI)
    assert client.get(_path(used)).location.startswith("/federation/new")
    # the same browser starts another sign-in (its binding cookie is fresh and valid)
    assert client.get("/federation/op/login").status_code == 302
    replayed = sign_in_at(browser, start.location, "pat", REDIRECT_URI)
    assert _query(replayed)["state"] == _query(used)["state"]
    assert _query(replayed)["code"] != _query(used)["code"]
    assert client.get(_path(replayed)).status_code == 400
    assert signed_in_as(client) is None
    assert failures(city) == ["state_unknown"]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- private_key_jwt at the independent provider ----------------------------------------


def with_assertions(app: Flask, op: str, client_id: str) -> Flask:
    invoke_json(
        app, "add-upstream", "--name", "op", "--issuer", op, "--client-id", client_id,
        "--token-auth-method", "private_key_jwt", "--scope", "openid profile realname",
        "--identity-claim", "id_number", "--identity-type", "resident_id",
        "--level-claim", "trust_level", "--level-map", "L3=3", "--link-min-level", "3",
    )  # fmt: skip
    return app


def test_the_independent_provider_accepts_the_city_client_assertion(app: Flask, op: str) -> None:
    city = with_assertions(app, op, "city-keys")
    client = city.test_client()
    choice = client.get(at_the_op(client, requests.Session()))
    assert choice.status_code == 302, text(choice)
    assert choice.location.startswith("/federation/new")
    page = text(client.get(choice.location))
    assert client.post("/federation/new", data={"csrf_token": csrf_token(page)}).location == (
        "/account"
    )
    [link] = links(city)
    assert link.subject == "pat"
    # a second sign-in: a new assertion (oidc-provider refuses a jti it has seen)
    again = city.test_client()
    assert again.get(at_the_op(again, requests.Session())).location == "/account"
    assert failures(city) == []


def test_an_assertion_signed_by_a_key_the_provider_does_not_hold_signs_nobody_in(
    app: Flask, op: str
) -> None:
    city = with_assertions(app, op, "city-other-keys")
    client = city.test_client()
    answer = client.get(at_the_op(client, requests.Session()))
    assert answer.status_code == 502
    assert "identity platform" in text(answer)
    assert signed_in_as(client) is None
    assert links(city) == []
    assert failures(city) == ["token_refused"]
