from __future__ import annotations

import re
import threading

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from accounts.container import Accounts
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from tests.support import STRONG_PASSWORD, create_user, csrf_token, sign_in, submit
from tests.support import text as body

SECRET = re.compile(r'class="secret">([A-Z2-7 ]+)<')


def _enrol(app: Flask, client: FlaskClient, clock: FrozenClock) -> tuple[str, list[str]]:
    """Enrol through the pages; returns the seed and the recovery codes shown."""
    page = client.get("/account/totp")
    assert page.status_code == 200
    html = body(page)
    assert "<svg" in html  # the QR code is rendered on the server
    match = SECRET.search(html)
    assert match
    seed = match.group(1).replace(" ", "")
    code = pyotp.TOTP(seed).at(clock.now())
    done = client.post("/account/totp", data={"csrf_token": csrf_token(html), "otp": code})
    assert done.status_code == 200
    codes = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", body(done))
    return seed, codes


@pytest.fixture
def enrolled(app: Flask, client: FlaskClient, clock: FrozenClock) -> tuple[str, list[str]]:
    create_user(app)
    assert sign_in(client).status_code == 302
    seed, codes = _enrol(app, client, clock)
    client.post("/logout", data={"csrf_token": csrf_token(body(client.get("/account")))})
    clock.advance(30)  # the enrolment code's step is used up
    return seed, codes


def _otp_step(client: FlaskClient, code: str):  # type: ignore[no-untyped-def]
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login/otp"
    return submit(client, "/login/otp", {"otp": code})


def test_enrolment_needs_a_correct_first_code(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(app)
    sign_in(client)
    page = body(client.get("/account/totp"))
    wrong = client.post("/account/totp", data={"csrf_token": csrf_token(page), "otp": "000000"})
    assert wrong.status_code == 400
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert not user.has_totp


def test_enrolment_shows_ten_recovery_codes_and_stores_no_secret_in_clear(
    app: Flask, enrolled: tuple[str, list[str]]
) -> None:
    seed, codes = enrolled
    assert len(codes) == 10
    assert len(set(codes)) == 10
    with app.app_context():
        totp_row = db().execute(text("SELECT * FROM totp_credentials")).mappings().one()
        assert seed not in str(dict(totp_row))
        hashes = [row[0] for row in db().execute(text("SELECT code_hash FROM recovery_codes"))]
        for code in codes:
            assert code.replace("-", "") not in " ".join(hashes)


def test_sign_in_then_asks_for_a_code(
    client: FlaskClient, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    assert client.get("/account").status_code == 302
    response = _otp_step(client, pyotp.TOTP(seed).at(clock.now()))
    assert response.status_code == 302
    assert client.get("/account").status_code == 200


def test_a_password_alone_does_not_sign_in(
    client: FlaskClient, enrolled: tuple[str, list[str]]
) -> None:
    sign_in(client)
    assert client.get("/account").status_code == 302


def test_a_code_is_accepted_only_once(
    app: Flask, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    code = pyotp.TOTP(seed).at(clock.now())
    assert _otp_step(app.test_client(), code).status_code == 302
    replay = _otp_step(app.test_client(), code)
    assert replay.status_code == 401


def test_codes_from_older_steps_are_refused_after_a_newer_one(
    app: Flask, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    totp = pyotp.TOTP(seed)
    previous = totp.at(clock.now(), counter_offset=-1)
    current = totp.at(clock.now())
    assert _otp_step(app.test_client(), current).status_code == 302
    assert _otp_step(app.test_client(), previous).status_code == 401


def test_codes_within_one_step_of_drift_are_accepted(
    app: Flask, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    clock.advance(300)
    totp = pyotp.TOTP(seed)
    assert _otp_step(app.test_client(), totp.at(clock.now(), counter_offset=-1)).status_code == 302
    clock.advance(300)
    assert _otp_step(app.test_client(), totp.at(clock.now(), counter_offset=-2)).status_code == 401
    assert _otp_step(app.test_client(), totp.at(clock.now(), counter_offset=2)).status_code == 401


def test_recovery_codes_work_once(app: Flask, enrolled: tuple[str, list[str]]) -> None:
    _, codes = enrolled
    assert _otp_step(app.test_client(), codes[0].upper()).status_code == 302
    assert _otp_step(app.test_client(), codes[0]).status_code == 401
    assert _otp_step(app.test_client(), codes[1].replace("-", "")).status_code == 302
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert Accounts.of().totp_service().remaining_recovery_codes(user) == 8


def test_parallel_use_of_one_code_succeeds_once(
    app: Flask, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    code = pyotp.TOTP(seed).at(clock.now())
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def use() -> None:
        with app.app_context():
            user = Accounts.of().account_service().find_by_username("alice")
            assert user is not None
            service = Accounts.of().totp_service()
            barrier.wait()
            results.append(service.verify(user, code))
            db().commit()

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_removing_the_app_needs_the_password(
    app: Flask, client: FlaskClient, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    _otp_step(client, pyotp.TOTP(seed).at(clock.now()))
    wrong = submit(client, "/account/totp/disable", {"password": "not my password"})
    assert wrong.status_code == 401
    right = submit(client, "/account/totp/disable", {"password": STRONG_PASSWORD})
    assert right.status_code == 302
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert not user.has_totp


def test_new_recovery_codes_replace_the_old_ones(
    app: Flask, client: FlaskClient, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, old = enrolled
    _otp_step(client, pyotp.TOTP(seed).at(clock.now()))
    page = submit(client, "/account/recovery-codes", {}, form_url="/account")
    new = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", body(page))
    assert len(new) == 10
    assert _otp_step(app.test_client(), old[0]).status_code == 401
    assert _otp_step(app.test_client(), new[0]).status_code == 302


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"login_failures_before_backoff": 3}


def test_guessing_codes_is_throttled(
    app: Flask, clock: FrozenClock, enrolled: tuple[str, list[str]]
) -> None:
    seed, _ = enrolled
    attacker = app.test_client()
    assert sign_in(attacker).status_code == 302  # the attacker knows the password
    right = pyotp.TOTP(seed).at(clock.now())
    # wrong for certain: no code of the steps the check accepts (a fixed guess such as
    # "222222" once was the right code)
    valid = {pyotp.TOTP(seed).at(clock.now().timestamp() + 30 * step) for step in range(-2, 3)}
    guesses = [g for g in ("111111", "222222", "333333", "444444", "555555") if g not in valid]
    for guess in guesses[:3]:
        assert submit(attacker, "/login/otp", {"otp": guess}).status_code == 401
    assert submit(attacker, "/login/otp", {"otp": right}).status_code == 429
    assert attacker.get("/account").status_code == 302
