"""A notice of every security change: the person hears of it by SMS at the account's
phone (what changed and when; never a secret), after the change has committed; a change
that did not happen sends nothing, and a gateway that is down never undoes the change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from accounts.adapters.sms import SmsUnavailable
from tests.support import STRONG_PASSWORD, create_user, csrf_token, sign_in, submit, text

PHONE = "13800138000"
NEW_PASSWORD = "another long and different passphrase"


class RecordingGateway:
    """An SMS gateway (the production interface) that keeps what it was handed."""

    source = "sms:test-recording"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))


class DownGateway:
    source = "sms:test-down"

    def send(self, _phone: str, _text: str) -> None:
        raise SmsUnavailable("connection refused")


def change_password(client: FlaskClient, current: str = STRONG_PASSWORD) -> Any:
    return submit(
        client,
        "/account/password",
        {"current_password": current, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def noticed_app(make_app: Callable[..., Flask], gateway: RecordingGateway) -> Flask:
    return make_app(sms=gateway)


def test_a_password_change_is_noticed_at_the_accounts_phone(
    noticed_app: Flask, gateway: RecordingGateway
) -> None:
    create_user(noticed_app, "alice", phone=PHONE)
    client = noticed_app.test_client()
    sign_in(client, "alice")
    assert change_password(client).status_code == 302
    [(phone, message)] = gateway.sent
    assert phone == PHONE
    assert "your password was changed" in message
    assert "This wasn't me" in message
    assert STRONG_PASSWORD not in message
    assert NEW_PASSWORD not in message


def test_the_notice_is_in_the_language_of_the_page(
    noticed_app: Flask, gateway: RecordingGateway
) -> None:
    create_user(noticed_app, "alice", phone=PHONE)
    client = noticed_app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    sign_in(client, "alice")
    change_password(client)
    [(_phone, message)] = gateway.sent
    assert "密码" in message
    assert "your password" not in message


def test_a_refused_change_sends_nothing(noticed_app: Flask, gateway: RecordingGateway) -> None:
    create_user(noticed_app, "alice", phone=PHONE)
    client = noticed_app.test_client()
    sign_in(client, "alice")
    answer = change_password(client, current="not the password at all")
    assert answer.status_code in (200, 400)
    assert gateway.sent == []
    # signing in is not a security change: no message for it either
    sign_in(noticed_app.test_client(), "alice")
    assert gateway.sent == []


def test_authenticator_changes_are_noticed_and_no_phone_means_no_message(
    noticed_app: Flask, gateway: RecordingGateway
) -> None:
    create_user(noticed_app, "alice", phone=PHONE)
    create_user(noticed_app, "bob")  # no phone on the account
    for username in ("alice", "bob"):
        client = noticed_app.test_client()
        sign_in(client, username)
        page = text(client.get("/account/totp"))
        secret = page.split('class="secret">', 1)[1].split("<", 1)[0].replace(" ", "")
        answer = client.post(
            "/account/totp",
            data={"csrf_token": csrf_token(page), "otp": pyotp.TOTP(secret).now()},
        )
        assert answer.status_code in (200, 302), text(answer)
    assert [(phone, "authenticator app" in message) for phone, message in gateway.sent] == [
        (PHONE, True)
    ]


def test_a_gateway_that_is_down_never_undoes_the_change(make_app: Callable[..., Flask]) -> None:
    app = make_app(sms=DownGateway())
    create_user(app, "alice", phone=PHONE)
    client = app.test_client()
    sign_in(client, "alice")
    assert change_password(client).status_code == 302
    fresh = app.test_client()
    assert sign_in(fresh, "alice", NEW_PASSWORD).status_code == 302
    assert fresh.get("/account").status_code == 200


def test_a_stale_session_cannot_start_a_phone_change(
    noticed_app: Flask, clock: Any, gateway: RecordingGateway
) -> None:
    """The phone number is where these notices go: a stolen old session must confirm the
    password before it can start changing it."""
    create_user(noticed_app, "alice", phone=PHONE)
    client = noticed_app.test_client()
    sign_in(client, "alice")
    form = client.get("/account/realname/phone")
    assert form.status_code == 200
    clock.advance(600)  # past the re-authentication window, within the idle timeout
    stale = client.get("/account/realname/phone")
    assert stale.status_code == 302
    assert stale.location.startswith("/account/reauth")
    fields = {"name": "王小丽", "id_number": "11010519491231002X", "phone": "13900139000"}
    posted = client.post(
        "/account/realname/phone", data={"csrf_token": csrf_token(text(form)), **fields}
    )
    assert posted.status_code == 302
    assert posted.location.startswith("/account/reauth")
    assert gateway.sent == []  # no code was texted anywhere
