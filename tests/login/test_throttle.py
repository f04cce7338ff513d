"""Guessing passwords from the attacker's side."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from tests.support import STRONG_PASSWORD, create_user, sign_in
from tests.support import text as body

CSRF = re.compile(r'name="csrf_token" type="hidden" value="[^"]+"')


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "login_failures_before_backoff": 3,
        "login_backoff_base_seconds": 30,
        "login_backoff_max_seconds": 300,
        "ip_max_failures": 20,
    }


def _guess(client: FlaskClient, username: str = "alice", times: int = 1) -> int:
    status = 0
    for index in range(times):
        status = sign_in(client, username, f"wrong guess number {index}").status_code
    return status


def test_back_off_after_repeated_failures_even_for_the_right_password(
    app: Flask, clock: FrozenClock
) -> None:
    create_user(app)
    attacker = app.test_client()
    assert _guess(attacker, times=2) == 401
    assert _guess(attacker) == 401  # the third failure starts the back-off
    blocked = sign_in(app.test_client())  # the right password, from a new browser
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) == 30
    clock.advance(31)
    assert sign_in(app.test_client()).status_code == 302


def test_the_wait_doubles_but_is_capped_never_permanent(app: Flask, clock: FrozenClock) -> None:
    create_user(app)
    attacker = app.test_client()
    waits: list[int] = []
    for _ in range(8):
        assert _guess(attacker, times=3 if not waits else 1) == 401
        response = sign_in(attacker, "alice", "another guess")
        assert response.status_code == 429
        wait = int(response.headers["Retry-After"])
        waits.append(wait)
        clock.advance(wait + 1)
    assert waits[:4] == [30, 60, 120, 240]
    assert max(waits) == 300
    assert sign_in(app.test_client()).status_code == 302


def test_a_known_browser_is_not_locked_out_by_an_attacker(app: Flask, clock: FrozenClock) -> None:
    create_user(app)
    owner = app.test_client()
    assert sign_in(owner).status_code == 302  # the owner's browser gets a device cookie
    owner.post("/logout")
    owner.delete_cookie("idp_session")
    attacker = app.test_client()
    _guess(attacker, times=6)
    assert sign_in(app.test_client()).status_code == 429  # unknown browsers must wait
    assert sign_in(owner).status_code == 302  # the owner's browser is not locked out


def test_a_known_browser_has_its_own_limit(app: Flask) -> None:
    create_user(app)
    owner = app.test_client()
    sign_in(owner)
    owner.delete_cookie("idp_session")
    assert _guess(owner, times=3) == 401
    assert sign_in(owner).status_code == 429


def test_a_forged_device_cookie_does_not_help(app: Flask) -> None:
    create_user(app)
    attacker = app.test_client()
    _guess(attacker, times=3)
    attacker.set_cookie(
        "idp_device", "device.0123456789abcdef0123456789abcdef.forgedmac", path="/login"
    )
    assert sign_in(attacker).status_code == 429


def test_unknown_and_known_accounts_are_throttled_alike(app: Flask) -> None:
    create_user(app)
    known = app.test_client()
    unknown = app.test_client()
    _guess(known, "alice", times=3)
    _guess(unknown, "nobody", times=3)
    a = sign_in(known, "alice", "x")
    b = sign_in(unknown, "nobody", "x")
    assert a.status_code == b.status_code == 429
    assert a.headers["Retry-After"] == b.headers["Retry-After"]
    assert CSRF.sub("", body(a)).replace("alice", "?") == CSRF.sub("", body(b)).replace(
        "nobody", "?"
    )


def test_one_address_cannot_spray_many_accounts(app: Flask) -> None:
    sprayer = app.test_client()
    for index in range(20):
        assert sign_in(sprayer, f"user{index}", "Spring2026!").status_code == 401
    create_user(app, "victim")
    assert sign_in(sprayer, "victim", STRONG_PASSWORD).status_code == 429


def test_failures_and_throttling_are_audited_without_the_password(app: Flask) -> None:
    create_user(app)
    client = app.test_client()
    _guess(client, times=4)
    with app.app_context():
        events = db().scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    kinds = [(event.event, event.outcome) for event in events]
    assert ("signin.password", "failure") in kinds
    assert ("signin.throttled", "denied") in kinds
    for event in events:
        assert "wrong guess" not in str(event.details)
    unknown = app.test_client()
    _guess(unknown, "typed-my-password-here")
    with app.app_context():
        last = db().scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert last is not None
    assert "typed-my-password-here" not in str(last.subject) + str(last.details)
