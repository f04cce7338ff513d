"""Government staff and real-name level 5 at a service counter: the service, and the
staff page /staff/counter with the attacks on it."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from accounts.container import Accounts
from accounts.identifiers import id_check_char
from accounts.realname.counter import REPLACED_REASON
from accounts.realname.errors import (
    IdentityTaken,
    InvalidDocument,
    InvalidName,
    InvalidReference,
    OwnAccount,
)
from accounts.realname.models import Identity, Verification, VerificationMethod
from accounts.realname.services import DocumentClaim
from accounts.staff.errors import InvalidDepartment, InvalidStaffRole, NotStaff, StaffNeedsRole
from accounts.staff.services import STAFF_LEVEL, StaffRole
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime, db
from tests.accounts.test_realname import (
    ALICE_ID,
    ALICE_NAME,
    BOB_ID,
    audit_events,
    level,
    load_registry,
    user_named,
    verify,
)
from tests.support import create_user, csrf_token, sign_in, submit
from tests.support import text as body

DEPARTMENT = "东莞市政务服务数据管理局"


STAFF_SOURCE = "face:test"  # the staff's own level-4 record (``appoint``)
# verifications of the citizens, not the staff's own
STAFF_USERS = select(Verification.user_id).where(Verification.source == STAFF_SOURCE)
CITIZENS = Verification.user_id.not_in(STAFF_USERS)


def count(app: Flask, model: Any) -> int:
    """Rows of ``model`` (verifications, identities) that are not the staff's own."""
    with app.app_context():
        staff = select(Verification.user_id).where(Verification.source == STAFF_SOURCE)
        query = select(func.count()).select_from(model).where(model.user_id.not_in(staff))
        return int(db().scalar(query) or 0)


def citizen_events(app: Flask) -> list[Any]:
    """``realname.verify`` events but the staff's own (their face record)."""
    return [
        event
        for event in audit_events(app, "realname.verify")
        if event.details.get("method") != VerificationMethod.FACE.value
    ]


def appoint(
    app: Flask, username: str, department: str = DEPARTMENT, *, level: int = STAFF_LEVEL
) -> None:
    """Make ``username`` counter staff, at their own real-name ``level`` (staff functions
    need level 4: here a face check recorded directly, with a number of their own)."""
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        Accounts.of().staff_service(actor="test").appoint(user, department, actor="test")
        if level >= 2:
            digits = f"44190019800101{user.id % 1000:03d}"
            Accounts.of().realname_service().record_verification(
                user,
                method=VerificationMethod.FACE,
                level=level,
                source=STAFF_SOURCE,
                document=DocumentClaim.checked("职员", digits + id_check_char(digits)),
            )


def at_counter(
    app: Flask,
    username: str,
    name: str = ALICE_NAME,
    number: str = ALICE_ID,
    *,
    staff: str = "clerk",
    reference: str | None = "T-2026-0001",
) -> Verification:
    with app.app_context():
        service = Accounts.of().account_service()
        user, clerk = service.find_by_username(username), service.find_by_username(staff)
        assert user is not None
        assert clerk is not None
        return (
            Accounts.of()
            .counter_service()
            .verify_at_counter(user, name, number, staff=clerk, reference=reference)
        )


@pytest.fixture
def people(app: Flask) -> None:
    create_user(app)  # alice, the citizen
    create_user(app, "clerk")
    appoint(app, "clerk")


# -- the service -----------------------------------------------------------------------


