from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

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
