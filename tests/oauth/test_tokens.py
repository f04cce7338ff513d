"""The token, userinfo, introspection and revocation endpoints, from the attacker's side
as well: PKCE downgrade, code injection, redirect mix-up, refresh reuse, tampered,
expired and ``alg: none`` tokens, client authentication."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey

from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.client_auth import JWKS_REFETCH_COOLDOWN_SECONDS
from idp.oauth.server import OAuthRuntime
from tests.oauth_support import RP, Flow, query_of, register
from tests.support import create_user, sign_in


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"refresh_token_idle_lifetime": 3600, "refresh_token_max_lifetime": 7200}


@pytest.fixture
def rp(app: Flask) -> RP:
    create_user(app)
    _, secret = register(
        app,
        "rp",
        first_party=True,
        scope="openid profile offline_access api.read",
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
    )
    return RP(app, "rp", secret)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def userinfo(client: FlaskClient, token: str) -> Any:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})


def refresh(rp: RP, client: FlaskClient, token: str) -> Any:
    return rp.token_request(client, {"grant_type": "refresh_token", "refresh_token": token})


# -- PKCE


def test_pkce_is_required_for_confidential_clients_too(client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    response = rp.start(client, flow, code_challenge=None, code_challenge_method=None)
    error = query_of(response.headers["Location"])
    assert error["error"] == "invalid_request"
    assert "PKCE" in error["error_description"]


@pytest.mark.parametrize("method", ["plain", None, "S512"])
def test_pkce_downgrade_is_refused(client: FlaskClient, rp: RP, method: str | None) -> None:
    response = rp.start(client, Flow(), code_challenge_method=method)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_a_wrong_or_missing_verifier_fails_and_burns_the_code(client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    code = rp.sign_in_and_get_code(client, flow)["code"]
    stolen = Flow()  # an attacker with the code but not the verifier
    response = rp.redeem(client, code, stolen)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert rp.redeem(client, code, flow).status_code == 400  # single use, even failed

    flow = Flow()
    code = rp.sign_in_and_get_code(client, flow)["code"]
    missing = rp.token_request(
        client, {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    )
    assert missing.get_json()["error"] == "invalid_request"


def test_public_clients_use_pkce_without_a_secret(app: Flask, client: FlaskClient, rp: RP) -> None:
    register(
        app, "spa", public=True, first_party=True, redirect_uris=["https://spa.example.gov.cn/cb"]
    )
    spa = RP(app, "spa", None, "https://spa.example.gov.cn/cb")
    flow = Flow()
    code = spa.sign_in_and_get_code(client, flow)["code"]
    response = spa.redeem(client, code, flow, auth="none")
    assert response.status_code == 200
    assert "id_token" in response.get_json()


# -- codes


def test_code_injection_with_another_clients_code(app: Flask, client: FlaskClient, rp: RP) -> None:
    _, other_secret = register(
        app, "attacker-rp", first_party=True, redirect_uris=["https://attacker.example.com/cb"]
    )
    attacker = RP(app, "attacker-rp", other_secret, "https://attacker.example.com/cb")
    flow = Flow()
    code = rp.sign_in_and_get_code(client, flow)["code"]
    stolen = attacker.token_request(
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": flow.verifier,
            "redirect_uri": rp.redirect_uri,
        },
    )
    assert stolen.status_code == 400
    assert stolen.get_json()["error"] == "invalid_grant"
    # the code is gone for everyone
    assert rp.redeem(client, code, flow).get_json()["error"] == "invalid_grant"


def test_redirect_uri_mix_up_at_the_token_endpoint(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    second = "https://rp.example.gov.cn/other"
    _, secret = register(
        app, "rp2", first_party=True, redirect_uris=["https://rp.example.gov.cn/callback", second]
    )
    rp = RP(app, "rp2", secret)
    flow = Flow()
    code = rp.sign_in_and_get_code(client, flow)["code"]
    response = rp.token_request(
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": flow.verifier,
            "redirect_uri": second,
        },
    )
    assert response.get_json()["error"] == "invalid_grant"


def test_codes_expire(app: Flask, client: FlaskClient, rp: RP) -> None:
    flow = Flow()
    code = rp.sign_in_and_get_code(client, flow)["code"]
    with app.app_context():
        store = OAuthRuntime.of().core.store
        from idp.core.keys import Secrets  # noqa: F401 - documents where the MAC comes from
        from idp.oauth.tokens import token_mac

        key = "code:" + token_mac(OAuthRuntime.of().core.keys.secrets, code)
        remaining = store.ttl(key)
    assert remaining is not None
    assert remaining <= 60  # at most 60 s (issue 3)
    with app.app_context():
        OAuthRuntime.of().core.store.delete(key)  # what expiry does
    assert rp.redeem(client, code, flow).get_json()["error"] == "invalid_grant"


def test_parallel_redemptions_of_one_code_never_both_succeed(app: Flask, rp: RP) -> None:
    """Of parallel redemptions at most one wins; the others are replays, which may
    revoke the winner's tokens too (RFC 6749 4.1.2)."""
    browser = app.test_client()
    flow = Flow()
    code = rp.sign_in_and_get_code(browser, flow)["code"]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def redeem() -> None:
        barrier.wait()
        statuses.append(rp.redeem(app.test_client(), code, flow).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) <= 1
    assert statuses.count(400) >= 3


