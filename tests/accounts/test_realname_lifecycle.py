"""A level lowered by an administrator can be raised again by a new verification, and
the user's history shows what ended and why."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from accounts.container import Accounts
from idp.core.clock import FrozenClock
from tests.accounts.test_counter import appoint, at_counter
from tests.accounts.test_realname import (
    ALICE_ID,
    ALICE_NAME,
    audit_events,
    level,
    load_registry,
    user_named,
    verify,
)
from tests.support import create_user, sign_in
from tests.support import text as body

REASON = "document reported stolen"


def lower(app: Flask, username: str, to: int) -> int:
    with app.app_context():
        user = user_named(app, username)
        return (
            Accounts.of()
            .realname_service()
            .end_verifications(user, above=to, reason=REASON, actor="cli")
        )


def test_a_lowered_level_is_raised_again_by_a_new_verification(
    app: Flask, client: FlaskClient
) -> None:
    create_user(app)
    load_registry(app)
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    assert lower(app, "alice", 1) == 1
    assert level(app, "alice") == 1
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # the same document: raised again
    assert level(app, "alice") == 3
    sign_in(client)
    html = body(client.get("/account/realname"))
    assert f"Ended: {REASON}" in html
    assert "In force" in html


def test_a_level_5_lowered_to_3_is_raised_at_the_counter_again(app: Flask) -> None:
    create_user(app)
    create_user(app, "clerk")
    appoint(app, "clerk")
    load_registry(app)
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    at_counter(app, "alice")
    assert level(app, "alice") == 5
    assert lower(app, "alice", 3) == 1  # only the counter verification ends
    assert level(app, "alice") == 3
    at_counter(app, "alice")
    assert level(app, "alice") == 5
    with app.app_context():
        history = Accounts.of().realname_service().status(user_named(app, "alice")).verifications
    assert [(v.level, v.end_reason) for v in history] == [(5, None), (5, REASON), (3, None)]


def test_expiry_is_recorded_and_audited_once(app: Flask, clock: FrozenClock) -> None:
    create_user(app)
    load_registry(app)
    verification = verify(app, "alice", ALICE_NAME, ALICE_ID)
    assert verification.expires_at is not None
    expires_at = verification.expires_at
    with app.app_context():
        assert Accounts.of().realname_service().record_expiries() == 0  # nothing ran out yet
    clock.advance((expires_at - clock.now()).total_seconds() + 1)
    assert level(app, "alice") == 1  # the level never counted an expired record
    with app.app_context():
        assert Accounts.of().realname_service().record_expiries() == 1
        assert Accounts.of().realname_service().record_expiries() == 0  # once
        (stored,) = Accounts.of().realname_service().status(user_named(app, "alice")).verifications
        assert (stored.ended_at, stored.end_reason) == (expires_at, "expired")
    (event,) = audit_events(app, "realname.expire")
    user = user_named(app, "alice")
    assert event.subject == user.subject
    assert event.details == {"levels": [3], "methods": ["registry"]}
    assert level(app, "alice") == 1
