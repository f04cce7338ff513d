"""Real-name level 3: name + document number matched against the population registry
(the local copy), stored encrypted, one person one identity, levels that end."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from accounts.adapters.registry import (
    Answer,
    LocalRegistry,
    RegistryImportError,
    RegistryResult,
    RegistryUnavailable,
    import_records,
)
from accounts.container import Accounts
from accounts.people.models import User
from accounts.realname.errors import (
    IdentityAlreadyVerified,
    IdentityTaken,
    InvalidDocument,
    InvalidName,
    RegistryDown,
    RegistryMismatch,
)
from accounts.realname.models import Identity, Verification
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime, db
from tests.support import AppFactory, create_user, sign_in, submit
from tests.support import text as body

ALICE_ID = "11010519491231002X"
ALICE_NAME = "王小丽"
REGISTRY_CSV = f"number,name\n{ALICE_ID},{ALICE_NAME}\n"


def with_check(body17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body17, weights, strict=True))
    return body17 + "10X98765432"[total % 11]


BOB_ID = with_check("44010619900101001")


def load_registry(app: Flask, csv_text: str = REGISTRY_CSV, kind: str = "person") -> int:
    with app.app_context():
        return import_records(db(), Runtime.of().keys.cipher, kind, io.StringIO(csv_text))


def user_named(app: Flask, username: str) -> User:
    with app.app_context():
        found = Accounts.of().account_service().find_by_username(username)
        assert found is not None
        return found


def verify(app: Flask, username: str, name: str, number: str) -> Verification:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        return Accounts.of().realname_service().verify_with_registry(user, name, number)


def level(app: Flask, username: str) -> int:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        return Accounts.of().realname_service().level(user)


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db().scalar(select(func.count()).select_from(model)) or 0)


def audit_events(app: Flask, event: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db().scalars(select(AuditEvent).where(AuditEvent.event == event)))


@pytest.fixture
def alice(app: Flask) -> None:
    create_user(app)
    load_registry(app, REGISTRY_CSV + f"{BOB_ID},李 大 明\n")


def test_a_new_account_is_level_1(app: Flask, alice: None) -> None:
    assert level(app, "alice") == 1


def test_a_registry_match_gives_level_3_with_its_record(app: Flask, alice: None) -> None:
    verification = verify(app, "alice", " 王小丽 ", ALICE_ID.lower())
    assert verification.level == 3
    assert level(app, "alice") == 3
    with app.app_context():
        stored = db().scalar(select(Verification))
        assert stored is not None
        assert (stored.method.value, stored.level) == ("registry", 3)
        assert stored.source == "registry:local"
        assert stored.expires_at is not None
        identity = db().scalar(select(Identity))
        assert identity is not None
        assert identity.document_kind == "resident_id"
        assert Accounts.of().realname_service().number_of(identity) == ALICE_ID  # x normalised
        assert Accounts.of().realname_service().name_of(identity) == ALICE_NAME
    (event,) = audit_events(app, "realname.verify")
    assert event.outcome == "success"
    assert ALICE_ID not in str(event.details)
    assert ALICE_NAME not in str(event.details)


def test_the_database_holds_no_document_number_or_name_in_clear(app: Flask, alice: None) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    with app.app_context():
        dumped = " ".join(
            str(value)
            for table in ("identities", "verifications", "registry_records", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
    for secret in (ALICE_ID, ALICE_ID[:17], ALICE_NAME, BOB_ID):
        assert secret not in dumped


@pytest.mark.parametrize(
    ("name", "number", "error"),
    [
        (ALICE_NAME, ALICE_ID[:-1] + "1", InvalidDocument),  # bad check character
        (ALICE_NAME, "91110000600037341L", InvalidDocument),  # an organisation's code
        (ALICE_NAME, "not a number", InvalidDocument),
        ("   ", ALICE_ID, InvalidName),
        ("王小明", ALICE_ID, RegistryMismatch),  # the registry knows the number, not the name
        (ALICE_NAME, with_check("11010519800101001"), RegistryMismatch),  # not in the registry
    ],
)
def test_refusals_record_nothing_and_keep_the_level(
    app: Flask, alice: None, name: str, number: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        verify(app, "alice", name, number)
    assert level(app, "alice") == 1
    assert count(app, Identity) == 0
    assert count(app, Verification) == 0


def test_a_mismatch_is_audited_as_a_failure(app: Flask, alice: None) -> None:
    with pytest.raises(RegistryMismatch):
        verify(app, "alice", "王小明", ALICE_ID)
    (event,) = audit_events(app, "realname.verify")
    assert (event.outcome, event.details["reason"]) == ("failure", "mismatch")


def test_names_compare_without_spaces_and_width(app: Flask, alice: None) -> None:
    create_user(app, "bob")
    verify(app, "bob", "李大明", BOB_ID)  # registered as "李 大 明"
    assert level(app, "bob") == 3


class DownRegistry:
    source = "registry:test-down"

    def match(self, _kind: str, _number: str, _name: str) -> RegistryResult:
        raise RegistryUnavailable("timed out after 3 attempts")


def test_a_registry_outage_is_a_clear_retryable_refusal(
    app: Flask, alice: None, make_app: AppFactory
) -> None:
    down = make_app(registry=DownRegistry())
    with pytest.raises(RegistryDown):
        verify(down, "alice", ALICE_NAME, ALICE_ID)
    assert level(app, "alice") == 1
    assert count(app, Identity) == 0
    (event,) = audit_events(app, "realname.verify")
    assert event.details["reason"] == "registry_unavailable"
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # the user retries later
    assert level(app, "alice") == 3


def test_one_person_one_identity(app: Flask, alice: None) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    create_user(app, "mallory")
    with pytest.raises(IdentityTaken) as refused:
        verify(app, "mallory", ALICE_NAME, ALICE_ID)
    assert "alice" not in str(refused.value)
    assert level(app, "mallory") == 1
    failures = [e for e in audit_events(app, "realname.verify") if e.outcome == "failure"]
    assert [e.details["reason"] for e in failures] == ["identity_taken"]


def test_a_verified_account_cannot_switch_documents(app: Flask, alice: None) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    with pytest.raises(IdentityAlreadyVerified):
        verify(app, "alice", "李大明", BOB_ID)
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # the same document again: renewed
    assert count(app, Verification) == 2


def test_concurrent_claims_of_one_number_verify_one_account(app: Flask, alice: None) -> None:
    names = [f"racer{index}" for index in range(4)]
    for name in names:
        create_user(app, name)
    outcomes: list[str] = []
    barrier = threading.Barrier(len(names))

    def attempt(username: str) -> None:
        with app.app_context():
            user = Accounts.of().account_service().find_by_username(username)
            assert user is not None
            service = Accounts.of().realname_service()
            barrier.wait()
            try:
                service.verify_with_registry(user, ALICE_NAME, ALICE_ID)
                outcomes.append("verified")
            except IdentityTaken:
                outcomes.append("taken")

    threads = [threading.Thread(target=attempt, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["taken", "taken", "taken", "verified"]
    assert count(app, Verification) == 1
    assert sum(level(app, name) == 3 for name in names) == 1


def test_levels_expire_and_can_be_lowered(app: Flask, alice: None, clock: FrozenClock) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    days = runtime_setting(app, "registry_level_valid_days")
    clock.advance(days * 86400 - 60)
    assert level(app, "alice") == 3
    clock.advance(120)
    assert level(app, "alice") == 1
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # raised again
    assert level(app, "alice") == 3
    with app.app_context():
        user = user_named(app, "alice")
        ended = (
            Accounts.of()
            .realname_service()
            .end_verifications(user, above=2, reason="document reported stolen", actor="staff:7")
        )
        assert ended == 1
        assert Accounts.of().realname_service().level(user) == 1
    (event,) = audit_events(app, "realname.lower")
    assert event.actor == "staff:7"
    assert event.details["reason"] == "document reported stolen"


def runtime_setting(app: Flask, name: str) -> int:
    with app.app_context():
        return int(getattr(Runtime.of().settings, name))


def test_the_import_is_all_or_nothing(app: Flask) -> None:
    assert load_registry(app) == 1
    with pytest.raises(RegistryImportError, match="line 4"):
        load_registry(app, REGISTRY_CSV + f"{BOB_ID},李大明\n12345,somebody\n")
    with pytest.raises(RegistryImportError, match="header"):
        load_registry(app, "id,name\n")
    with pytest.raises(RegistryImportError, match="kind"):
        load_registry(app, REGISTRY_CSV, kind="pets")
    with app.app_context():
        registry = LocalRegistry(db(), Runtime.of().keys.cipher)
        assert registry.match("person", ALICE_ID, ALICE_NAME).answer is Answer.MATCH
        assert registry.match("person", BOB_ID, "李大明").answer is Answer.NOT_FOUND


# -- the page ----------------------------------------------------------------------------


def test_the_page_verifies_and_shows_the_number_masked(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    sign_in(client)
    page = client.get("/account/realname")
    assert page.status_code == 200
    assert 'name="id_number"' in body(page)
    done = submit(
        client,
        "/account/realname",
        {"name": ALICE_NAME, "id_number": ALICE_ID},
        follow_redirects=True,
    )
    assert done.status_code == 200
    html = body(done)
    assert "110***********002X" in html
    assert ALICE_ID not in html
    assert 'name="id_number"' not in html  # level 3 reached: no form
    assert "3" in body(client.get("/account"))


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"name": ALICE_NAME, "id_number": "12345"}, 400, "identity document"),
        ({"name": "王小明", "id_number": ALICE_ID}, 400, "do not match"),
        ({"name": "", "id_number": ALICE_ID}, 400, "required"),
        ({"name": "x" * 65, "id_number": ALICE_ID}, 400, "64"),
    ],
)
def test_the_page_says_what_is_wrong(
    app: Flask,
    client: FlaskClient,
    alice: None,
    fields: dict[str, str],
    status: int,
    message: str,
) -> None:
    sign_in(client)
    response = submit(client, "/account/realname", fields)
    assert response.status_code == status
    assert message in body(response)
    assert count(app, Verification) == 0


def test_the_page_needs_a_signed_in_user_and_a_csrf_token(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    assert client.get("/account/realname").status_code == 302
    sign_in(client)
    forged = client.post("/account/realname", data={"name": ALICE_NAME, "id_number": ALICE_ID})
    assert forged.status_code == 400
    assert count(app, Verification) == 0


def test_the_page_limits_registry_checks_per_account(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    """The form must not become an oracle for name / number pairs."""
    sign_in(client)
    for guess in ("王一", "王二", "王三", "王四", "王五"):
        wrong = submit(client, "/account/realname", {"name": guess, "id_number": ALICE_ID})
        assert wrong.status_code == 400
    right = submit(client, "/account/realname", {"name": ALICE_NAME, "id_number": ALICE_ID})
    assert right.status_code == 429
    assert count(app, Verification) == 0
    assert level(app, "alice") == 1
