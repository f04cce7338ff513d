"""The lean path for POST /token, /introspect and /revoke behaves like the rest of the
service: same headers, same answers to bad input, JSON errors, never a stack trace."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.oauth.server import OAuthRuntime
from tests.oauth_support import RP, register


@pytest.fixture
def rp(app: Flask) -> RP:
    _, secret = register(
        app, "machine", grant_types=["client_credentials"], scope="api.read", redirect_uris=[]
    )
    return RP(app, "machine", secret)


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_headers_and_request_ids(client: FlaskClient, rp: RP, path: str) -> None:
    response = client.post(
        path,
        data={"grant_type": "client_credentials", "token": "x"},
        headers={**rp.basic(), "X-Request-Id": "trace-42"},
    )
    assert response.status_code in (200, 400)
    assert response.headers["X-Request-Id"] == "trace-42"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"]


def test_bad_input_gets_json_errors(client: FlaskClient, rp: RP) -> None:
    bad_utf8 = client.post(
        "/token",
        data=b"grant_type=client_credentials&scope=%FF",
        content_type="application/x-www-form-urlencoded",
        headers=rp.basic(),
    )
    assert bad_utf8.status_code == 400
    assert bad_utf8.get_json()["error"] == "invalid_request"
    too_many = client.post(
        "/introspect",
        data="&".join(f"f{i}=1" for i in range(200)),
        content_type="application/x-www-form-urlencoded",
        headers=rp.basic(),
    )
    assert too_many.status_code == 400
    too_big = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "x" * 100_000},
        headers=rp.basic(),
    )
    assert too_big.status_code == 413
    assert too_big.get_json()["error"] == "invalid_request"
    wrong_method = client.get("/introspect")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"] == "invalid_request"


def test_an_unexpected_failure_is_a_json_500(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(app.extensions["idp.oauth"].server, "create_token_response", explode)
    response = client.post("/token", data={"grant_type": "client_credentials"}, headers=rp.basic())
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "server_error",
        "error_description": "An unexpected error occurred.",
    }
    assert "internal detail" not in response.get_data(as_text=True)


def test_a_store_outage_is_answered_from_the_database(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idp.core.store import StoreUnavailable

    live = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    revoked = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    assert rp.post(client, "/revoke", {"token": revoked["access_token"]}).status_code == 200

    def down(*_args: object) -> int:
        raise StoreUnavailable("cannot reach the store at redis://cache:6379/0")

    with app.app_context():
        provider = OAuthRuntime.of()
        monkeypatch.setattr(provider.revocations._store, "get_many", down)
        monkeypatch.setattr(provider.revocations._store, "get", down)
    answer = rp.post(client, "/introspect", {"token": live["access_token"]})
    assert answer.status_code == 200
    assert answer.get_json()["active"] is True
    answer = rp.post(client, "/introspect", {"token": revoked["access_token"]})
    assert answer.get_json() == {"active": False}

    # with the database gone too, nobody can tell: 503, never "active"
    def no_database(*_args: object) -> None:
        from idp.core.db import DatabaseUnavailable

        raise DatabaseUnavailable("cannot reach the database")

    monkeypatch.setattr(provider.revocations, "_revoked_in_database", no_database)
    for token in (live, revoked):
        response = rp.post(client, "/introspect", {"token": token["access_token"]})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"  # like every other 503
        assert response.get_json()["error"] == "temporarily_unavailable"


def test_the_introspection_fast_path_answers_like_authlib(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idp.oauth import lean

    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    cases = [
        {"token": token["access_token"]},
        {"token": token["access_token"], "token_type_hint": "access_token"},
        {"token": token["access_token"][:-3] + "AAA"},
        {"token": "not-a-token"},
    ]
    server = app.extensions["idp.oauth"].server
    authlib_endpoint = server.create_endpoint_response

    def not_here(*_args: object) -> None:
        raise AssertionError("the fast path should have answered")

    monkeypatch.setattr(server, "create_endpoint_response", not_here)
    fast = [rp.post(client, "/introspect", data).get_json() for data in cases]
    monkeypatch.setattr(server, "create_endpoint_response", authlib_endpoint)
    monkeypatch.setattr(lean.LeanEndpoints, "_introspect_common_case", lambda *_args: None)
    slow = [rp.post(client, "/introspect", data).get_json() for data in cases]
    assert fast == slow
    assert fast[0]["active"] is True
    assert fast[2] == {"active": False}


def test_the_introspection_fast_path_refuses_what_authlib_refuses(
    app: Flask, client: FlaskClient, rp: RP
) -> None:
    """From the attacker's side: everything the fast path does not accept is answered by
    Authlib's endpoint, with the same refusals as before the fast path existed."""
    import base64

    _, post_secret = register(
        app,
        "poster",
        grant_types=["client_credentials"],
        scope="api.read",
        redirect_uris=[],
        token_endpoint_auth_method="client_secret_post",
    )
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    access = token["access_token"]

    def basic(client_id: str, secret: str) -> dict[str, str]:
        raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    # a wrong secret, an unknown client, and a client registered for another method
    for headers in (
        basic("machine", "dgcs_wrong"),
        basic("nobody", "dgcs_wrong"),
        basic("poster", str(post_secret)),
    ):
        refused = client.post("/introspect", data={"token": access}, headers=headers)
        assert refused.status_code == 401
        assert refused.get_json()["error"] == "invalid_client"
        assert "active" not in refused.get_json()

    # a repeated field is not read as either value
    repeated = client.post(
        "/introspect",
        data=f"token={access}&token=other",
        headers={**rp.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400
    assert repeated.get_json()["error"] == "invalid_request"
    # RFC 8707 resource indicators may repeat (and are ignored)
    resources = client.post(
        "/introspect",
        data=f"token={access}&resource=https://a.example&resource=https://b.example",
        headers={**rp.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resources.get_json()["active"] is True

    # a revoked token is inactive on the fast path too
    assert rp.post(client, "/introspect", {"token": access}).get_json()["active"] is True
    assert rp.post(client, "/revoke", {"token": access}).status_code == 200
    assert rp.post(client, "/introspect", {"token": access}).get_json() == {"active": False}