def test_a_counter_check_gives_level_5_with_its_record(
    app: Flask, people: None, clock: FrozenClock
) -> None:
    verification = at_counter(app, "alice", " 王小丽 ", ALICE_ID.lower())
    assert verification.level == 5
    assert level(app, "alice") == 5
    clerk = user_named(app, "clerk")
    with app.app_context():
        stored = db().scalar(select(Verification).where(CITIZENS))
        assert stored is not None
        assert (stored.method, stored.level) == (VerificationMethod.COUNTER, 5)
        assert stored.source == f"counter:{DEPARTMENT}"
        assert stored.actor == f"staff:{clerk.public_id}"
        assert stored.evidence_ref == "T-2026-0001"
        days = Runtime.of().settings.counter_level_valid_days
        assert stored.expires_at == clock.now() + timedelta(days=days)
        identity = db().scalar(select(Identity).where(Identity.user_id.not_in(STAFF_USERS)))
        assert identity is not None
        assert identity.verified_number_index == identity.number_index
        assert Accounts.of().realname_service().number_of(identity) == ALICE_ID
        assert Accounts.of().realname_service().name_of(identity) == ALICE_NAME
    (event,) = citizen_events(app)
    assert (event.outcome, event.actor) == ("success", f"staff:{clerk.public_id}")
    assert event.details["method"] == "counter"
    for secret in (ALICE_ID, ALICE_ID[:17], ALICE_NAME):
        assert secret not in str(event.details)


def test_the_level_lasts_as_configured(app: Flask, people: None, clock: FrozenClock) -> None:
    at_counter(app, "alice")
    with app.app_context():
        days = Runtime.of().settings.counter_level_valid_days
    clock.advance(days * 86400 - 60)
    assert level(app, "alice") == 5
    clock.advance(120)
    assert level(app, "alice") == 1


def test_only_staff_may_verify(app: Flask, people: None) -> None:
    create_user(app, "mallory")
    with pytest.raises(NotStaff):
        at_counter(app, "alice", staff="mallory")
    assert level(app, "alice") == 1
    assert count(app, Identity) == 0
    (event,) = citizen_events(app)
    mallory = user_named(app, "mallory")
    assert (event.outcome, event.details["reason"]) == ("failure", "not_staff")
    assert event.actor == f"staff:{mallory.public_id}"


def test_revoked_staff_may_no_longer_verify(app: Flask, people: None) -> None:
    with app.app_context():
        clerk = Accounts.of().account_service().find_by_username("clerk")
        assert clerk is not None
        assert Accounts.of().staff_service().revoke(clerk, actor="test") == DEPARTMENT
        with pytest.raises(NotStaff):
            Accounts.of().staff_service().revoke(clerk, actor="test")
    with pytest.raises(NotStaff):
        at_counter(app, "alice")
    assert count(app, Verification) == 0
    events = [(e.event, e.actor) for e in audit_events(app, "staff.appoint")]
    events += [(e.event, e.actor) for e in audit_events(app, "staff.revoke")]
    assert events == [("staff.appoint", "test"), ("staff.revoke", "test")]


def test_departments_are_checked(app: Flask, people: None) -> None:
    with app.app_context():
        clerk = Accounts.of().account_service().find_by_username("clerk")
        assert clerk is not None
        for bad in ("", "   ", "x" * 101, "line\nbreak"):
            with pytest.raises(InvalidDepartment):
                Accounts.of().staff_service().appoint(clerk, bad, actor="test")
        assert (
            Accounts.of().staff_service().appoint(clerk, "  社保  中心 ", actor="test")
            == "社保 中心"
        )


def test_staff_cannot_verify_their_own_account(app: Flask, people: None) -> None:
    with pytest.raises(OwnAccount):
        at_counter(app, "clerk")
    assert level(app, "clerk") == STAFF_LEVEL  # their own record, nothing more
    assert count(app, Identity) == 0


