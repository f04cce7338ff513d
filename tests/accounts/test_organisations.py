"""Organisations at real-name level 3: name + USCC against the legal-person registry
(the local copy), stored encrypted, one row per code, clear refusals."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from sqlalchemy import select, text

from accounts.adapters.registry import RegistryResult, RegistryUnavailable
from accounts.container import Accounts
from accounts.identifiers import org_check_char, uscc_check_char
from accounts.organisations.models import Organisation
from accounts.organisations.services import (
    InvalidOrganisationName,
    InvalidUscc,
    OrganisationMismatch,
    OrganisationNotFound,
    OrganisationRegistryDown,
)
from accounts.realname.models import Verification, VerificationMethod
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime, db
from tests.accounts.test_realname import audit_events, count, load_registry
from tests.support import AppFactory

ACME_CODE = "91110000600037341L"  # the example of GB 32100 / design.md
ACME_NAME = "东莞示例科技有限公司"


def uscc(prefix8: str, org8: str) -> str:
    body = prefix8 + org8 + org_check_char(org8)
    return body + uscc_check_char(body)


OTHER_CODE = uscc("91441900", "MA4UABCD")
# a well-formed early pilot code whose own check character is wrong
PILOT_CODE = OTHER_CODE[:17] + ("0" if OTHER_CODE[17] != "0" else "1")
PILOT_NAME = "东莞试点企业"
REGISTRY = f"number,name\n{ACME_CODE},{ACME_NAME}\n{PILOT_CODE},{PILOT_NAME}\n"


@pytest.fixture
def registry(app: Flask) -> None:
    load_registry(app, REGISTRY, kind="organisation")


def verify(app: Flask, name: str, code: str, actor: str = "cli") -> Verification:
    with app.app_context():
        return Accounts.of().organisation_service().verify_with_registry(name, code, actor=actor)


def org_level(app: Flask, code: str) -> int:
    with app.app_context():
        service = Accounts.of().organisation_service()
        organisation = service.find(code)
        return service.level(organisation) if organisation else 0


def test_a_registry_match_gives_level_3(app: Flask, registry: None) -> None:
    verification = verify(app, f" {ACME_NAME} ", ACME_CODE.lower(), actor="user:someone")
    assert verification.level == 3
    assert org_level(app, ACME_CODE) == 3
    with app.app_context():
        service = Accounts.of().organisation_service()
        organisation = service.find(ACME_CODE)
        assert organisation is not None
        assert service.uscc_of(organisation) == ACME_CODE  # normalised
        assert service.name_of(organisation) == ACME_NAME
        stored = db().scalar(select(Verification))
        assert stored is not None
        assert (stored.organisation_id, stored.user_id) == (organisation.id, None)
        assert (stored.method, stored.source) == (VerificationMethod.REGISTRY, "registry:local")
        assert stored.actor == "user:someone"
        status = service.status(organisation)
        assert (status.level, status.masked_uscc, status.name) == (
            3,
            "911***********341L",
            ACME_NAME,
        )
    (event,) = audit_events(app, "org.verify")
    assert (event.outcome, event.actor) == ("success", "user:someone")
    assert event.subject == f"org:{organisation.public_id}"
    assert ACME_CODE not in str(event.details)
    assert ACME_NAME not in str(event.details)


def test_the_database_holds_no_code_or_name_in_clear(app: Flask, registry: None) -> None:
    verify(app, ACME_NAME, ACME_CODE)
    with app.app_context():
        dumped = " ".join(
            str(value)
            for table in ("organisations", "verifications", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
    for secret in (ACME_CODE, ACME_CODE[8:17], ACME_NAME):
        assert secret not in dumped


def test_verifying_again_renews_on_the_same_organisation(
    app: Flask, registry: None, clock: FrozenClock
) -> None:
    verify(app, ACME_NAME, ACME_CODE)
    with app.app_context():
        days = Runtime.of().settings.registry_level_valid_days
    clock.advance(days * 86400 + 60)
    assert org_level(app, ACME_CODE) == 1  # expired
    verify(app, ACME_NAME, ACME_CODE)
    assert org_level(app, ACME_CODE) == 3
    assert count(app, Organisation) == 1
    assert count(app, Verification) == 2


def test_a_pilot_code_is_accepted_only_when_the_registry_knows_it(
    app: Flask, registry: None
) -> None:
    verify(app, PILOT_NAME, PILOT_CODE)
    assert org_level(app, PILOT_CODE) == 3
    unknown_pilot = ACME_CODE[:17] + ("0" if ACME_CODE[17] != "0" else "1")
    with pytest.raises(OrganisationNotFound):
        verify(app, ACME_NAME, unknown_pilot)
    assert count(app, Organisation) == 1


@pytest.mark.parametrize(
    ("name", "code", "error"),
    [
        (ACME_NAME, "91110000600037341", InvalidUscc),  # 17 characters
        (ACME_NAME, "91110000600037341I", InvalidUscc),  # I is not in the alphabet
        (ACME_NAME, "11010519491231002X", InvalidUscc),  # a person's ID number
        ("   ", ACME_CODE, InvalidOrganisationName),
        ("名" * 201, ACME_CODE, InvalidOrganisationName),
        ("东莞\n示例", ACME_CODE, InvalidOrganisationName),
        ("东莞别的公司", ACME_CODE, OrganisationMismatch),
        ("东莞某公司", OTHER_CODE, OrganisationNotFound),
    ],
)
def test_refusals_record_nothing(
    app: Flask, registry: None, name: str, code: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        verify(app, name, code)
    assert count(app, Organisation) == 0
    assert count(app, Verification) == 0


def test_registry_answers_are_audited_as_failures(app: Flask, registry: None) -> None:
    with pytest.raises(OrganisationMismatch):
        verify(app, "东莞别的公司", ACME_CODE)
    with pytest.raises(OrganisationNotFound):
        verify(app, "东莞某公司", OTHER_CODE)
    reasons = [(e.outcome, e.details["reason"]) for e in audit_events(app, "org.verify")]
    assert sorted(reasons) == [("failure", "mismatch"), ("failure", "not_found")]
    for event in audit_events(app, "org.verify"):
        assert ACME_CODE not in str(event.details)
        assert OTHER_CODE not in str(event.details)


class DownRegistry:
    source = "registry:test-down"

    def match(self, _kind: str, _number: str, _name: str) -> RegistryResult:
        raise RegistryUnavailable("timed out after 3 attempts")


def test_a_registry_outage_is_a_clear_refusal(
    app: Flask, registry: None, make_app: AppFactory
) -> None:
    verify(app, ACME_NAME, ACME_CODE)
    with pytest.raises(OrganisationRegistryDown):
        verify(make_app(registry=DownRegistry()), ACME_NAME, ACME_CODE)
    assert count(app, Verification) == 1  # the earlier level stays, nothing half-written
    failure = [e for e in audit_events(app, "org.verify") if e.outcome == "failure"]
    assert [e.details["reason"] for e in failure] == ["registry_unavailable"]
    assert failure[0].subject is not None  # the known organisation is named


def test_concurrent_first_checks_create_one_organisation(app: Flask, registry: None) -> None:
    racers = 4
    barrier = threading.Barrier(racers)
    errors: list[Exception] = []

    def attempt() -> None:
        with app.app_context():
            service = Accounts.of().organisation_service()
            barrier.wait()
            try:
                service.verify_with_registry(ACME_NAME, ACME_CODE, actor="cli")
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(app, Organisation) == 1
    assert count(app, Verification) == racers
    assert org_level(app, ACME_CODE) == 3


def test_find_and_get(app: Flask, registry: None) -> None:
    verify(app, ACME_NAME, ACME_CODE)
    with app.app_context():
        service = Accounts.of().organisation_service()
        organisation = service.find(f"  {ACME_CODE.lower()} ")
        assert organisation is not None
        assert service.get(organisation.public_id) is organisation
        assert service.find(OTHER_CODE) is None
        assert service.find("not a code") is None
