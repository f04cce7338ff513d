"""``private_key_jwt`` towards an upstream (RFC 7523, OpenID Connect Core 9): the city
redeems the code with a client assertion signed by its own signing key, which the
upstream checks against the city's published JWKS. From the attacker's side: an
assertion the upstream cannot verify signs nobody in (a page, an audit event)."""

from __future__ import annotations

import json

from flask import Flask
from joserfc.jwk import ECKey, KeySet

from federation.upstream.container import Upstreams
from tests.federation.fake_upstream import CLIENT_ID, CLIENT_SECRET, FakeUpstream
from tests.federation.test_upstream_signin import (
    NAME,
    PERSON,
    confirmed_holder,
    failures,
    invoke,
    invoke_json,
    links,
    round_trip,
    signed_in_as,
)
from tests.support import text


def add_with_assertions(app: Flask, upstream: FakeUpstream, *extra: str) -> dict[str, object]:
    added: dict[str, object] = invoke_json(
        app, "add-upstream", "--name", "province", "--issuer", upstream.url,
        "--client-id", CLIENT_ID, "--token-auth-method", "private_key_jwt",
        "--scope", "openid profile realname",
        "--identity-claim", "id_number", "--identity-type", "resident_id",
        "--level-claim", "level", "--level-map", "gov:3=3", *extra,
    )  # fmt: skip
    Upstreams.of(app).timeouts = (1.0, 1.0)
    return added


def city_jwks(app: Flask) -> dict[str, object]:
    """What the upstream fetches from the city's jwks_uri."""
    client = app.test_client()
    discovery = client.get("/.well-known/openid-configuration").get_json()
    added = invoke_json(app, "list")[0]
    assert added["jwks_uri"] == discovery["jwks_uri"]
    answer = client.get(discovery["jwks_uri"].removeprefix("http://localhost"))
    assert answer.status_code == 200
    jwks: dict[str, object] = answer.get_json()
    return jwks


def test_add_upstream_with_private_key_jwt_needs_no_secret_and_names_the_jwks_uri(
    app: Flask,
    fake: FakeUpstream,
) -> None:
    added = add_with_assertions(app, fake)
    assert added["token_auth_method"] == "private_key_jwt"
    assert added["jwks_uri"] == "http://localhost/jwks.json"
    plain = invoke(app, "list")
    assert plain.exit_code == 0
    # a secret beside private_key_jwt is a mistake, refused
    refused = invoke(app, "add-upstream", "--name", "other", "--issuer", fake.url + "/",
                     "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                     "--token-auth-method", "private_key_jwt", "--json")  # fmt: skip
    assert refused.exit_code == 1
    assert "no client secret" in json.loads(refused.output)["error"]
    assert CLIENT_SECRET not in refused.output


def test_an_upstream_that_does_not_accept_private_key_jwt_is_refused_when_added(
    app: Flask,
    fake: FakeUpstream,
) -> None:
    fake.mode.add("secrets_only")
    refused = invoke(app, "add-upstream", "--name", "province", "--issuer", fake.url,
                     "--client-id", CLIENT_ID, "--token-auth-method", "private_key_jwt",
                     "--json")  # fmt: skip
    assert refused.exit_code == 1
    assert "does not accept private_key_jwt" in json.loads(refused.output)["error"]
    assert invoke_json(app, "list") == []


def test_the_code_is_redeemed_with_an_assertion_signed_by_the_city_key(
    app: Flask,
    fake: FakeUpstream,
) -> None:
    add_with_assertions(app, fake)
    fake.client_keys = KeySet.import_key_set(city_jwks(app))  # type: ignore[arg-type]
    confirmed_holder(app, level=3)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    for _ in range(2):
        client = app.test_client()
        assert round_trip(client, fake).location == "/account"
        assert signed_in_as(client) is not None
    assert len(links(app)) == 1
    (header_1, claims_1), (_header_2, claims_2) = fake.assertions
    published = {key["kid"] for key in city_jwks(app)["keys"]}  # type: ignore[attr-defined]
    assert header_1["kid"] in published
    assert header_1["alg"] == "ES256"
    assert claims_1["iss"] == claims_1["sub"] == CLIENT_ID
    assert claims_1["aud"] == fake.url  # the upstream's issuer, not just any endpoint
    assert claims_1["exp"] - claims_1["iat"] == 60
    assert claims_1["jti"] != claims_2["jti"]
    assert failures(app) == []


def test_an_assertion_the_upstream_cannot_verify_signs_nobody_in(
    app: Flask,
    fake: FakeUpstream,
) -> None:
    """The upstream has another key registered for the city (an attacker's, or an old
    one): the city's assertion is refused there, and the sign-in ends on a page."""
    add_with_assertions(app, fake)
    kid = str(city_jwks(app)["keys"][0]["kid"])  # type: ignore[index]
    stranger = ECKey.generate_key("P-256", {"kid": kid})
    fake.client_keys = KeySet([stranger])
    confirmed_holder(app, level=3)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    client = app.test_client()
    answer = round_trip(client, fake)
    assert answer.status_code == 502
    assert "<html" in text(answer).lower()
    assert signed_in_as(client) is None
    assert links(app) == []
    assert failures(app) == ["token_refused"]
    assert len(fake.assertions) == 0  # nothing the upstream could verify


def test_without_the_provider_key_private_key_jwt_signs_nobody_in(
    app: Flask,
    fake: FakeUpstream,
) -> None:
    """An app built without the provider's key (no ``client_key``) refuses plainly."""
    add_with_assertions(app, fake)
    Upstreams.of(app).client_key = None
    client = app.test_client()
    start = client.get("/federation/province/login")
    assert start.status_code == 502
    assert failures(app) == ["auth_method_unsupported"]