@pytest.mark.parametrize(
    ("name", "number", "reference", "error"),
    [
        (ALICE_NAME, ALICE_ID[:-1] + "1", None, InvalidDocument),
        (ALICE_NAME, "91110000600037341L", None, InvalidDocument),  # an organisation
        ("  ", ALICE_ID, None, InvalidName),
        ("王" * 65, ALICE_ID, None, InvalidName),
        (ALICE_NAME, ALICE_ID, "T-1\nforged line", InvalidReference),
        (ALICE_NAME, ALICE_ID, "x" * 101, InvalidReference),
    ],
)
def test_bad_input_records_nothing(
    app: Flask,
    people: None,
    name: str,
    number: str,
    reference: str | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        at_counter(app, "alice", name, number, reference=reference)
    assert count(app, Identity) == 0
    assert count(app, Verification) == 0


def test_a_number_confirmed_for_another_account_is_refused(app: Flask, people: None) -> None:
    load_registry(app)
    create_user(app, "owner")
    verify(app, "owner", ALICE_NAME, ALICE_ID)  # level 3 for another account
    with pytest.raises(IdentityTaken) as refused:
        at_counter(app, "alice")
    assert "owner" not in str(refused.value)
    assert level(app, "alice") == 1
    assert level(app, "owner") == 3
    failures = [e for e in audit_events(app, "realname.verify") if e.outcome == "failure"]
    assert [e.details["reason"] for e in failures] == ["identity_taken"]


def test_the_same_document_again_keeps_the_earlier_verifications(app: Flask, people: None) -> None:
    load_registry(app)
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    at_counter(app, "alice")
    with app.app_context():
        verifications = list(
            db().scalars(select(Verification).where(CITIZENS).order_by(Verification.id))
        )
        assert [(v.level, v.ended_at) for v in verifications] == [(3, None), (5, None)]
    assert count(app, Identity) == 1


def test_the_counter_replaces_a_wrong_identity(
    app: Flask, client: FlaskClient, people: None
) -> None:
    """Alice verified with Bob's document (level 3); at the counter her own document
    replaces it, the old verifications end with a reason, and Bob's number is free."""
    load_registry(app, f"number,name\n{BOB_ID},李大明\n{ALICE_ID},{ALICE_NAME}\n")
    verify(app, "alice", "李大明", BOB_ID)
    at_counter(app, "alice")
    assert level(app, "alice") == 5
    with app.app_context():
        verifications = list(
            db().scalars(select(Verification).where(CITIZENS).order_by(Verification.id))
        )
        assert [(v.level, v.end_reason) for v in verifications] == [
            (3, REPLACED_REASON),
            (5, None),
        ]
        (identity,) = db().scalars(select(Identity).where(Identity.user_id.not_in(STAFF_USERS)))
        assert Accounts.of().realname_service().number_of(identity) == ALICE_ID
    success = max(citizen_events(app), key=lambda event: event.seq)
    assert success.details["replaced"] is True
    create_user(app, "bob")
    verify(app, "bob", "李大明", BOB_ID)  # the number is no longer taken
    assert level(app, "bob") == 3
    sign_in(client)
    history = body(client.get("/account/realname"))
    assert f"Ended: {REPLACED_REASON}" in history


def test_concurrent_counter_checks_of_one_number_verify_one_account(
    app: Flask, people: None
) -> None:
    names = ["racer0", "racer1"]
    for name in names:
        create_user(app, name)
    create_user(app, "clerk2")
    appoint(app, "clerk2")
    outcomes: list[str] = []
    barrier = threading.Barrier(len(names))

    def attempt(username: str, staff: str) -> None:
        with app.app_context():
            service = Accounts.of().account_service()
            user, clerk = service.find_by_username(username), service.find_by_username(staff)
            assert user is not None
            assert clerk is not None
            counter = Accounts.of().counter_service()
            barrier.wait()
            try:
                counter.verify_at_counter(user, ALICE_NAME, ALICE_ID, staff=clerk, reference=None)
                outcomes.append("verified")
            except IdentityTaken:
                outcomes.append("taken")

    threads = [
        threading.Thread(target=attempt, args=(name, staff))
        for name, staff in zip(names, ["clerk", "clerk2"], strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["taken", "verified"]
    assert count(app, Verification) == 1
    assert sorted(level(app, name) for name in names) == [1, 5]


# -- the staff page ---------------------------------------------------------------------


def sign_in_with_otp(app: Flask, client: FlaskClient, clock: FrozenClock, username: str) -> None:
    """Enrol an authenticator app for the account, then sign in with password and code."""
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        totp = Accounts.of().totp_service()
        seed = totp.begin_enrollment(user).secret
        totp.confirm_enrollment(user, pyotp.TOTP(seed).at(clock.now()))
    clock.advance(30)
    first = sign_in(client, username)
    assert first.headers["Location"] == "/login/otp"
    done = submit(client, "/login/otp", {"otp": pyotp.TOTP(seed).at(clock.now())})
    assert done.status_code == 302


FORM = {
    "username": "alice",
    "name": ALICE_NAME,
    "id_number": ALICE_ID,
    "reference": "T-2026-0042",
    "examined": "y",
}


@pytest.fixture
def staff_client(app: Flask, client: FlaskClient, people: None, clock: FrozenClock) -> FlaskClient:
    sign_in_with_otp(app, client, clock, "clerk")
    return client


def test_the_page_verifies_and_shows_the_result(app: Flask, staff_client: FlaskClient) -> None:
    page = staff_client.get("/staff/counter")
    assert page.status_code == 200
    html = body(page)
    for field in ("username", "name", "id_number", "reference", "examined"):
        assert f'name="{field}"' in html
    assert DEPARTMENT in html
    done = submit(staff_client, "/staff/counter", FORM)
    assert done.status_code == 200
    html = body(done)
    assert "level 5" in html
    assert "110***********002X" in html
    assert ALICE_ID not in html
    assert level(app, "alice") == 5
    with app.app_context():
        stored = db().scalar(select(Verification).where(CITIZENS))
        assert stored is not None
        assert stored.evidence_ref == "T-2026-0042"
    (event,) = citizen_events(app)
    assert event.actor == f"staff:{user_named(app, 'clerk').public_id}"
    assert event.client_ip is not None


def test_the_examination_must_be_confirmed(app: Flask, staff_client: FlaskClient) -> None:
    response = submit(staff_client, "/staff/counter", {**FORM, "examined": ""})
    assert response.status_code == 400
    assert "examined the original document" in body(response)
    assert count(app, Verification) == 0


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"id_number": "12345"}, 400, "identity document"),
        ({"name": ""}, 400, "required"),
        ({"username": "nobody"}, 400, "no account with this username"),
        ({"username": "clerk"}, 400, "own account"),
        ({"reference": "a\tb"}, 400, "at most 100 characters"),
    ],
)
def test_the_page_says_what_is_wrong(
    app: Flask, staff_client: FlaskClient, fields: dict[str, str], status: int, message: str
) -> None:
    response = submit(staff_client, "/staff/counter", {**FORM, **fields})
    assert response.status_code == status
    assert message in body(response)
    assert count(app, Verification) == 0


