from __future__ import annotations

import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from accounts.container import Accounts
from accounts.people.errors import UsernameTaken
from accounts.people.models import User
from idp.core.runtime import db
from tests.support import STRONG_PASSWORD, create_user, submit
from tests.support import text as body


def _register(client: FlaskClient, **fields: str):  # type: ignore[no-untyped-def]
    data = {
        "username": "alice",
        "password": STRONG_PASSWORD,
        "password_confirm": STRONG_PASSWORD,
        "phone": "",
    }
    data.update(fields)
    return submit(client, "/register", data)


def _count_users(app: Flask) -> int:
    with app.app_context():
        return int(db().scalar(select(func.count()).select_from(User)) or 0)


def test_registration_signs_the_new_user_in(app: Flask, client: FlaskClient) -> None:
    response = _register(client)
    assert response.status_code == 302
    page = client.get("/account")
    assert page.status_code == 200
    assert "alice" in body(page)
    assert _count_users(app) == 1


@pytest.mark.parametrize("variant", ["alice", "ALICE", "Ａｌｉｃｅ"])  # noqa: RUF001
def test_a_taken_username_is_refused_in_any_case_or_width(
    app: Flask, client: FlaskClient, variant: str
) -> None:
    create_user(app, "alice")
    response = _register(client, username=variant)
    assert response.status_code == 409
    assert "taken" in body(response)
    assert _count_users(app) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password": "password", "password_confirm": "password"}, "commonly used"),
        ({"password": "short", "password_confirm": "short"}, "at least 8"),
        ({"password_confirm": "something else entirely"}, "differ"),
        ({"username": "ab"}, "3 to 32"),
        ({"username": "bad name!"}, "letters, digits"),
        ({"username": "13800138000"}, "only digits"),
        ({"phone": "12345"}, "mobile number"),
        # Arabic-Indic digits: Python's \d matches them; a phone number must not
        ({"phone": "13" + "\u0668" + "\u0660" * 8}, "mobile number"),
        ({"username": ""}, "required"),
    ],
)
def test_invalid_registrations_say_why_and_write_nothing(
    app: Flask, client: FlaskClient, fields: dict[str, str], message: str
) -> None:
    response = _register(client, **fields)
    assert response.status_code == 400
    assert message in body(response)
    assert _count_users(app) == 0


def test_the_phone_number_is_stored_encrypted_with_a_blind_index(
    app: Flask, client: FlaskClient
) -> None:
    assert _register(client, phone="+86 138-0013-8000").status_code == 302
    with app.app_context():
        raw = db().execute(text("SELECT * FROM users")).mappings().one()
        assert "13800138000" not in " ".join(str(value) for value in raw.values())
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert Accounts.of().account_service().phone_of(user) == "13800138000"
        assert raw["phone_index"]
    assert "138****8000" in body(client.get("/account"))


def test_concurrent_registrations_of_one_name_create_one_account(app: Flask) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        with app.app_context():
            barrier.wait()
            try:
                Accounts.of().account_service().register("racer", STRONG_PASSWORD)
                outcomes.append("created")
            except UsernameTaken:
                outcomes.append("taken")

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("created") == 1
    assert outcomes.count("taken") == 3
    assert _count_users(app) == 1


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"registrations_per_ip_per_hour": 2}


def test_registrations_per_address_are_limited(app: Flask, client: FlaskClient) -> None:
    assert _register(client, username="first1").status_code == 302
    client.post("/logout")
    fresh = app.test_client()
    assert _register(fresh, username="second2").status_code == 302
    third = app.test_client()
    response = _register(third, username="third3")
    assert response.status_code == 429
    assert _count_users(app) == 2


def test_editing_the_profile(app: Flask, client: FlaskClient) -> None:
    from tests.support import sign_in

    create_user(app)
    sign_in(client)
    bad = submit(client, "/account/profile", {"display_name": "Alice", "email": "not-an-email"})
    assert bad.status_code == 400
    assert "e-mail address" in body(bad)
    good = submit(
        client, "/account/profile", {"display_name": " Alice Wang ", "email": "Alice@Example.CN"}
    )
    assert good.status_code == 302
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert user.display_name == "Alice Wang"
        assert user.email == "alice@example.cn"
        claims = Accounts.of().account_service().standard_claims(user)
    assert claims["name"] == "Alice Wang"
    assert claims["email_verified"] is False
