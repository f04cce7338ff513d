"""RealNameService.record_verification, the one way every real-name method (and the
certificate and federation methods to come) records what it proved: the row, its expiry,
the identity document, the audit event and the refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from accounts.container import Accounts
from accounts.organisations.models import Organisation
from accounts.realname.errors import IdentityAlreadyVerified, IdentityTaken
from accounts.realname.models import Identity, Verification, VerificationMethod
from accounts.realname.services import DocumentClaim
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime, db
from tests.accounts.test_organisations import ACME_CODE, ACME_NAME
from tests.accounts.test_organisations import REGISTRY as ORGANISATION_REGISTRY
from tests.accounts.test_organisations import verify as verify_organisation
from tests.accounts.test_realname import (
    ALICE_ID,
    ALICE_NAME,
    BOB_ID,
    audit_events,
    level,
    load_registry,
    user_named,
)
from tests.support import create_user, sign_in
from tests.support import text as body

BOB_NAME = "李大明"
# what issue 11's certificate sign-in will pass: the CA as source, a reference to the
# certificate, the certificate's end
CA_SOURCE = "pki:dongguan-ca"
CERTIFICATE_REF = "cert-sha256:" + "ab" * 16


def record(app: Flask, username: str, **arguments: Any) -> Verification:
    with app.app_context():
        user = user_named(app, username)
        return Accounts.of().realname_service().record_verification(user, **arguments)


# how each method claims its document: the phone check declares it, the registry
# confirms it, the counter also replaces a wrong one
CLAIMS: dict[VerificationMethod, tuple[int, dict[str, Any]]] = {
    VerificationMethod.SMS: (2, {"confirmed": False}),
    VerificationMethod.REGISTRY: (3, {}),
    VerificationMethod.COUNTER: (5, {"replace_reason": "corrected"}),
}


def checked_by(
    app: Flask,
    username: str,
    method: VerificationMethod,
    name: str = ALICE_NAME,
    number: str = ALICE_ID,
) -> Verification:
    """A verification as ``method`` records it, without its remote service."""
    level, how = CLAIMS[method]
    return record(
        app,
        username,
        method=method,
        level=level,
        source=f"{method.value}:test",
        evidence_ref="txn-1",
        document=DocumentClaim.checked(name, number, **how),
    )


def identity(app: Flask, username: str) -> Identity | None:
    with app.app_context():
        return Accounts.of().realname_service().identity_of(user_named(app, username))


def history(app: Flask, username: str) -> list[Verification]:
    with app.app_context():
        return Accounts.of().realname_service().history(user_named(app, username))


def days(app: Flask, setting: str) -> timedelta:
    with app.app_context():
        return timedelta(days=getattr(Runtime.of().settings, setting))


@pytest.fixture
def alice(app: Flask) -> None:
    create_user(app)


# -- expiry ------------------------------------------------------------------------------


def test_a_verification_counts_for_its_methods_validity(
    app: Flask, alice: None, clock: FrozenClock
) -> None:
    verification = checked_by(app, "alice", VerificationMethod.REGISTRY)
    assert verification.verified_at == clock.now()
    assert verification.expires_at == clock.now() + days(app, "registry_level_valid_days")
    face = record(app, "alice", method=VerificationMethod.FACE, level=4, source="face:test")
    assert face.expires_at == clock.now() + days(app, "face_level_valid_days")


def test_an_earlier_end_given_by_the_source_wins(
    app: Flask, alice: None, clock: FrozenClock
) -> None:
    validity = days(app, "face_level_valid_days")
    sooner = clock.now() + timedelta(days=3)
    later = clock.now() + validity + timedelta(days=3)
    arguments: dict[str, Any] = {"method": VerificationMethod.FACE, "level": 4, "source": "x"}
    assert record(app, "alice", **arguments, expires_at=sooner).expires_at == sooner
    # a later end does not stretch the method's validity
    assert record(app, "alice", **arguments, expires_at=later).expires_at == clock.now() + validity


def test_a_method_without_a_validity_must_be_given_its_end(app: Flask, alice: None) -> None:
    with pytest.raises(ValueError, match="certificate"):
        record(app, "alice", method=VerificationMethod.CERTIFICATE, level=5, source=CA_SOURCE)
    assert history(app, "alice") == []


@pytest.mark.parametrize("wrong", [1, 6, 0])
def test_only_levels_2_to_5_are_recorded(app: Flask, alice: None, wrong: int) -> None:
    with pytest.raises(ValueError, match="level"):
        record(app, "alice", method=VerificationMethod.FACE, level=wrong, source="x")
    assert history(app, "alice") == []


# -- audit -------------------------------------------------------------------------------


def test_success_is_audited_with_method_level_document_kind_and_details(
    app: Flask, alice: None
) -> None:
    record(
        app,
        "alice",
        method=VerificationMethod.COUNTER,
        level=5,
        source="counter:" + "部" * 300,
        evidence_ref="T-1",
        actor="staff:" + "x" * 114,
        document=DocumentClaim.checked(ALICE_NAME, ALICE_ID),
        details={"department": "部"},
    )
    (event,) = audit_events(app, "realname.verify")
    assert (event.outcome, event.subject) == ("success", user_named(app, "alice").subject)
    assert event.actor == "staff:" + "x" * 114  # the audit log keeps all of it
    assert event.details == {
        "method": "counter",
        "level": 5,
        "document_kind": "resident_id",
        "department": "部",
    }
    (stored,) = history(app, "alice")
    # the row keeps what its columns hold
    assert (len(stored.source), stored.actor, stored.evidence_ref) == (
        200,
        "staff:" + "x" * 94,
        "T-1",
    )


def test_a_replacing_document_says_in_the_audit_whether_it_replaced_one(
    app: Flask, alice: None
) -> None:
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    for number in (ALICE_ID, BOB_ID):
        checked_by(app, "alice", VerificationMethod.COUNTER, BOB_NAME, number)
    events = audit_events(app, "realname.verify")
    assert ["replaced" in e.details for e in events] == [False, True, True]
    assert [e.details.get("replaced") for e in events[1:]] == [False, True]
    # the verifications on the old document ended with the reason; the last stands
    assert [(v.method.value, v.end_reason) for v in history(app, "alice")] == [
        ("counter", None),
        ("counter", "corrected"),
        ("registry", "corrected"),
    ]
    assert level(app, "alice") == 5


def test_a_replacing_document_leaves_the_phone_check(app: Flask, alice: None) -> None:
    checked_by(app, "alice", VerificationMethod.SMS)
    checked_by(app, "alice", VerificationMethod.COUNTER, BOB_NAME, BOB_ID)
    assert [(v.method.value, v.end_reason) for v in history(app, "alice")] == [
        ("counter", None),
        ("sms", None),
    ]


def test_a_refusal_is_audited_without_personal_data(app: Flask, alice: None) -> None:
    with app.app_context():
        Accounts.of().realname_service().record_refusal(
            user_named(app, "alice"),
            method=VerificationMethod.CERTIFICATE,
            reason="revoked",
            actor="pki",
            ca="dongguan-ca",
        )
    (event,) = audit_events(app, "realname.verify")
    assert (event.outcome, event.actor) == ("failure", "pki")
    assert event.details == {"method": "certificate", "reason": "revoked", "ca": "dongguan-ca"}


# -- the identity document: one person, one identity -------------------------------------


def test_a_confirmed_document_claims_the_number(app: Flask, alice: None) -> None:
    checked_by(app, "alice", VerificationMethod.REGISTRY, f" {ALICE_NAME} ", ALICE_ID.lower())
    stored = identity(app, "alice")
    assert stored is not None
    assert stored.verified_number_index == stored.number_index
    with app.app_context():
        service = Accounts.of().realname_service()
        assert (service.number_of(stored), service.name_of(stored)) == (ALICE_ID, ALICE_NAME)


def test_a_number_confirmed_for_another_account_is_refused_and_nothing_is_kept(
    app: Flask, alice: None
) -> None:
    create_user(app, "mallory")
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    for confirmed in (True, False):
        with app.app_context():
            mallory = Accounts.of().account_service().find_by_username("mallory")
            assert mallory is not None
            mallory.display_name = "written by the method before recording"
            with pytest.raises(IdentityTaken):
                Accounts.of().realname_service().record_verification(
                    mallory,
                    method=VerificationMethod.REGISTRY,
                    level=3,
                    source="registry:test",
                    document=DocumentClaim.checked(ALICE_NAME, ALICE_ID, confirmed=confirmed),
                )
    mallory = user_named(app, "mallory")
    assert mallory.display_name is None  # the caller's writes went with the refusal
    assert (identity(app, "mallory"), history(app, "mallory"), level(app, "mallory")) == (
        None,
        [],
        1,
    )
    refusals = [e for e in audit_events(app, "realname.verify") if e.outcome == "failure"]
    assert [(e.subject, e.details) for e in refusals] == [
        (mallory.subject, {"method": "registry", "reason": "identity_taken"})
    ] * 2


def test_an_account_confirmed_with_another_document_is_refused(app: Flask, alice: None) -> None:
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    for claim in (
        DocumentClaim.checked(BOB_NAME, BOB_ID),
        DocumentClaim.checked(BOB_NAME, BOB_ID, confirmed=False),
        DocumentClaim.checked("王小", ALICE_ID, confirmed=False),  # a declaration: the name too
    ):
        with app.app_context():
            service = Accounts.of().realname_service()
            with pytest.raises(IdentityAlreadyVerified):
                service.check_claim(user_named(app, "alice"), claim)
        with pytest.raises(IdentityAlreadyVerified):
            record(app, "alice", method=VerificationMethod.SMS, level=2, source="x", document=claim)
    refusals = [e for e in audit_events(app, "realname.verify") if e.outcome == "failure"]
    assert [e.details["reason"] for e in refusals] == ["identity_already_verified"] * 3
    assert len(history(app, "alice")) == 1
    # the confirmed source may correct the name of the same number
    checked_by(app, "alice", VerificationMethod.REGISTRY, "王小", ALICE_ID)
    with app.app_context():
        stored = identity(app, "alice")
        assert stored is not None
        assert Accounts.of().realname_service().name_of(stored) == "王小"


def test_a_declared_document_claims_no_number(app: Flask, alice: None) -> None:
    create_user(app, "bob")
    checked_by(app, "bob", VerificationMethod.SMS)
    stored = identity(app, "bob")
    assert stored is not None
    assert stored.verified_number_index is None
    # the real holder is not locked out by someone who only declared the number
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    assert level(app, "alice") == 3


def test_a_declaration_keeps_the_confirmed_identity(app: Flask, alice: None) -> None:
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    before = identity(app, "alice")
    assert before is not None
    checked_by(app, "alice", VerificationMethod.SMS)
    after = identity(app, "alice")
    assert after is not None
    assert (after.verified_number_index, after.number_encrypted) == (
        before.verified_number_index,
        before.number_encrypted,
    )


def test_only_a_confirmed_document_replaces() -> None:
    with pytest.raises(ValueError, match="confirmed"):
        DocumentClaim(ALICE_ID, "resident_id", ALICE_NAME, confirmed=False, replace_reason="x")


# -- an organisation holds verifications too ----------------------------------------------


def test_an_organisation_is_a_holder(app: Flask, clock: FrozenClock) -> None:
    load_registry(app, ORGANISATION_REGISTRY, kind="organisation")
    verify_organisation(app, ACME_NAME, ACME_CODE)
    with app.app_context():
        organisation = db().scalar(select(Organisation))
        assert organisation is not None
        service = Accounts.of().realname_service(actor="cli")
        added = service.record_verification(
            organisation,
            method=VerificationMethod.CERTIFICATE,
            level=5,
            source=CA_SOURCE,
            evidence_ref=CERTIFICATE_REF,
            expires_at=clock.now() + timedelta(days=30),
            actor="cli",
        )
        assert (added.organisation_id, added.user_id) == (organisation.id, None)
        assert service.level(organisation) == 5
        assert [v.method.value for v in service.history(organisation)] == [
            "certificate",
            "registry",
        ]
        assert Accounts.of().organisation_service().level(organisation) == 5
        with pytest.raises(ValueError, match="organisation"):
            service.record_verification(
                organisation,
                method=VerificationMethod.COUNTER,
                level=5,
                source="counter:test",
                document=DocumentClaim.checked(ALICE_NAME, ALICE_ID),
            )
        subject = organisation.subject
    events = audit_events(app, "org.verify")
    assert [(e.subject, e.actor, e.details) for e in events[1:]] == [
        (subject, "cli", {"method": "certificate", "level": 5})
    ]


# -- what issue 11 will do: level 5 by a certificate -------------------------------------


def test_a_certificate_raises_the_account_to_level_5_with_its_history(
    app: Flask, client: FlaskClient, alice: None, clock: FrozenClock
) -> None:
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    not_after = clock.now() + timedelta(days=400)
    verification = record(
        app,
        "alice",
        method=VerificationMethod.CERTIFICATE,
        level=5,
        source=CA_SOURCE,
        evidence_ref=CERTIFICATE_REF,
        expires_at=not_after,
        # the identity the certificate carries, mapped to the account's
        document=DocumentClaim.checked(ALICE_NAME, ALICE_ID),
    )
    assert verification.expires_at == not_after
    assert level(app, "alice") == 5
    stored = history(app, "alice")
    assert [(v.method, v.level, v.source, v.evidence_ref) for v in stored] == [
        (VerificationMethod.CERTIFICATE, 5, CA_SOURCE, CERTIFICATE_REF),
        (VerificationMethod.REGISTRY, 3, "registry:test", "txn-1"),
    ]
    with app.app_context():
        assurance = Accounts.of().realname_service().assurance(user_named(app, "alice"))
        assert assurance is not None
        assert (assurance.level, assurance.verification.method) == (
            5,
            VerificationMethod.CERTIFICATE,
        )
    (_, event) = audit_events(app, "realname.verify")
    assert event.details == {"method": "certificate", "level": 5, "document_kind": "resident_id"}
    sign_in(client)
    page = body(client.get("/account/realname"))
    assert "Digital certificate" in page
    assert "Level 5" in page
    # the certificate's end, not a setting, ends it
    clock.advance((not_after - clock.now()).total_seconds() + 1)
    assert level(app, "alice") == 3


def test_a_certificate_for_a_number_confirmed_elsewhere_is_refused(
    app: Flask, alice: None, clock: FrozenClock
) -> None:
    create_user(app, "bob")
    checked_by(app, "alice", VerificationMethod.REGISTRY)
    with pytest.raises(IdentityTaken):
        record(
            app,
            "bob",
            method=VerificationMethod.CERTIFICATE,
            level=5,
            source=CA_SOURCE,
            evidence_ref=CERTIFICATE_REF,
            expires_at=clock.now() + timedelta(days=400),
            document=DocumentClaim.checked(ALICE_NAME, ALICE_ID),
        )
    assert level(app, "bob") == 1