def test_a_number_taken_by_another_account_is_a_clear_refusal(
    app: Flask, staff_client: FlaskClient
) -> None:
    load_registry(app)
    create_user(app, "owner")
    verify(app, "owner", ALICE_NAME, ALICE_ID)
    response = submit(staff_client, "/staff/counter", FORM)
    assert response.status_code == 409
    html = body(response)
    assert "already verified for another account" in html
    assert "owner" not in html
    assert level(app, "alice") == 1


def test_the_page_needs_a_signed_in_user(app: Flask, client: FlaskClient, people: None) -> None:
    response = client.get("/staff/counter")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert client.post("/staff/counter", data=FORM).status_code == 400  # no CSRF token


def test_a_citizen_posting_to_the_staff_page_is_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    create_user(app, "mallory")
    sign_in_with_otp(app, client, clock, "mallory")  # a second factor is not enough
    page = client.get("/staff/counter")
    assert page.status_code == 403
    assert "not registered as staff" in body(page)
    token = csrf_token(body(client.get("/account")))
    forged = client.post("/staff/counter", data={"csrf_token": token, **FORM})
    assert forged.status_code == 403
    assert count(app, Verification) == 0
    assert level(app, "alice") == 1


def test_staff_without_a_second_factor_are_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    sign_in(client, "clerk")  # password only
    page = client.get("/staff/counter")
    assert page.status_code == 403
    assert "authenticator app" in body(page)
    token = csrf_token(body(client.get("/account")))
    forged = client.post("/staff/counter", data={"csrf_token": token, **FORM})
    assert forged.status_code == 403
    assert count(app, Verification) == 0


