"""The OpenID Foundation "Basic OP" and "Config OP" conformance plans, module by module.

Each test is named after the conformance module it replays (``oidcc-...``) and checks
what that module checks, from the relying party's side.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.core.clock import FrozenClock
from idp.oauth.server import OAuthRuntime
from tests.oauth_support import REDIRECT, RP, Flow, query_of, register
from tests.support import STRONG_PASSWORD, create_user, csrf_token, sign_in
from tests.support import text as body

ISSUER = "http://localhost"


@pytest.fixture
def rp(app: Flask) -> RP:
    create_user(app)
    _, secret = register(
        app,
        "rp",
        first_party=True,
        scope="openid profile email phone offline_access",
        post_logout_redirect_uris=["https://rp.example.gov.cn/bye"],
    )
    return RP(app, "rp", secret)


def claims_of(app: Flask, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with app.app_context():
        header, claims = OAuthRuntime.of().keys.verify(token)
    return header, claims


def check_id_token(
    app: Flask, id_token: str, flow: Flow | None, client_id: str = "rp"
) -> dict[str, Any]:
    """What an RP must check of an ID token (OpenID Connect Core 3.1.3.7)."""
    header, claims = claims_of(app, id_token)
    assert header["alg"] == "ES256"
    assert header["kid"]
    assert claims["iss"] == ISSUER
    assert claims["aud"] == [client_id]
    assert claims["azp"] == client_id
    assert claims["exp"] > claims["iat"]
    for name in ("sub", "auth_time", "acr", "amr", "sid"):
        assert name in claims, name
    if flow is not None:
        assert claims["nonce"] == flow.nonce
    return claims


# -- Config OP


def test_oidcc_discovery_endpoint_verification(client: FlaskClient) -> None:
    document = client.get("/.well-known/openid-configuration").get_json()
    assert document["issuer"] == ISSUER
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ):
        assert document[name].startswith(ISSUER + "/"), name
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "plain" not in document["code_challenge_methods_supported"]
    assert set(document["subject_types_supported"]) == {"public", "pairwise"}
    assert "ES256" in document["id_token_signing_alg_values_supported"]
    assert "none" not in document["id_token_signing_alg_values_supported"]
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    assert document["claims_parameter_supported"] is True
    assert document["backchannel_logout_supported"] is True
    assert document["authorization_response_iss_parameter_supported"] is True
    rfc8414 = client.get("/.well-known/oauth-authorization-server").get_json()
    assert rfc8414 == document


def test_oidcc_server_jwks(client: FlaskClient) -> None:
    keys = client.get("/jwks.json").get_json()["keys"]
    assert {key["alg"] for key in keys} == {"ES256", "RS256"}
    for key in keys:
        assert key["kid"]
        assert key["use"] == "sig"
        assert "d" not in key  # no private parts
        assert "p" not in key


# -- Basic OP


def test_oidcc_server(app: Flask, client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow)
    assert callback["state"] == flow.state
    assert callback["iss"] == ISSUER  # RFC 9207
    response = rp.redeem(client, callback["code"], flow)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.get_json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] > 0
    claims = check_id_token(app, tokens["id_token"], flow)
    assert claims["amr"] == ["pwd"]
    at_header, at_claims = claims_of(app, tokens["access_token"])
    assert at_header["typ"] == "at+jwt"  # RFC 9068
    for name in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope"):
        assert name in at_claims


def test_oidcc_response_type_missing(client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    response = client.get(
        "/authorize?"
        + urlencode({k: v for k, v in rp.authorize_params(flow).items() if k != "response_type"})
    )
    assert response.status_code == 302
    error = query_of(response.headers["Location"])
    assert error["error"] in {"invalid_request", "unsupported_response_type"}
    assert error["state"] == flow.state


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "none"])
def test_only_the_code_flow_is_offered(client: FlaskClient, rp: RP, response_type: str) -> None:
    response = rp.start(client, Flow(), response_type=response_type)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "unsupported_response_type"


@pytest.mark.parametrize("method", ["get-header", "post-header", "post-body"])
def test_oidcc_userinfo(client: FlaskClient, rp: RP, method: str) -> None:
    tokens, _ = rp.tokens(client)
    token = tokens["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    if method == "get-header":
        response = client.get("/userinfo", headers=bearer)
    elif method == "post-header":
        response = client.post("/userinfo", headers=bearer)
    else:
        response = client.post("/userinfo", data={"access_token": token})
    assert response.status_code == 200
    info = response.get_json()
    assert info["sub"]
    assert info["preferred_username"] == "alice"


def test_oidcc_userinfo_sub_matches_the_id_token(app: Flask, client: FlaskClient, rp: RP) -> None:
    tokens, flow = rp.tokens(client)
    claims = check_id_token(app, tokens["id_token"], flow)
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).get_json()
    assert info["sub"] == claims["sub"]


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(
    app: Flask, client: FlaskClient, rp: RP
) -> None:
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow, nonce=None)
    tokens = rp.redeem(client, callback["code"], flow).get_json()
    assert "nonce" not in claims_of(app, tokens["id_token"])[1]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("openid profile", {"preferred_username", "updated_at", "name"}),
        ("openid email", {"email", "email_verified"}),
        ("openid phone", {"phone_number", "phone_number_verified"}),
        ("openid profile email phone", {"name", "email", "phone_number"}),
    ],
)
def test_oidcc_scope(app: Flask, client: FlaskClient, scope: str, expected: set[str]) -> None:
    from accounts.container import Accounts
    from idp.core.runtime import db

    user = create_user(app, "bob", phone="13800138000")
    with app.app_context():
        stored = Accounts.of().account_service().get(user.id)
        assert stored is not None
        stored.display_name, stored.email = "Bob Chen", "bob@example.cn"
        db().commit()
    _, secret = register(app, "rp-scopes", first_party=True)
    rp = RP(app, "rp-scopes", secret)
    tokens, _ = rp.tokens(client, username="bob", scope=scope)
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).get_json()
    assert expected <= set(info)
    if "phone" in scope:
        assert info["phone_number"] == "+8613800138000"
    if "email" not in scope:
        assert "email" not in info
    if "phone" not in scope:
        assert "phone_number" not in info


def test_oidcc_ensure_other_scope_order_succeeds(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="email openid")
    assert "id_token" in tokens


@pytest.mark.parametrize(
    "extra",
    [
        {"display": "page"},
        {"display": "popup"},
        {"ui_locales": "zh-CN"},
        {"claims_locales": "zh-CN"},
        {"acr_values": "urn:dongguan:idp:acr:pwd"},
        {"extra_unknown_parameter": "ignored"},
    ],
)
def test_oidcc_optional_and_unknown_parameters_are_accepted(
    client: FlaskClient, rp: RP, extra: dict[str, str]
) -> None:
    tokens, _ = rp.tokens(client, **extra)
    assert "id_token" in tokens


def test_oidcc_prompt_login(app: Flask, client: FlaskClient, rp: RP, clock: FrozenClock) -> None:
    first, flow = rp.tokens(client)
    first_claims = check_id_token(app, first["id_token"], flow)
    clock.advance(5)
    response = rp.start(client, Flow(), prompt="login")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")  # asked again, though signed in
    again, flow2 = rp.tokens(client, prompt="login")
    claims = check_id_token(app, again["id_token"], flow2)
    assert claims["auth_time"] > first_claims["auth_time"]
    assert claims["sid"] == first_claims["sid"]  # same user, same OP session


def test_oidcc_prompt_none_not_logged_in(client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    response = rp.start(client, flow, prompt="none")
    assert response.status_code == 302
    error = query_of(response.headers["Location"])
    assert error["error"] == "login_required"
    assert error["state"] == flow.state
    assert error["iss"] == ISSUER


def test_oidcc_prompt_none_logged_in(client: FlaskClient, rp: RP) -> None:
    rp.tokens(client)
    flow = Flow()
    response = rp.start(client, flow, prompt="none")
    callback = query_of(response.headers["Location"])
    assert "code" in callback
    assert rp.redeem(client, callback["code"], flow).status_code == 200


def test_prompt_none_with_other_values_is_invalid(client: FlaskClient, rp: RP) -> None:
    response = rp.start(client, Flow(), prompt="none login")
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_oidcc_max_age_1(app: Flask, client: FlaskClient, rp: RP, clock: FrozenClock) -> None:
    first, flow = rp.tokens(client)
    before = check_id_token(app, first["id_token"], flow)["auth_time"]
    clock.advance(2)
    response = rp.start(client, Flow(), max_age="1")
    assert response.headers["Location"].startswith("/login")
    again, flow2 = rp.tokens(client, max_age="1")
    assert check_id_token(app, again["id_token"], flow2)["auth_time"] >= before + 2


def test_oidcc_max_age_10000(app: Flask, client: FlaskClient, rp: RP, clock: FrozenClock) -> None:
    first, flow = rp.tokens(client)
    before = check_id_token(app, first["id_token"], flow)["auth_time"]
    clock.advance(60)
    flow2 = Flow()
    response = rp.start(client, flow2, max_age="10000")
    callback = query_of(response.headers["Location"])  # no sign-in needed
    tokens = rp.redeem(client, callback["code"], flow2).get_json()
    assert check_id_token(app, tokens["id_token"], flow2)["auth_time"] == before


def test_invalid_max_age(client: FlaskClient, rp: RP) -> None:
    response = rp.start(client, Flow(), max_age="soon")
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_oidcc_id_token_hint(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client)
    flow = Flow()
    response = rp.start(client, flow, prompt="none", id_token_hint=tokens["id_token"])
    callback = query_of(response.headers["Location"])
    assert "code" in callback


def test_id_token_hint_for_another_user(
    app: Flask, client: FlaskClient, rp: RP, clock: FrozenClock
) -> None:
    create_user(app, "carol")
    carol_tokens, _ = rp.tokens(app.test_client(), username="carol")
    rp.tokens(client)  # alice is signed in on this browser
    clock.advance(1)
    response = rp.start(client, Flow(), prompt="none", id_token_hint=carol_tokens["id_token"])
    assert query_of(response.headers["Location"])["error"] == "login_required"
    interactive = rp.start(client, Flow(), id_token_hint=carol_tokens["id_token"])
    assert interactive.headers["Location"].startswith("/login")


def test_a_forged_id_token_hint_is_refused(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client)
    header, payload, signature = tokens["id_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    response = rp.start(client, Flow(), id_token_hint=forged)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_oidcc_login_hint(client: FlaskClient, rp: RP) -> None:
    response = rp.start(client, Flow(), login_hint="alice")
    page = client.get(response.headers["Location"])
    assert 'value="alice"' in body(page)


def test_oidcc_ensure_request_with_acr_values_succeeds(
    app: Flask, client: FlaskClient, rp: RP
) -> None:
    tokens, flow = rp.tokens(client, acr_values="urn:dongguan:idp:acr:mfa")
    # alice has no second factor: the level actually achieved is reported
    assert check_id_token(app, tokens["id_token"], flow)["acr"] == "urn:dongguan:idp:acr:pwd"


def test_essential_acr_that_cannot_be_met_is_an_error(client: FlaskClient, rp: RP) -> None:
    claims = {"id_token": {"acr": {"essential": True, "values": ["urn:dongguan:idp:acr:mfa"]}}}
    flow = Flow()
    sign_in(client)
    response = rp.start(client, flow, claims=json.dumps(claims))
    error = query_of(response.headers["Location"])
    assert error["error"] == "unmet_authentication_requirements"
    assert error["state"] == flow.state


def test_oidcc_codereuse(client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow)
    assert rp.redeem(client, callback["code"], flow).status_code == 200
    again = rp.redeem(client, callback["code"], flow)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"


def test_oidcc_codereuse_revokes_the_tokens(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    _, secret = register(app, "rp", first_party=True, scope="openid offline_access")
    rp = RP(app, "rp", secret)
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow, scope="openid offline_access")
    tokens = rp.redeem(client, callback["code"], flow).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200
    assert rp.redeem(client, callback["code"], flow).status_code == 400  # the replay
    assert client.get("/userinfo", headers=bearer).status_code == 401
    introspected = rp.post(client, "/introspect", {"token": tokens["access_token"]})
    assert introspected.get_json() == {"active": False}
    refreshed = rp.token_request(
        client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        REDIRECT + "/extra",
        REDIRECT + "?x=1",
        REDIRECT.upper(),
        REDIRECT.replace("https", "http"),
        REDIRECT + "#fragment",
        "",
    ],
)
def test_oidcc_ensure_registered_redirect_uri(
    client: FlaskClient, rp: RP, redirect_uri: str
) -> None:
    """An unregistered (or altered, or missing) redirect URI gets a page, never a redirect."""
    response = rp.start(client, Flow(), redirect_uri=redirect_uri or None)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "<html" in body(response)


def test_unknown_client_gets_a_page(client: FlaskClient, rp: RP) -> None:
    response = rp.start(client, Flow(), client_id="no-such-client")
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_oidcc_server_client_secret_post(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    _, secret = register(
        app, "rp-post", first_party=True, token_endpoint_auth_method="client_secret_post"
    )
    rp = RP(app, "rp-post", secret)
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow)
    assert rp.redeem(client, callback["code"], flow, auth="basic").status_code == 401
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow)
    assert rp.redeem(client, callback["code"], flow, auth="post").status_code == 200


def test_oidcc_unsigned_request_object_rejected_as_unsupported(client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    response = rp.start(client, flow, request="eyJhbGciOiJub25lIn0.e30.")
    error = query_of(response.headers["Location"])
    assert error["error"] == "request_not_supported"
    assert error["state"] == flow.state
    uri = rp.start(client, Flow(), request_uri="https://rp.example.gov.cn/request.jwt")
    assert query_of(uri.headers["Location"])["error"] == "request_uri_not_supported"


def test_oidcc_claims_essential(app: Flask, client: FlaskClient, rp: RP) -> None:
    claims = {
        "userinfo": {"preferred_username": {"essential": True}},
        "id_token": {"preferred_username": None},
    }
    tokens, flow = rp.tokens(client, scope="openid", claims=json.dumps(claims))
    assert check_id_token(app, tokens["id_token"], flow)["preferred_username"] == "alice"
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).get_json()
    assert info["preferred_username"] == "alice"
    assert "updated_at" not in info  # profile was not asked for


@pytest.mark.parametrize("claims", ["not json", "[1, 2]", '{"userinfo": [1]}'])
def test_malformed_claims_parameter(client: FlaskClient, rp: RP, claims: str) -> None:
    response = rp.start(client, Flow(), claims=claims)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_oidcc_ensure_post_request_succeeds(app: Flask, client: FlaskClient, rp: RP) -> None:
    sign_in(client)
    flow = Flow()
    response = client.post("/authorize", data=rp.authorize_params(flow))
    callback = query_of(response.headers["Location"])
    assert callback["state"] == flow.state
    assert rp.redeem(client, callback["code"], flow).status_code == 200


def test_oidcc_refresh_token(app: Flask, client: FlaskClient, rp: RP) -> None:
    tokens, flow = rp.tokens(client, scope="openid offline_access")
    first_claims = check_id_token(app, tokens["id_token"], flow)
    refreshed = rp.token_request(
        client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new = refreshed.get_json()
    assert new["refresh_token"] != tokens["refresh_token"]
    claims = check_id_token(app, new["id_token"], None)
    assert claims["sub"] == first_claims["sub"]
    assert claims["auth_time"] == first_claims["auth_time"]
    assert "nonce" not in claims


def test_no_refresh_token_without_offline_access(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="openid profile")
    assert "refresh_token" not in tokens


def test_oidcc_server_rotate_keys(app: Flask, client: FlaskClient, rp: RP) -> None:
    from idp.core.runtime import db

    before, _ = rp.tokens(client)
    old_kid = claims_of(app, before["id_token"])[0]["kid"]
    with app.app_context():
        created = OAuthRuntime.of().keys.rotate(db())
    after, _ = rp.tokens(client)
    header, _ = claims_of(app, after["id_token"])
    assert header["kid"] in created
    assert header["kid"] != old_kid
    published = {key["kid"] for key in client.get("/jwks.json").get_json()["keys"]}
    assert old_kid in published  # retired keys stay until their tokens expired
    assert header["kid"] in published
    # a token signed with the retired key still verifies
    assert (
        client.get(
            "/userinfo", headers={"Authorization": f"Bearer {before['access_token']}"}
        ).status_code
        == 200
    )


def test_consent_is_asked_once_per_client_and_scope_set(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    _, secret = register(app, "third-party", scope="openid profile email")
    rp = RP(app, "third-party", secret)
    first = rp.start(client, Flow())
    page = client.get(first.headers["Location"])
    login = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(body(page)),
            "username": "alice",
            "password": STRONG_PASSWORD,
            "next": query_of(first.headers["Location"])["next"],
        },
    )
    consent_page = client.get(login.headers["Location"])
    assert 'name="consent" value="approve"' in body(consent_page)
    rp.tokens(client)  # approves
    again = rp.start(client, Flow())
    assert "code" in query_of(again.headers["Location"])  # remembered: no page
    more = rp.start(client, Flow(), scope="openid profile email")
    assert more.status_code == 200  # a new scope: asked again
    assert 'name="consent"' in body(more)
    forced = rp.start(client, Flow(), prompt="consent")
    assert forced.status_code == 200


def test_consent_denied_is_access_denied(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    _, secret = register(app, "third-party")
    rp = RP(app, "third-party", secret)
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow, approve=False)
    assert callback["error"] == "access_denied"
    assert callback["state"] == flow.state


def test_prompt_none_needing_consent(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    _, secret = register(app, "third-party")
    rp = RP(app, "third-party", secret)
    sign_in(client)
    response = rp.start(client, Flow(), prompt="none")
    assert query_of(response.headers["Location"])["error"] == "consent_required"


def test_prompt_select_account(client: FlaskClient, rp: RP) -> None:
    rp.tokens(client)
    response = rp.start(client, Flow(), prompt="select_account")
    assert response.status_code == 200
    assert "Choose an account" in body(response)
    none = rp.start(client, Flow(), prompt="none select_account")
    assert query_of(none.headers["Location"])["error"] == "invalid_request"


def test_the_claims_parameter_cannot_get_around_scopes_or_consent(
    app: Flask, client: FlaskClient
) -> None:
    """Found by the openid-client interop run: individually requested claims must obey
    the client's registered scopes and the user's consent."""
    create_user(app, "dora", phone="13800138000")
    _, secret = register(app, "narrow", scope="openid")  # third party, openid only
    narrow = RP(app, "narrow", secret)
    narrow.tokens(client, username="dora", scope="openid")  # consents to openid
    wanted = {"userinfo": {"phone_number": None}, "id_token": {"phone_number": None}}
    tokens, _ = narrow.tokens(client, username="dora", scope="openid", claims=json.dumps(wanted))
    assert "phone_number" not in claims_of(app, tokens["id_token"])[1]
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).get_json()
    assert "phone_number" not in info

    _, secret = register(app, "wider", scope="openid phone")
    wider = RP(app, "wider", secret)
    wider.tokens(client, username="dora", scope="openid")  # consents to openid only
    flow = Flow()
    response = wider.start(client, flow, scope="openid", claims=json.dumps(wanted))
    assert response.status_code == 200, response.headers.get("Location")  # consent first
    assert 'name="consent"' in body(response)
