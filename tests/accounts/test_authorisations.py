"""Who may act for an organisation: claiming it as the legal representative the
registry names, inviting agents, confirming, dates, revoking, renouncing, an
intermediary's separate authorisations, and a change of legal representative."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask

from accounts.container import Accounts
from accounts.identifiers import id_check_char
from accounts.organisations.authorisations import (
    AuthorisationNotFound,
    ClaimNeedsLevel,
    InvalidAuthorisation,
    NotAdministrator,
    NotRepresentative,
    Scope,
)
from accounts.organisations.models import Authorisation, AuthorisationStatus, Role
from accounts.people.models import User
from accounts.realname.services import DocumentClaim, VerificationMethod
from idp.core.clock import FrozenClock
from tests.accounts.test_organisations import ACME_CODE, ACME_NAME, OTHER_CODE
from tests.accounts.test_realname import audit_events, load_registry
from tests.support import create_user

REP_NAME, REP_ID = "王小丽", "11010519491231002X"
AGENT_NAME, AGENT_ID = "李四", "110105194912310038"
NEW_REP_ID = "44010519900101123" + id_check_char("44010519900101123")
OTHER_NAME = "东莞另一家公司"


def _registry(app: Flask, representative: str = REP_ID) -> None:
    load_registry(
        app,
        "number,name,representative\n"
        f"{ACME_CODE},{ACME_NAME},{representative}\n"
        f"{OTHER_CODE},{OTHER_NAME},{REP_ID}\n",
        kind="organisation",
    )


@pytest.fixture
def registry(app: Flask) -> None:
    _registry(app)
    load_registry(
        app,
        f"number,name\n{REP_ID},{REP_NAME}\n{AGENT_ID},{AGENT_NAME}\n{NEW_REP_ID},新代表\n",
        kind="person",
    )


Run = Callable[..., object]


@pytest.fixture
def run(app: Flask) -> Run:
    """Call ``fn(service, *users)`` in an app context with the users reloaded."""

    def call(fn: Callable[..., object], *usernames: str) -> object:
        with app.app_context():
            accounts = Accounts.of()
            users = [accounts.account_service().find_by_username(name) for name in usernames]
            return fn(accounts.authorisation_service(), *users)

    return call


def _verified(app: Flask, username: str, name: str, number: str) -> User:
    user = create_user(app, username)
    with app.app_context():
        Accounts.of().realname_service().verify_with_registry(
            Accounts.of().account_service().get(user.id),  # type: ignore[arg-type]
            name,
            number,
        )
    return user


def _declared(app: Flask, username: str, name: str, number: str) -> User:
    """A level-2 account: the identity declared, not confirmed."""
    user = create_user(app, username)
    with app.app_context():
        realname = Accounts.of().realname_service()
        realname.record_verification(
            Accounts.of().account_service().get(user.id),  # type: ignore[arg-type]
            method=VerificationMethod.SMS,
            level=2,
            source="sms:test",
            document=DocumentClaim.checked(name, number, confirmed=False),
        )
    return user


def _claim(
    run: Run, username: str = "rep", code: str = ACME_CODE, name: str = ACME_NAME
) -> Authorisation:
    return run(lambda service, user: service.claim(user, code, name), username)  # type: ignore[return-value]


def test_the_legal_representative_claims_the_organisation(
    app: Flask, registry: None, run: Run
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    authorisation = _claim(run)
    assert authorisation.role is Role.LEGAL_REPRESENTATIVE
    assert authorisation.status is AuthorisationStatus.ACTIVE
    live = run(lambda service, user: service.live_for(user), "rep")
    assert [row.public_id for row in live] == [authorisation.public_id]  # type: ignore[attr-defined]
    with app.app_context():
        organisations = Accounts.of().organisation_service()
        organisation = organisations.find(ACME_CODE)
        assert organisation is not None
        assert organisations.level(organisation) == 3
    assert audit_events(app, "org.claim")


@pytest.mark.parametrize("who", ["other_person", "level_2_with_the_right_identity", "no_identity"])
def test_nobody_else_can_claim_it(app: Flask, registry: None, run: Run, who: str) -> None:
    if who == "other_person":
        _verified(app, "rep", AGENT_NAME, AGENT_ID)  # verified, but not the representative
        expected: type[Exception] = NotRepresentative
    elif who == "level_2_with_the_right_identity":
        _declared(app, "rep", REP_NAME, REP_ID)  # the right name and number, only declared
        expected = ClaimNeedsLevel
    else:
        create_user(app, "rep")
        expected = ClaimNeedsLevel
    with pytest.raises(expected):
        _claim(run)
    assert run(lambda service, user: service.live_for(user), "rep") == []
    refusals = audit_events(app, "org.claim")
    assert refusals
    assert all(e.outcome == "failure" for e in refusals)


def test_an_agent_is_invited_by_number_and_confirms(app: Flask, registry: None, run: Run) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    _verified(app, "agent", AGENT_NAME, AGENT_ID)
    _claim(run)

    def invite(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(
            rep,
            organisation,
            number=AGENT_ID,
            scope=Scope(all_services=False, clients=("tax-client",)),
        )

    offered = run(invite, "rep")
    assert offered.status is AuthorisationStatus.PENDING  # type: ignore[attr-defined]
    # not live before the agent confirms
    assert run(lambda service, agent: service.live_for(agent), "agent") == []
    invitations = run(lambda service, agent: service.invitations_for(agent), "agent")
    assert [i.public_id for i in invitations] == [offered.public_id]  # type: ignore[attr-defined]
    run(lambda service, agent: service.confirm(agent, offered.public_id), "agent")  # type: ignore[attr-defined]
    live = run(lambda service, agent: service.live_for(agent), "agent")
    assert [a.role for a in live] == [Role.AGENT]  # type: ignore[attr-defined]
    assert Scope.of(live[0]).permits("tax-client")  # type: ignore[index]
    assert not Scope.of(live[0]).permits("housing-client")  # type: ignore[index]


def test_someone_else_cannot_confirm_an_invitation(app: Flask, registry: None, run: Run) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    create_user(app, "mallory")
    _claim(run)

    def invite(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(rep, organisation, number=AGENT_ID)

    offered = run(invite, "rep")
    with pytest.raises(AuthorisationNotFound):
        run(lambda service, user: service.confirm(user, offered.public_id), "mallory")  # type: ignore[attr-defined]


def test_only_an_administrator_invites_and_revokes(app: Flask, registry: None, run: Run) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    agent = _verified(app, "agent", AGENT_NAME, AGENT_ID)
    _claim(run)

    def invite_as(service, user):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(
            user, organisation, user=Accounts.of().account_service().get(agent.id)
        )

    with pytest.raises(NotAdministrator):
        run(invite_as, "agent")
    offered = run(invite_as, "rep")
    run(lambda service, user: service.confirm(user, offered.public_id), "agent")  # type: ignore[attr-defined]
    with pytest.raises(NotAdministrator):
        run(lambda service, user: service.revoke(user, offered.public_id), "agent")  # type: ignore[attr-defined]


def test_revocation_and_renouncing_take_effect_at_once(
    app: Flask, registry: None, run: Run
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    agent = _verified(app, "agent", AGENT_NAME, AGENT_ID)
    _claim(run)

    def invite(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(rep, organisation, user=Accounts.of().account_service().get(agent.id))

    first = run(invite, "rep")
    run(lambda s, u: s.confirm(u, first.public_id), "agent")  # type: ignore[attr-defined]
    assert run(lambda s, u: s.live_authorisation(u, first.public_id), "agent") is not None  # type: ignore[attr-defined]
    run(lambda s, u: s.revoke(u, first.public_id), "rep")  # type: ignore[attr-defined]
    assert run(lambda s, u: s.live_authorisation(u, first.public_id), "agent") is None  # type: ignore[attr-defined]
    with pytest.raises(InvalidAuthorisation):
        run(lambda s, u: s.revoke(u, first.public_id), "rep")  # type: ignore[attr-defined]
    second = run(invite, "rep")
    run(lambda s, u: s.confirm(u, second.public_id), "agent")  # type: ignore[attr-defined]
    run(lambda s, u: s.renounce(u, second.public_id), "agent")  # type: ignore[attr-defined]
    assert run(lambda s, u: s.live_for(u), "agent") == []


def test_an_authorisation_lives_between_its_dates(
    app: Flask, registry: None, run: Run, clock: FrozenClock
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    agent = _verified(app, "agent", AGENT_NAME, AGENT_ID)
    _claim(run)
    now = clock.now()

    def invite(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(
            rep,
            organisation,
            user=Accounts.of().account_service().get(agent.id),
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=2),
        )

    offered = run(invite, "rep")
    run(lambda s, u: s.confirm(u, offered.public_id), "agent")  # type: ignore[attr-defined]
    assert run(lambda s, u: s.live_for(u), "agent") == []  # not yet
    clock.advance(36 * 3600)
    assert len(run(lambda s, u: s.live_for(u), "agent")) == 1  # type: ignore[arg-type]
    clock.advance(24 * 3600)
    assert run(lambda s, u: s.live_for(u), "agent") == []  # expired

    def backwards(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(
            rep, organisation, number=AGENT_ID, ends_at=clock.now() - timedelta(days=1)
        )

    with pytest.raises(InvalidAuthorisation):
        run(backwards, "rep")


def test_an_intermediary_acts_for_each_client_separately(
    app: Flask, registry: None, run: Run
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)  # represents both enterprises
    clerk = _verified(app, "clerk", AGENT_NAME, AGENT_ID)
    _claim(run, code=ACME_CODE, name=ACME_NAME)
    _claim(run, code=OTHER_CODE, name=OTHER_NAME)

    def invite(code: str, client: str):  # type: ignore[no-untyped-def]
        def call(service, rep):  # type: ignore[no-untyped-def]
            organisation = Accounts.of().organisation_service().find(code)
            return service.invite(
                rep,
                organisation,
                user=Accounts.of().account_service().get(clerk.id),
                scope=Scope(all_services=False, clients=(client,)),
            )

        return call

    acme = run(invite(ACME_CODE, "tax-client"), "rep")
    other = run(invite(OTHER_CODE, "housing-client"), "rep")
    for offered in (acme, other):
        run(lambda s, u, o=offered: s.confirm(u, o.public_id), "clerk")
    live = run(lambda s, u: s.live_for(u), "clerk")
    assert len(live) == 2  # type: ignore[arg-type]
    by_org = {a.organisation_id: Scope.of(a) for a in live}  # type: ignore[attr-defined]
    assert len(by_org) == 2
    scopes = sorted(scope.clients for scope in by_org.values())
    assert scopes == [("housing-client",), ("tax-client",)]


def test_a_new_legal_representative_ends_the_old_ones_role(
    app: Flask, registry: None, run: Run
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    agent = _verified(app, "agent", AGENT_NAME, AGENT_ID)
    _verified(app, "newrep", "新代表", NEW_REP_ID)
    old = _claim(run)

    def invite(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(rep, organisation, user=Accounts.of().account_service().get(agent.id))

    granted = run(invite, "rep")
    run(lambda s, u: s.confirm(u, granted.public_id), "agent")  # type: ignore[attr-defined]
    _registry(app, representative=NEW_REP_ID)  # the registry now names someone else
    with pytest.raises(NotRepresentative):
        _claim(run)  # the old one can no longer claim
    assert run(lambda s, u: s.live_for(u), "rep") == []
    _claim(run, "newrep")
    with app.app_context():
        service = Accounts.of().authorisation_service()
        ended = service.get(old.public_id)
        assert ended is not None
        assert ended.status is AuthorisationStatus.ENDED
        assert ended.end_reason == "legal_representative_changed"
        # what the old representative granted stays live, listed for review
        still = service.get(granted.public_id)  # type: ignore[attr-defined]
        assert still is not None
        assert still.status is AuthorisationStatus.ACTIVE
    events = audit_events(app, "org.representative_changed")
    assert events
    assert events[0].details["to_review"] == 1


def test_only_the_legal_representative_appoints_administrators(
    app: Flask, registry: None, run: Run
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    admin = _verified(app, "admin", AGENT_NAME, AGENT_ID)
    create_user(app, "third")
    _claim(run)

    def appoint(invitee: str):  # type: ignore[no-untyped-def]
        def call(service, inviter):  # type: ignore[no-untyped-def]
            organisation = Accounts.of().organisation_service().find(ACME_CODE)
            person = Accounts.of().account_service().find_by_username(invitee)
            return service.invite(inviter, organisation, user=person, role=Role.ADMINISTRATOR)

        return call

    offered = run(appoint("admin"), "rep")
    run(lambda s, u: s.confirm(u, offered.public_id), "admin")  # type: ignore[attr-defined]
    assert run(lambda s, u: [a.role for a in s.live_for(u)], "admin") == [Role.ADMINISTRATOR]
    with pytest.raises(InvalidAuthorisation):  # an administrator appoints no administrator
        run(appoint("third"), "admin")
    del admin


def test_what_a_former_representative_granted_is_flagged_for_review(
    app: Flask, registry: None, run: Run
) -> None:
    _verified(app, "rep", REP_NAME, REP_ID)
    agent = _verified(app, "agent", AGENT_NAME, AGENT_ID)
    _verified(app, "newrep", "新代表", NEW_REP_ID)
    _claim(run)

    def invite(service, rep):  # type: ignore[no-untyped-def]
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        return service.invite(rep, organisation, user=Accounts.of().account_service().get(agent.id))

    granted = run(invite, "rep")
    with app.app_context():
        service = Accounts.of().authorisation_service()
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        assert organisation is not None
        assert service.to_review(service.members(organisation)) == set()
    _registry(app, representative=NEW_REP_ID)
    _claim(run, "newrep")
    with app.app_context():
        service = Accounts.of().authorisation_service()
        organisation = Accounts.of().organisation_service().find(ACME_CODE)
        assert organisation is not None
        assert service.to_review(service.members(organisation)) == {granted.public_id}  # type: ignore[attr-defined]