def test_staff_whose_role_ended_are_refused_at_once(app: Flask, staff_client: FlaskClient) -> None:
    with app.app_context():
        clerk = Accounts.of().account_service().find_by_username("clerk")
        assert clerk is not None
        Accounts.of().staff_service().revoke(clerk, actor="test")
    assert staff_client.get("/staff/counter").status_code == 403


def test_the_page_refuses_a_missing_csrf_token(app: Flask, staff_client: FlaskClient) -> None:
    forged = staff_client.post("/staff/counter", data=FORM)
    assert forged.status_code == 400
    assert count(app, Verification) == 0
    assert level(app, "alice") == 1


def test_the_database_holds_no_number_or_name_in_clear(
    app: Flask, staff_client: FlaskClient
) -> None:
    submit(staff_client, "/staff/counter", FORM)
    with app.app_context():
        dumped = " ".join(
            str(value)
            for table in ("identities", "verifications", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
    for secret in (ALICE_ID, ALICE_ID[:17], ALICE_NAME):
        assert secret not in dumped


# -- staff roles and the staff member's own level (issue 12) ----------------------------


def test_staff_without_the_counter_role_are_refused(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(app)
    create_user(app, "clerk")
    appoint(app, "clerk")
    with app.app_context():
        clerk = Accounts.of().account_service().find_by_username("clerk")
        assert clerk is not None
        Accounts.of().staff_service().appoint(
            clerk, DEPARTMENT, actor="test", roles=[StaffRole.CLIENT_ADMINISTRATOR]
        )
    with pytest.raises(StaffNeedsRole):
        at_counter(app, "alice", ALICE_NAME, ALICE_ID)
    sign_in_with_otp(app, client, clock, "clerk")
    page = client.get("/staff/counter")
    assert page.status_code == 403
    assert "counter_verifier" in body(page)
    assert count(app, Verification) == 0
    refused = [e for e in citizen_events(app) if e.outcome == "failure"]
    assert refused[-1].details["reason"] == "no_role"
    assert refused[-1].actor is not None
    assert refused[-1].actor.startswith("staff:")


def test_staff_below_level_4_are_refused_on_the_page(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(app)
    create_user(app, "clerk")
    appoint(app, "clerk", level=3)
    sign_in_with_otp(app, client, clock, "clerk")
    page = client.get("/staff/counter")
    assert page.status_code == 403
    assert "level 4" in body(page)
    token = csrf_token(body(client.get("/account")))
    forged = client.post("/staff/counter", data={"csrf_token": token, **FORM})
    assert forged.status_code == 403
    assert level(app, "alice") == 1


def test_an_unknown_staff_role_is_refused(app: Flask, people: None) -> None:
    with app.app_context():
        clerk = Accounts.of().account_service().find_by_username("clerk")
        assert clerk is not None
        with pytest.raises(InvalidStaffRole):
            Accounts.of().staff_service().appoint(clerk, DEPARTMENT, actor="t", roles=["boss"])
        assert clerk.staff_roles == [StaffRole.COUNTER_VERIFIER.value]


def test_a_refused_counter_attempt_is_audited_with_the_staff_member(
    app: Flask, client: FlaskClient, people: None
) -> None:
    sign_in(client, "clerk")  # password only: no second factor
    token = csrf_token(body(client.get("/account")))
    assert client.post("/staff/counter", data={"csrf_token": token, **FORM}).status_code == 403
    refused = [e for e in citizen_events(app) if e.outcome == "failure"]
    assert refused[-1].details["reason"] == "no_second_factor"
    clerk = user_named(app, "clerk")
    assert refused[-1].actor == f"staff:{clerk.public_id}"