# -- client authentication


def test_a_wrong_secret_is_invalid_client(client: FlaskClient, rp: RP) -> None:
    rp.secret = "dgcs_not-the-secret"
    response = rp.token_request(client, {"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_client_secrets_are_stored_as_keyed_hashes(app: Flask, rp: RP) -> None:
    from sqlalchemy import text

    with app.app_context():
        stored = db().execute(text("SELECT secret_hash FROM oauth_clients WHERE client_id='rp'"))
        value = stored.scalar_one()
    assert rp.secret
    assert rp.secret not in value
    assert len(value) == 64


def _assertion(key: ECKey, client_id: str, audience: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": f"jti-{now}-{id(changes)}",
    }
    claims.update(changes)
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def _pkjwt(client: FlaskClient, assertion: str) -> Any:
    return client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


def test_private_key_jwt(app: Flask, client: FlaskClient) -> None:
    key = ECKey.generate_key("P-256")
    key.ensure_kid()
    register(
        app,
        "pk",
        token_endpoint_auth_method="private_key_jwt",
        grant_types=["client_credentials"],
        scope="api.read",
        redirect_uris=[],
        jwks={"keys": [key.as_dict(private=False)]},
    )
    good = _assertion(key, "pk", "http://localhost/token", jti="one")
    assert _pkjwt(client, good).status_code == 200
    replay = _pkjwt(client, good)
    assert replay.status_code in (400, 401)
    assert replay.get_json()["error"] == "invalid_client"
    issuer_audience = _assertion(key, "pk", "http://localhost", jti="two")
    assert _pkjwt(client, issuer_audience).status_code == 200

    other = ECKey.generate_key("P-256")
    other.ensure_kid()
    wrong_key = jwt.encode(
        {"alg": "ES256", "kid": key.kid},
        {
            "iss": "pk",
            "sub": "pk",
            "aud": "http://localhost/token",
            "exp": int(time.time()) + 60,
            "jti": "three",
        },
        other,
    )
    assert _pkjwt(client, wrong_key).get_json()["error"] == "invalid_client"
    wrong_audience = _assertion(key, "pk", "https://elsewhere.example.com/token", jti="four")
    assert _pkjwt(client, wrong_audience).get_json()["error"] == "invalid_client"
    expired = _assertion(
        key, "pk", "http://localhost/token", jti="five", exp=int(time.time()) - 120
    )
    assert _pkjwt(client, expired).get_json()["error"] == "invalid_client"
    too_long = _assertion(
        key, "pk", "http://localhost/token", jti="six", exp=int(time.time()) + 86400
    )
    assert _pkjwt(client, too_long).get_json()["error"] == "invalid_client"
    unsigned = (
        b64({"alg": "none"})
        + "."
        + b64(
            {
                "iss": "pk",
                "sub": "pk",
                "aud": "http://localhost/token",
                "exp": int(time.time()) + 60,
                "jti": "seven",
            }
        )
        + "."
    )
    assert _pkjwt(client, unsigned).get_json()["error"] == "invalid_client"
    # a secret does not work for a private_key_jwt client
    secret_try = client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": "pk", "client_secret": "dgcs_x"},
    )
    assert secret_try.get_json()["error"] == "invalid_client"


class _KeysServer:
    """A client's ``jwks_uri``: serves ``keys`` (changeable) and counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[ECKey] = []
        self.fetches = 0
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.fetches += 1
                body = json.dumps({"keys": [k.as_dict(private=False) for k in served.keys]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def keys_server() -> Iterator[_KeysServer]:
    server = _KeysServer()
    yield server
    server.close()


def _new_key() -> ECKey:
    key = ECKey.generate_key("P-256")
    key.ensure_kid()
    return key


def test_a_client_that_rolled_its_keys_over_is_fetched_again(
    app: Flask, client: FlaskClient, keys_server: _KeysServer, clock: FrozenClock
) -> None:
    """Keys from a ``jwks_uri`` are cached, but an assertion signed with a key the
    cached set does not have makes the provider fetch the set again at once (not
    after the cache's five minutes); unknown kids cannot make it fetch more than once
    per cooldown."""
    old, new = _new_key(), _new_key()
    keys_server.keys = [old]
    register(
        app,
        "rolling",
        token_endpoint_auth_method="private_key_jwt",
        grant_types=["client_credentials"],
        scope="api.read",
        redirect_uris=[],
        jwks_uri=keys_server.uri,
    )
    assert _pkjwt(client, _assertion(old, "rolling", "http://localhost/token")).status_code == 200
    assert (
        _pkjwt(client, _assertion(old, "rolling", "http://localhost", jti="2")).status_code == 200
    )
    assert keys_server.fetches == 1  # cached
    keys_server.keys = [new]  # the client rolled over, a while later
    clock.advance(JWKS_REFETCH_COOLDOWN_SECONDS)
    rolled = _pkjwt(client, _assertion(new, "rolling", "http://localhost/token", jti="3"))
    assert rolled.status_code == 200, rolled.get_json()
    assert keys_server.fetches == 2
    forged = _assertion(_new_key(), "rolling", "http://localhost/token", jti="4")
    for _ in range(3):
        assert _pkjwt(client, forged).get_json()["error"] == "invalid_client"
    assert keys_server.fetches == 2  # within the cooldown: no fetch for a made-up kid
    clock.advance(JWKS_REFETCH_COOLDOWN_SECONDS)
    assert _pkjwt(client, forged).get_json()["error"] == "invalid_client"
    assert keys_server.fetches == 3  # after it, one
    retired = _pkjwt(client, _assertion(old, "rolling", "http://localhost/token", jti="5"))
    assert retired.get_json()["error"] == "invalid_client"  # the old key is gone


# -- client credentials


def test_client_credentials(app: Flask, client: FlaskClient, rp: RP) -> None:
    response = rp.token_request(client, {"grant_type": "client_credentials"})
    assert response.status_code == 200
    token = response.get_json()
    assert token["scope"] == "api.read"  # never the user scopes
    assert "refresh_token" not in token
    _, claims = _claims(app, token["access_token"])
    assert claims["sub"] == "rp"
    bad = rp.token_request(client, {"grant_type": "client_credentials", "scope": "openid"})
    assert bad.get_json()["error"] == "invalid_scope"


def test_grant_types_are_per_client(app: Flask, client: FlaskClient) -> None:
    _, secret = register(app, "web-only", first_party=True)
    response = RP(app, "web-only", secret).token_request(
        client, {"grant_type": "client_credentials"}
    )
    assert response.get_json()["error"] == "unauthorized_client"
    with pytest.raises(Exception, match="public client"):
        register(app, "bad", public=True, grant_types=["client_credentials"], redirect_uris=[])


def test_unknown_grant_types(client: FlaskClient, rp: RP) -> None:
    for grant_type in ("password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"):
        response = rp.token_request(
            client, {"grant_type": grant_type, "username": "alice", "password": "x"}
        )
        assert response.status_code == 400
        assert response.get_json()["error"] == "unsupported_grant_type"


# -- refresh tokens


def test_refresh_rotation_and_reuse_detection(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    first = tokens["refresh_token"]
    second = refresh(rp, client, first).get_json()
    assert second["refresh_token"] != first
    third = refresh(rp, client, second["refresh_token"]).get_json()
    # an attacker replays the first one: the whole family is revoked
    reuse = refresh(rp, client, first)
    assert reuse.get_json()["error"] == "invalid_grant"
    assert refresh(rp, client, third["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert userinfo(client, third["access_token"]).status_code == 401
    assert userinfo(client, tokens["access_token"]).status_code == 401


def test_refresh_tokens_belong_to_their_client(app: Flask, client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    _, other_secret = register(app, "other", first_party=True)
    other = RP(app, "other", other_secret)
    response = refresh(other, client, tokens["refresh_token"])
    assert response.get_json()["error"] == "invalid_grant"
    # the other client's attempt neither used up nor revoked the owner's token
    assert "access_token" in refresh(rp, client, tokens["refresh_token"]).get_json()


def test_refresh_cannot_widen_the_scope(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    response = rp.token_request(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "openid offline_access api.read",
        },
    )
    assert response.get_json()["error"] == "invalid_scope"
    # the refused request did not use the token up
    narrowed = rp.token_request(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "openid",
        },
    ).get_json()
    assert narrowed["scope"] == "openid"
    assert "access_token" in refresh(rp, client, narrowed["refresh_token"]).get_json()


def test_refresh_tokens_have_an_absolute_lifetime(
    client: FlaskClient, rp: RP, clock: FrozenClock
) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    current = tokens["refresh_token"]
    for _ in range(3):  # used within the idle lifetime, again and again
        clock.advance(3000)
        response = refresh(rp, client, current)
        if response.status_code != 200:
            break
        current = response.get_json()["refresh_token"]
    clock.advance(3000)  # now past the 7200 s maximum since the sign-in
    assert refresh(rp, client, current).get_json()["error"] == "invalid_grant"


def test_idle_refresh_tokens_expire(client: FlaskClient, rp: RP, clock: FrozenClock) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    clock.advance(3601)
    assert refresh(rp, client, tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_a_disabled_user_cannot_refresh(app: Flask, client: FlaskClient, rp: RP) -> None:
    from accounts.container import Accounts
    from accounts.people.models import UserStatus

    tokens, _ = rp.tokens(client, scope="openid offline_access")
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        Accounts.of().account_service().set_status(user, UserStatus.DISABLED)
    assert refresh(rp, client, tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert userinfo(client, tokens["access_token"]).status_code == 401


# -- tokens presented to userinfo and introspection


def _claims(app: Flask, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with app.app_context():
        return OAuthRuntime.of().keys.verify(token)


def _forgeries(app: Flask, token: str) -> dict[str, str]:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    raised = dict(claims, scope=claims["scope"] + " admin")
    attacker = ECKey.generate_key("P-256")
    return {
        "tampered claims": f"{header}.{b64(raised)}.{signature}",
        "alg none": f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{payload}.",
        "other key": jwt.encode(
            {"alg": "ES256", "typ": "at+jwt", "kid": _claims(app, token)[0]["kid"]},
            claims,
            attacker,
        ),
        "hs256 with public key": f"{b64({'alg': 'HS256', 'typ': 'at+jwt'})}.{payload}.{signature}",
        "garbage": "not-a-token",
    }


def test_forged_tokens_are_refused_everywhere(app: Flask, client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client)
    for name, forged in _forgeries(app, tokens["access_token"]).items():
        response = userinfo(client, forged)
        assert response.status_code == 401, name
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], name
        assert rp.post(client, "/introspect", {"token": forged}).get_json() == {"active": False}, (
            name
        )


def test_an_id_token_is_not_an_access_token(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client)
    assert userinfo(client, tokens["id_token"]).status_code == 401
    assert rp.post(client, "/introspect", {"token": tokens["id_token"]}).get_json() == {
        "active": False
    }


def test_expired_access_tokens(client: FlaskClient, rp: RP, clock: FrozenClock) -> None:
    tokens, _ = rp.tokens(client)
    clock.advance(601)
    response = userinfo(client, tokens["access_token"])
    assert response.status_code == 401
    assert rp.post(client, "/introspect", {"token": tokens["access_token"]}).get_json() == {
        "active": False
    }


def test_userinfo_without_a_token(client: FlaskClient) -> None:
    response = client.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error=" not in response.headers["WWW-Authenticate"]  # RFC 6750 3.1
    twice = client.post(
        "/userinfo", data={"access_token": "a"}, headers={"Authorization": "Bearer b"}
    )
    assert twice.status_code == 400
    assert "invalid_request" in twice.headers["WWW-Authenticate"]
    in_query = client.get("/userinfo?access_token=abc")
    assert in_query.status_code == 401  # tokens in URLs are not accepted


def test_userinfo_needs_the_openid_scope(client: FlaskClient, rp: RP) -> None:
    machine = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    response = userinfo(client, machine["access_token"])
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_introspection(app: Flask, client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    active = rp.post(client, "/introspect", {"token": tokens["access_token"]}).get_json()
    assert active["active"] is True
    assert active["client_id"] == "rp"
    assert active["scope"] == "openid offline_access"
    assert active["token_type"] == "Bearer"
    refresh_info = rp.post(
        client,
        "/introspect",
        {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
    ).get_json()
    assert refresh_info["active"] is True
    assert refresh_info["token_type"] == "refresh_token"
    _, other_secret = register(
        app,
        "resource-server",
        grant_types=["client_credentials"],
        scope="api.read",
        redirect_uris=[],
    )
    server = RP(app, "resource-server", other_secret)
    # a resource server may check access tokens, but not another client's refresh token
    assert (
        server.post(client, "/introspect", {"token": tokens["access_token"]}).get_json()["active"]
        is True
    )
    assert server.post(client, "/introspect", {"token": tokens["refresh_token"]}).get_json() == {
        "active": False
    }
    unauthenticated = client.post("/introspect", data={"token": tokens["access_token"]})
    assert unauthenticated.status_code == 401
    assert rp.post(client, "/introspect", {}).get_json()["error"] == "invalid_request"


def test_public_clients_cannot_introspect(app: Flask, client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client)
    register(app, "spa", public=True, redirect_uris=["https://spa.example.gov.cn/cb"])
    response = client.post(
        "/introspect", data={"token": tokens["access_token"], "client_id": "spa"}
    )
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def test_revoking_an_access_token(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client)
    assert rp.post(client, "/revoke", {"token": tokens["access_token"]}).status_code == 200
    assert rp.post(client, "/introspect", {"token": tokens["access_token"]}).get_json() == {
        "active": False
    }
    assert userinfo(client, tokens["access_token"]).status_code == 401
    # revoking again, or revoking nonsense, is fine (RFC 7009 2.2)
    assert rp.post(client, "/revoke", {"token": tokens["access_token"]}).status_code == 200
    assert rp.post(client, "/revoke", {"token": "unknown"}).status_code == 200


def test_revoking_a_refresh_token_ends_the_grant(client: FlaskClient, rp: RP) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    assert (
        rp.post(
            client,
            "/revoke",
            {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        ).status_code
        == 200
    )
    assert refresh(rp, client, tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert userinfo(client, tokens["access_token"]).status_code == 401


def test_a_client_cannot_revoke_another_clients_token(
    app: Flask, client: FlaskClient, rp: RP
) -> None:
    tokens, _ = rp.tokens(client)
    _, other_secret = register(app, "other", first_party=True)
    other = RP(app, "other", other_secret)
    response = other.post(client, "/revoke", {"token": tokens["access_token"]})
    assert response.status_code == 400
    assert userinfo(client, tokens["access_token"]).status_code == 200


# -- subjects


def test_pairwise_subjects(app: Flask, client: FlaskClient, rp: RP) -> None:
    for client_id, sector in (
        ("tax-a", "tax.dg.gov.cn"),
        ("tax-b", "tax.dg.gov.cn"),
        ("health", "health.dg.gov.cn"),
    ):
        register(
            app,
            client_id,
            first_party=True,
            subject_type="pairwise",
            sector_identifier=sector,
            redirect_uris=[f"https://{client_id}.example.gov.cn/cb"],
        )
    subjects = {}
    for client_id in ("tax-a", "tax-b", "health"):
        with app.app_context():
            from idp.oauth.clients import ClientInfo  # noqa: F401

            secret = OAuthRuntime.of().clients.rotate_secret(db(), client_id)
        pairwise = RP(app, client_id, secret, f"https://{client_id}.example.gov.cn/cb")
        tokens, _ = pairwise.tokens(client)
        _, claims = _claims(app, tokens["id_token"])
        info = userinfo(client, tokens["access_token"]).get_json()
        assert info["sub"] == claims["sub"]
        _, at = _claims(app, tokens["access_token"])
        assert at["sub"] == claims["sub"]
        subjects[client_id] = claims["sub"]
    public_tokens, _ = rp.tokens(client)
    public_sub = _claims(app, public_tokens["id_token"])[1]["sub"]
    assert subjects["tax-a"] == subjects["tax-b"]  # one department, one sector
    assert subjects["health"] != subjects["tax-a"]
    assert public_sub not in subjects.values()


# -- bad input at the token endpoint


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"grant_type": "authorization_code"},
        {"grant_type": "authorization_code", "code": "x" * 5000},
        {"grant_type": "refresh_token"},
        {"grant_type": "refresh_token", "refresh_token": "dgrt_nonsense"},
    ],
)
def test_malformed_token_requests_get_oauth_errors(
    client: FlaskClient, rp: RP, data: dict[str, str]
) -> None:
    response = rp.token_request(client, data)
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"] in {
        "invalid_request",
        "invalid_grant",
        "unsupported_grant_type",
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_the_token_endpoint_needs_post(client: FlaskClient) -> None:
    response = client.get("/token?grant_type=client_credentials")
    assert response.status_code == 405
    assert response.get_json()["error"] == "invalid_request"


def test_tokens_through_a_signed_in_browser_only_with_pkce(client: FlaskClient, rp: RP) -> None:
    sign_in(client)
    response = rp.start(client, Flow(), code_challenge="short")
    assert query_of(response.headers["Location"])["error"] == "invalid_request"
