"""A member of staff lowers a citizen's real-name level on /staff/levels (issue 12): the
role, their own level 4 and a second factor; refusals from the attacker's side, each
audited with the staff member as the actor."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from accounts.container import Accounts
from accounts.realname.models import Verification
from accounts.staff.errors import InvalidKeptLevel, InvalidLowerReason, OwnLevel, StaffNeedsRole
from accounts.staff.services import StaffRole
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from tests.accounts.test_counter import (
    DEPARTMENT,
    appoint,
    at_counter,
    sign_in_with_otp,
)
from tests.accounts.test_realname import (
    ALICE_ID,
    ALICE_NAME,
    audit_events,
    level,
    load_registry,
    user_named,
    verify,
)
from tests.support import create_user, csrf_token, sign_in, submit
from tests.support import text as body

REASON = "identity card reported stolen, ticket T-2026-0107"
FORM = {"username": "alice", "level": "3", "reason": REASON}


def appoint_as(app: Flask, username: str, *roles: StaffRole, level: int = 4) -> None:
    """Staff at their own ``level`` with exactly ``roles``."""
    appoint(app, username, level=level)
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        Accounts.of().staff_service().appoint(user, DEPARTMENT, actor="test", roles=roles)


def lowerings(app: Flask, outcome: str) -> list[Any]:
    return [e for e in audit_events(app, "realname.lower") if e.outcome == outcome]


def ended(app: Flask, username: str) -> list[Verification]:
    user = user_named(app, username)
    with app.app_context():
        return list(
            db().scalars(
                select(Verification).where(
                    Verification.user_id == user.id, Verification.ended_at.is_not(None)
                )
            )
        )


@pytest.fixture
def people(app: Flask) -> None:
    """alice at level 5 (the registry's 3, then the counter's 5); clerk verified her at
    the counter; admin may lower levels."""
    create_user(app)
    create_user(app, "clerk")
    appoint(app, "clerk")
    load_registry(app)
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    at_counter(app, "alice")
    create_user(app, "admin")
    appoint_as(app, "admin", StaffRole.LEVEL_ADMINISTRATOR)
    assert level(app, "alice") == 5


@pytest.fixture
def admin_client(app: Flask, client: FlaskClient, people: None, clock: FrozenClock) -> FlaskClient:
    sign_in_with_otp(app, client, clock, "admin")
    return client


def assert_unchanged(app: Flask) -> None:
    assert level(app, "alice") == 5
    assert ended(app, "alice") == []
    assert lowerings(app, "success") == []


# -- the page ---------------------------------------------------------------------------


def test_the_page_lowers_the_level_and_says_how_many_ended(
    app: Flask, admin_client: FlaskClient
) -> None:
    page = admin_client.get("/staff/levels")
    assert page.status_code == 200
    html = body(page)
    for name in ("username", "level", "reason", "csrf_token"):
        assert f'name="{name}"' in html
    assert DEPARTMENT in html
    done = submit(admin_client, "/staff/levels", FORM)
    assert done.status_code == 200
    assert "1 verification ended: alice is now at real-name level 3." in body(done)
    assert level(app, "alice") == 3
    (counter,) = ended(app, "alice")
    assert (counter.level, counter.end_reason) == (5, REASON)
    (event,) = lowerings(app, "success")
    admin = user_named(app, "admin")
    assert event.actor == f"staff:{admin.public_id}"
    assert event.subject == user_named(app, "alice").subject
    assert event.details == {"to_at_most": 3, "ended": 1, "reason": REASON}
    assert event.client_ip is not None


def test_level_1_ends_every_verification(app: Flask, admin_client: FlaskClient) -> None:
    done = submit(admin_client, "/staff/levels", {**FORM, "level": "1"})
    assert done.status_code == 200
    assert "2 verifications ended: alice is now at real-name level 1." in body(done)
    assert level(app, "alice") == 1


def test_a_level_already_that_low_ends_nothing(app: Flask, admin_client: FlaskClient) -> None:
    submit(admin_client, "/staff/levels", {**FORM, "level": "2"})
    again = submit(admin_client, "/staff/levels", {**FORM, "level": "4"})
    assert again.status_code == 200
    assert "0 verifications ended: alice is now at real-name level 1." in body(again)
    assert len(ended(app, "alice")) == 2


def test_the_reason_is_kept_as_one_clean_line(app: Flask, admin_client: FlaskClient) -> None:
    submit(admin_client, "/staff/levels", {**FORM, "reason": "  stolen   card  "})
    (counter,) = ended(app, "alice")
    assert counter.end_reason == "stolen card"


def test_the_citizen_sees_the_reason_in_their_history(
    app: Flask, admin_client: FlaskClient
) -> None:
    submit(admin_client, "/staff/levels", FORM)
    citizen = app.test_client()
    sign_in(citizen, "alice")
    assert f"Ended: {REASON}" in body(citizen.get("/account/realname"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"level": "0"}, "Not a valid choice"),
        ({"level": "5"}, "Not a valid choice"),
        ({"level": "x"}, "Not a valid choice"),
        ({"level": ""}, "required"),
        ({"reason": ""}, "required"),
        ({"reason": "   "}, "required"),
        ({"reason": "x" * 201}, "200"),
        ({"reason": "stolen\nforged audit line"}, "on one line"),
        ({"reason": "tab\there"}, "on one line"),
        ({"username": "nobody"}, "no account with this username"),
        ({"username": ""}, "required"),
        ({"username": "a" * 65}, "64"),
    ],
)
def test_bad_input_is_a_400_and_changes_nothing(
    app: Flask, admin_client: FlaskClient, fields: dict[str, str], message: str
) -> None:
    response = submit(admin_client, "/staff/levels", {**FORM, **fields})
    assert response.status_code == 400
    assert message in body(response)
    assert_unchanged(app)


def test_staff_cannot_lower_their_own_level(app: Flask, admin_client: FlaskClient) -> None:
    response = submit(admin_client, "/staff/levels", {**FORM, "username": "admin", "level": "1"})
    assert response.status_code == 400
    assert "own account" in body(response)
    assert level(app, "admin") == 4
    assert ended(app, "admin") == []
    (refused,) = lowerings(app, "failure")
    admin = user_named(app, "admin")
    assert refused.details == {"reason": "own_account"}
    assert (refused.actor, refused.subject) == (f"staff:{admin.public_id}", admin.subject)


def test_the_page_refuses_a_missing_or_forged_csrf_token(
    app: Flask, admin_client: FlaskClient
) -> None:
    assert admin_client.post("/staff/levels", data=FORM).status_code == 400
    forged = admin_client.post("/staff/levels", data={**FORM, "csrf_token": "x" * 40})
    assert forged.status_code == 400
    assert_unchanged(app)


def test_the_page_needs_a_signed_in_user(app: Flask, client: FlaskClient, people: None) -> None:
    response = client.get("/staff/levels")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert client.post("/staff/levels", data=FORM).status_code == 400  # no CSRF token
    assert_unchanged(app)


# -- refusals: who may not ----------------------------------------------------------------


def forge(client: FlaskClient) -> int:
    """GET the page, then POST the form with a valid CSRF token from another page."""
    page = client.get("/staff/levels")
    assert page.status_code == 403
    token = csrf_token(body(client.get("/account")))
    return client.post("/staff/levels", data={"csrf_token": token, **FORM}).status_code


def assert_refusal_audited(app: Flask, username: str, reason: str) -> None:
    (refused,) = lowerings(app, "failure")  # the POST, not the GET
    assert refused.actor == f"staff:{user_named(app, username).public_id}"
    assert refused.subject == user_named(app, "alice").subject
    assert refused.details == {"reason": reason}


def test_a_citizen_is_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    create_user(app, "mallory")
    sign_in_with_otp(app, client, clock, "mallory")  # a second factor is not enough
    assert "not registered as staff" in body(client.get("/staff/levels"))
    assert forge(client) == 403
    assert_unchanged(app)
    assert_refusal_audited(app, "mallory", "not_staff")


def test_staff_without_the_role_are_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    sign_in_with_otp(app, client, clock, "clerk")  # counter_verifier only
    assert "level_administrator" in body(client.get("/staff/levels"))
    assert forge(client) == 403
    assert_unchanged(app)
    assert_refusal_audited(app, "clerk", "no_role")


def test_staff_below_level_4_are_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    create_user(app, "junior")
    appoint_as(app, "junior", StaffRole.LEVEL_ADMINISTRATOR, level=3)
    sign_in_with_otp(app, client, clock, "junior")
    assert "level 4" in body(client.get("/staff/levels"))
    assert forge(client) == 403
    assert_unchanged(app)
    assert_refusal_audited(app, "junior", "staff_level_too_low")


def test_staff_without_a_second_factor_are_refused(
    app: Flask, client: FlaskClient, people: None
) -> None:
    sign_in(client, "admin")  # password only
    assert "authenticator app" in body(client.get("/staff/levels"))
    assert forge(client) == 403
    assert_unchanged(app)
    assert_refusal_audited(app, "admin", "no_second_factor")


def test_staff_whose_role_ended_are_refused_at_once(app: Flask, admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/levels")
    assert page.status_code == 200
    with app.app_context():
        admin = Accounts.of().account_service().find_by_username("admin")
        assert admin is not None
        Accounts.of().staff_service().revoke(admin, actor="test")
    token = csrf_token(body(page))
    refused = admin_client.post("/staff/levels", data={"csrf_token": token, **FORM})
    assert refused.status_code == 403
    assert_unchanged(app)
    assert_refusal_audited(app, "admin", "not_staff")


# -- the service ---------------------------------------------------------------------------


def test_the_service_checks_the_role_itself(app: Flask, people: None) -> None:
    """Whatever page or command calls it: a counter clerk cannot lower a level."""
    with app.app_context():
        service = Accounts.of().account_service()
        alice, clerk = service.find_by_username("alice"), service.find_by_username("clerk")
        assert alice is not None
        assert clerk is not None
        with pytest.raises(StaffNeedsRole):
            Accounts.of().level_service().lower(clerk, alice, keep=1, reason=REASON)
    assert_unchanged(app)
    assert lowerings(app, "failure")[0].details == {"reason": "no_role"}


@pytest.mark.parametrize(
    ("keep", "reason", "error"),
    [
        (0, REASON, InvalidKeptLevel),
        (5, REASON, InvalidKeptLevel),
        (2, "", InvalidLowerReason),
        (2, "x" * 201, InvalidLowerReason),
        (2, "a\x00b", InvalidLowerReason),
    ],
)
def test_the_service_checks_its_input(
    app: Flask, people: None, keep: int, reason: str, error: type[Exception]
) -> None:
    with app.app_context():
        service = Accounts.of().account_service()
        alice, admin = service.find_by_username("alice"), service.find_by_username("admin")
        assert alice is not None
        assert admin is not None
        with pytest.raises(error):
            Accounts.of().level_service().lower(admin, alice, keep=keep, reason=reason)
        with pytest.raises(OwnLevel):
            Accounts.of().level_service().lower(admin, admin, keep=1, reason=REASON)
    assert_unchanged(app)
