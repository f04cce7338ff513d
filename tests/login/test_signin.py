from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from accounts.container import Accounts
from idp.core.clock import FrozenClock
from tests.support import STRONG_PASSWORD, create_user, sign_in, text


def test_sign_in_with_password_reaches_the_account_page(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    page = client.get("/account")
    assert page.status_code == 200
    assert "alice" in text(page)


def test_wrong_password_is_refused(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = sign_in(client, password="wrong password here")
    assert response.status_code == 401
    assert client.get("/account").status_code == 302


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(
    app: Flask, client: FlaskClient
) -> None:
    create_user(app)
    wrong = sign_in(client, password="not the password")
    unknown = sign_in(client, username="nobody-here", password=STRONG_PASSWORD)
    assert wrong.status_code == unknown.status_code == 401

    def body(response: object) -> str:
        return text(response).replace("nobody-here", "alice")  # type: ignore[arg-type]

    strip = __import__("re").compile(r'name="csrf_token" type="hidden" value="[^"]+"')
    assert strip.sub("", body(wrong)) == strip.sub("", body(unknown))


def test_an_old_hash_is_upgraded_at_sign_in(app: Flask, client: FlaskClient) -> None:
    from sqlalchemy import select

    from accounts.container import Accounts
    from accounts.credentials.passwords import PasswordHasher
    from idp.core.audit.models import AuditEvent
    from idp.core.runtime import db

    user = create_user(app)
    old = PasswordHasher(memory_kib=4096, time_cost=1, parallelism=1)
    with app.app_context():
        stored = Accounts.of().account_service().get(user.id)
        assert stored is not None
        stored.password_hash = old.hash(STRONG_PASSWORD)
        db().commit()
    assert sign_in(client).status_code == 302
    with app.app_context():
        upgraded = Accounts.of().account_service().get(user.id)
        assert upgraded is not None
        assert upgraded.password_hash is not None
        assert upgraded.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        events = db().scalars(select(AuditEvent.event)).all()
        assert "password.rehash" in events
    client.post("/logout")
    assert sign_in(app.test_client()).status_code == 302  # the new hash verifies


def test_a_disabled_account_cannot_sign_in_and_is_not_revealed(
    app: Flask, client: FlaskClient
) -> None:
    from accounts.people.models import UserStatus

    user = create_user(app)
    with app.app_context():
        stored = Accounts.of().account_service().get(user.id)
        assert stored is not None
        Accounts.of().account_service(actor="admin").set_status(stored, UserStatus.DISABLED)
    response = sign_in(client)
    assert response.status_code == 401
    assert "incorrect" in text(response)


def test_changing_the_password(app: Flask, client: FlaskClient) -> None:
    from tests.support import submit

    create_user(app)
    sign_in(client)
    wrong = submit(
        client,
        "/account/password",
        {
            "current_password": "not it",
            "password": "brand new passphrase",
            "password_confirm": "brand new passphrase",
        },
    )
    assert wrong.status_code == 400
    weak = submit(
        client,
        "/account/password",
        {
            "current_password": STRONG_PASSWORD,
            "password": "password1",
            "password_confirm": "password1",
        },
    )
    assert weak.status_code == 400
    done = submit(
        client,
        "/account/password",
        {
            "current_password": STRONG_PASSWORD,
            "password": "brand new passphrase",
            "password_confirm": "brand new passphrase",
        },
    )
    assert done.status_code == 302
    assert sign_in(app.test_client()).status_code == 401
    assert sign_in(app.test_client(), password="brand new passphrase").status_code == 302


def test_changing_the_password_signs_other_browsers_out(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    from tests.support import submit

    create_user(app)
    other = app.test_client()
    sign_in(other)
    clock.advance(1)
    sign_in(client)
    assert (
        submit(
            client,
            "/account/password",
            {
                "current_password": STRONG_PASSWORD,
                "password": "brand new passphrase",
                "password_confirm": "brand new passphrase",
            },
        ).status_code
        == 302
    )
    assert client.get("/account").status_code == 200
    assert other.get("/account").status_code == 302


def test_unknown_users_cost_one_hash_verification_like_known_ones(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Similar timing: an unknown username still pays for one Argon2 verification."""
    from accounts.credentials.passwords import PasswordHasher

    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, stored: str, password: str) -> bool:
        calls.append(password)
        return original(self, stored, password)

    create_user(app)
    client.get("/login")  # the dummy hash is made lazily; make it before counting
    monkeypatch.setattr(PasswordHasher, "verify", counting)
    sign_in(client, password="wrong password 1")
    known = len(calls)
    sign_in(client, username="nobody-at-all", password="wrong password 2")
    assert known == 1
    assert len(calls) - known == 1


def test_disabling_an_account_ends_its_sessions_and_tokens(app: Flask) -> None:
    from accounts.people.models import UserStatus
    from tests.oauth_support import RP, register

    create_user(app)
    _, secret = register(app, "svc", first_party=True, scope="openid offline_access")
    rp = RP(app, "svc", secret)
    browser = app.test_client()
    tokens, _ = rp.tokens(browser, scope="openid offline_access")
    assert browser.get("/account").status_code == 200
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        Accounts.of().account_service(actor="admin").set_status(user, UserStatus.DISABLED)
    assert browser.get("/account").status_code == 302
    refreshed = rp.token_request(
        browser, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.get_json()["error"] == "invalid_grant"
    assert rp.post(browser, "/introspect", {"token": tokens["access_token"]}).get_json() == {
        "active": False
    }
