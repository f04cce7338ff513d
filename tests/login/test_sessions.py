"""The SSO session cookie: flags, rotation, expiry, sign-out; CSRF and headers."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from idp.app import create_app
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime
from idp.core.store import Store
from tests.support import (
    STRONG_PASSWORD,
    create_user,
    csrf_token,
    replace_settings,
    sign_in,
    submit,
)
from tests.support import text as body


def _session_cookie(client: FlaskClient, name: str = "idp_session") -> str | None:
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def test_cookie_flags_on_http(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = sign_in(client)
    header = next(v for v in response.headers.getlist("Set-Cookie") if "idp_session=" in v)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Secure" not in header


def test_cookie_flags_on_https(settings: Settings, store: Store, clock: FrozenClock) -> None:
    secure = create_app(
        replace_settings(settings, issuer="https://id.example.gov.cn"), store=store, clock=clock
    )
    client = secure.test_client()
    create_user(secure)
    base = "https://id.example.gov.cn"
    page = client.get("/login", base_url=base)
    response = client.post(
        "/login",
        base_url=base,
        data={
            "csrf_token": csrf_token(body(page)),
            "username": "alice",
            "password": STRONG_PASSWORD,
        },
        headers={"Referer": base + "/login"},
    )
    assert response.status_code == 302
    header = next(v for v in response.headers.getlist("Set-Cookie") if "idp_session=" in v)
    assert header.startswith("__Host-idp_session=")
    assert "Secure" in header
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    Runtime.of(secure).database.dispose()


def test_the_session_id_changes_at_sign_in(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    client.get("/login")
    before = _session_cookie(client)
    assert before
    sign_in(client)
    after = _session_cookie(client)
    assert after
    assert after != before
    # the pre-sign-in identifier (e.g. planted by an attacker) is worthless now
    planted = app.test_client()
    planted.set_cookie("idp_session", before)
    assert planted.get("/account").status_code == 302


def test_sign_out_ends_the_session_everywhere(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    sign_in(client)
    cookie = _session_cookie(client)
    assert cookie
    copy = app.test_client()
    copy.set_cookie("idp_session", cookie)
    assert copy.get("/account").status_code == 200
    page = client.get("/logout")
    assert client.post("/logout", data={"csrf_token": csrf_token(body(page))}).status_code == 302
    assert client.get("/account").status_code == 302
    assert copy.get("/account").status_code == 302


def test_forms_without_a_valid_csrf_token_are_refused(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    client.get("/login")
    missing = client.post("/login", data={"username": "alice", "password": STRONG_PASSWORD})
    assert missing.status_code == 400
    assert "expired" in body(missing)
    forged = client.post(
        "/login", data={"username": "alice", "password": STRONG_PASSWORD, "csrf_token": "forged"}
    )
    assert forged.status_code == 400
    # a token from another session does not work either
    other = app.test_client()
    token = csrf_token(body(other.get("/login")))
    stolen = client.post(
        "/login", data={"username": "alice", "password": STRONG_PASSWORD, "csrf_token": token}
    )
    assert stolen.status_code == 400
    assert client.get("/account").status_code == 302


def test_an_expired_csrf_token_gets_a_clear_page(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(app)
    token = csrf_token(body(client.get("/login")))
    app.config["WTF_CSRF_TIME_LIMIT"] = -1  # every token is now older than the limit
    response = client.post(
        "/login", data={"username": "alice", "password": STRONG_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 400
    assert "expired" in body(response)


def test_sign_out_needs_a_post_with_a_token(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    sign_in(client)
    assert client.post("/logout").status_code == 400
    assert client.get("/account").status_code == 200


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"session_idle_timeout": 600, "session_max_age": 3600}


def test_idle_sessions_end(app: Flask, client: FlaskClient, clock: FrozenClock) -> None:
    create_user(app)
    sign_in(client)
    clock.advance(500)
    assert client.get("/account").status_code == 200
    clock.advance(500)  # 500 s since the last use: still within the idle timeout
    assert client.get("/account").status_code == 200
    clock.advance(600 + 61)
    assert client.get("/account").status_code == 302


def test_sessions_end_at_their_absolute_lifetime(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(app)
    sign_in(client)
    for _ in range(7):
        clock.advance(500)
        assert client.get("/account").status_code == 200
    clock.advance(200)  # 3700 s after sign-in, though used a moment ago
    assert client.get("/account").status_code == 302


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_next_never_leaves_the_site(app: Flask, client: FlaskClient, target: str) -> None:
    create_user(app)
    response = submit(
        client, "/login", {"username": "alice", "password": STRONG_PASSWORD, "next": target}
    )
    assert response.headers["Location"] == "/account"


def test_next_within_the_site_is_followed(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = submit(
        client,
        "/login",
        {"username": "alice", "password": STRONG_PASSWORD, "next": "/account/password"},
    )
    assert response.headers["Location"] == "/account/password"


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers  # plain http
