"""The organisation pages as a browser drives them: claiming, the enterprise page,
adding an agent, confirming, revoking, renouncing; and the refusals (a non-member sees
nothing, an agent cannot add agents, forged forms), plus ``idp orgs show|list|members``."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from accounts.container import Accounts
from accounts.organisations.authorisations import Scope
from accounts.organisations.models import Authorisation, AuthorisationStatus
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from pki.models import CertificateBinding
from tests.accounts.test_authorisations import (
    AGENT_ID,
    AGENT_NAME,
    OTHER_NAME,
    REP_ID,
    REP_NAME,
)
from tests.accounts.test_organisations import ACME_CODE, ACME_NAME, OTHER_CODE
from tests.accounts.test_realname import audit_events, load_registry
from tests.support import create_user, csrf_token, sign_in, submit
from tests.support import text as body

MASKED_ACME = "911***********341L"


@pytest.fixture
def people(app: Flask) -> None:
    """rep (the registry's legal representative of both organisations), agent (verified),
    stranger (verified, no authorisation)."""
    load_registry(
        app,
        "number,name,representative\n"
        f"{ACME_CODE},{ACME_NAME},{REP_ID}\n{OTHER_CODE},{OTHER_NAME},{REP_ID}\n",
        kind="organisation",
    )
    stranger_id = "110105194912310011"
    load_registry(
        app,
        f"number,name\n{REP_ID},{REP_NAME}\n{AGENT_ID},{AGENT_NAME}\n{stranger_id},赵六\n",
        kind="person",
    )
    for username, name, number in (
        ("rep", REP_NAME, REP_ID),
        ("agent", AGENT_NAME, AGENT_ID),
        ("stranger", "赵六", stranger_id),
    ):
        user = create_user(app, username)
        with app.app_context():
            account = Accounts.of().account_service().get(user.id)
            assert account is not None
            Accounts.of().realname_service().verify_with_registry(account, name, number)


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, username).status_code == 302
    return client


def _claim(app: Flask, code: str = ACME_CODE, name: str = ACME_NAME) -> str:
    """rep claims the organisation through the page; its public id."""
    response = submit(_client(app, "rep"), "/account/organisations", {"uscc": code, "name": name})
    assert response.status_code == 302, body(response)
    match = re.fullmatch(r"/org/([0-9a-f-]{36})", response.headers["Location"])
    assert match
    return match.group(1)


def _members(app: Flask, org_id: str) -> list[Authorisation]:
    with app.app_context():
        organisation = Accounts.of().organisation_service().get(org_id)
        assert organisation is not None
        return Accounts.of().authorisation_service().members(organisation)


def _add_agent(
    client: FlaskClient, org_id: str, form_url: str | None = None, **fields: str
) -> TestResponse:
    data = {"by": "username", "invitee": "agent", "scope": "all", **fields}
    return submit(client, f"/org/{org_id}/agents", data, form_url=form_url or f"/org/{org_id}")


def _action(client: FlaskClient, url: str, page: str) -> TestResponse:
    token = csrf_token(body(client.get(page)))
    return client.post(url, data={"csrf_token": token})


def test_the_legal_representative_claims_and_sees_the_enterprise_page(
    app: Flask, people: None
) -> None:
    org_id = _claim(app)
    page = _client(app, "rep").get(f"/org/{org_id}")
    assert page.status_code == 200
    html = body(page)
    assert ACME_NAME in html
    assert MASKED_ACME in html
    assert ACME_CODE not in html
    assert "Legal representative" in html
    assert 'name="invitee"' in html  # administrators get the form
    assert "Claimed by the legal representative" in html  # the history
    assert f'href="/org/{org_id}/records"' in html  # the organisation's service records
    mine = body(_client(app, "rep").get("/account/organisations"))
    assert ACME_NAME in mine
    assert MASKED_ACME in mine


@pytest.mark.parametrize(
    ("username", "fields", "status", "message"),
    [
        ("agent", {}, 403, "does not name you"),
        ("newcomer", {}, 403, "real-name level 3"),
        ("rep", {"uscc": "12345"}, 400, "unified social credit code"),
        ("rep", {"name": "别的公司"}, 400, "does not match"),
        ("rep", {"name": ""}, 400, "required"),
    ],
)
def test_a_claim_is_refused_with_a_reason(
    app: Flask, people: None, username: str, fields: dict[str, str], status: int, message: str
) -> None:
    if username == "newcomer":
        create_user(app, "newcomer")  # level 1
    client = _client(app, username)
    response = submit(
        client, "/account/organisations", {"uscc": ACME_CODE, "name": ACME_NAME, **fields}
    )
    assert response.status_code == status
    assert message in body(response)
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        assert Accounts.of().authorisation_service().live_for(user) == []


def test_the_enterprise_page_is_404_for_anyone_without_a_live_authorisation(
    app: Flask, people: None
) -> None:
    org_id = _claim(app)
    assert app.test_client().get(f"/org/{org_id}").status_code == 302  # to the sign-in
    stranger = _client(app, "stranger")
    assert stranger.get(f"/org/{org_id}").status_code == 404
    assert stranger.get("/org/00000000-0000-0000-0000-000000000000").status_code == 404
    assert stranger.get("/org/" + "x" * 500).status_code == 404
    # nor can they act through it (a token from a page of their own)
    token = csrf_token(body(stranger.get("/account/organisations")))
    data = {"csrf_token": token, "by": "username", "invitee": "stranger", "scope": "all"}
    assert stranger.post(f"/org/{org_id}/agents", data=data).status_code == 404
    (rep_row,) = _members(app, org_id)
    revoke = f"/org/{org_id}/authorisations/{rep_row.public_id}/revoke"
    assert stranger.post(revoke, data={"csrf_token": token}).status_code == 404
    assert len(_members(app, org_id)) == 1


def test_an_agent_is_added_by_username_confirms_and_sees_the_page_without_forms(
    app: Flask, people: None
) -> None:
    org_id = _claim(app)
    rep = _client(app, "rep")
    added = _add_agent(
        rep, org_id, scope="named", clients="tax-portal, social-insurance", ends_on="2099-12-31"
    )
    assert added.status_code == 302, body(added)
    listed = body(rep.get(f"/org/{org_id}"))
    assert "Waiting for confirmation" in listed
    assert "tax-portal, social-insurance" in listed
    assert "2100-01-01 00:00 UTC" in listed  # in force to the end of the last day

    agent = _client(app, "agent")
    assert agent.get(f"/org/{org_id}").status_code == 404  # not confirmed yet
    invitations = body(agent.get("/account/organisations"))
    assert ACME_NAME in invitations
    pending = next(row for row in _members(app, org_id) if row.role.value == "agent")
    confirm = f"/account/organisations/{pending.public_id}/confirm"
    confirmed = _action(agent, confirm, "/account/organisations")
    assert confirmed.status_code == 302
    page = agent.get(f"/org/{org_id}")
    assert page.status_code == 200
    assert 'name="invitee"' not in body(page)
    assert "Revoke" not in body(page)

    # an agent cannot add agents or revoke, even with a valid form
    before = len(_members(app, org_id))
    refused = _add_agent(agent, org_id, "/account/organisations", invitee="stranger")
    assert refused.status_code == 403
    assert "legal representative or an administrator can do this" in body(refused)
    assert len(_members(app, org_id)) == before
    revoke = f"/org/{org_id}/authorisations/{pending.public_id}/revoke"
    # (the agent's page has no form: a token from another page of theirs)
    assert _action(agent, revoke, "/account/organisations").status_code == 403
    (row,) = [r for r in _members(app, org_id) if r.public_id == pending.public_id]
    assert row.status is AuthorisationStatus.ACTIVE


def test_an_agent_invited_by_document_number_finds_the_invitation(app: Flask, people: None) -> None:
    org_id = _claim(app)
    rep = _client(app, "rep")
    added = _add_agent(rep, org_id, by="document", invitee=AGENT_ID.lower())
    assert added.status_code == 302, body(added)
    page = body(rep.get(f"/org/{org_id}"))
    assert "Invited by document number" in page
    assert AGENT_ID not in page
    assert AGENT_ID not in body(_client(app, "stranger").get("/account/organisations"))
    agent = _client(app, "agent")
    pending = next(row for row in _members(app, org_id) if row.role.value == "agent")
    assert ACME_NAME in body(agent.get("/account/organisations"))
    confirm = f"/account/organisations/{pending.public_id}/confirm"
    assert _action(agent, confirm, "/account/organisations").status_code == 302
    # the stranger cannot confirm someone else's invitation
    assert agent.get(f"/org/{org_id}").status_code == 200


def test_nobody_else_confirms_an_invitation(app: Flask, people: None) -> None:
    org_id = _claim(app)
    _add_agent(_client(app, "rep"), org_id)
    pending = next(row for row in _members(app, org_id) if row.role.value == "agent")
    stranger = _client(app, "stranger")
    confirm = f"/account/organisations/{pending.public_id}/confirm"
    assert _action(stranger, confirm, "/account/organisations").status_code == 404
    assert stranger.get(f"/org/{org_id}").status_code == 404


def test_revoking_and_renouncing_end_access_at_once(app: Flask, people: None) -> None:
    org_id = _claim(app)
    rep = _client(app, "rep")
    _add_agent(rep, org_id)
    agent = _client(app, "agent")
    first = next(row for row in _members(app, org_id) if row.role.value == "agent")
    _action(agent, f"/account/organisations/{first.public_id}/confirm", "/account/organisations")
    assert agent.get(f"/org/{org_id}").status_code == 200
    revoke = f"/org/{org_id}/authorisations/{first.public_id}/revoke"
    assert _action(rep, revoke, f"/org/{org_id}").status_code == 302
    assert agent.get(f"/org/{org_id}").status_code == 404
    assert "Revoked" in body(rep.get(f"/org/{org_id}"))
    again = _action(rep, revoke, f"/org/{org_id}")
    assert again.status_code == 400
    assert "ended already" in body(again)

    _add_agent(rep, org_id)
    second = next(
        row
        for row in _members(app, org_id)
        if row.role.value == "agent" and row.status is AuthorisationStatus.PENDING
    )
    _action(agent, f"/account/organisations/{second.public_id}/confirm", "/account/organisations")
    renounce = f"/account/organisations/{second.public_id}/renounce"
    assert _action(agent, renounce, "/account/organisations").status_code == 302
    assert agent.get(f"/org/{org_id}").status_code == 404
    assert "Given up" in body(rep.get(f"/org/{org_id}"))
    # the legal representative's own row cannot be revoked
    (rep_row,) = [r for r in _members(app, org_id) if r.role.value == "legal_representative"]
    own = _action(rep, f"/org/{org_id}/authorisations/{rep_row.public_id}/revoke", f"/org/{org_id}")
    assert own.status_code == 400


def test_an_authorisation_of_another_organisation_is_404_here(app: Flask, people: None) -> None:
    acme = _claim(app)
    other = _claim(app, OTHER_CODE, OTHER_NAME)
    rep = _client(app, "rep")
    _add_agent(rep, other)
    (pending,) = [r for r in _members(app, other) if r.role.value == "agent"]
    crossed = _action(rep, f"/org/{acme}/authorisations/{pending.public_id}/revoke", f"/org/{acme}")
    assert crossed.status_code == 404
    (still,) = [r for r in _members(app, other) if r.role.value == "agent"]
    assert still.status is AuthorisationStatus.PENDING


def test_forged_forms_change_nothing(app: Flask, people: None) -> None:
    org_id = _claim(app)
    rep = _client(app, "rep")
    data = {"by": "username", "invitee": "agent", "scope": "all"}
    assert rep.post(f"/org/{org_id}/agents", data=data).status_code == 400
    assert len(_members(app, org_id)) == 1
    _add_agent(rep, org_id)
    pending = next(row for row in _members(app, org_id) if row.role.value == "agent")
    assert rep.post(f"/org/{org_id}/authorisations/{pending.public_id}/revoke").status_code == 400
    agent = _client(app, "agent")
    assert agent.post(f"/account/organisations/{pending.public_id}/confirm").status_code == 400
    claim = {"uscc": OTHER_CODE, "name": OTHER_NAME}
    assert rep.post("/account/organisations", data=claim).status_code == 400
    statuses = {row.status for row in _members(app, org_id)}
    assert statuses == {AuthorisationStatus.ACTIVE, AuthorisationStatus.PENDING}
    with app.app_context():
        assert Accounts.of().organisation_service().find(OTHER_CODE) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"by": "document", "invitee": "12345"}, "identity document"),
        ({"scope": "named", "clients": ""}, "name at least one service"),
        ({"scope": "named", "clients": "svc<script>"}, "letters, digits"),
        ({"clients": " ".join(f"c{i}" for i in range(21)), "scope": "named"}, "at most 20"),
        ({"starts_on": "2099-01-10", "ends_on": "2099-01-01"}, "end after it starts"),
        ({"ends_on": "2000-01-01"}, "end after it starts"),
        ({"ends_on": "not a date"}, "Not a valid date"),
        ({"by": "telepathy"}, "Not a valid choice"),
        ({"invitee": "x" * 65}, "64"),
    ],
)
def test_adding_an_agent_says_what_is_wrong(
    app: Flask, people: None, fields: dict[str, str], message: str
) -> None:
    org_id = _claim(app)
    response = _add_agent(_client(app, "rep"), org_id, **fields)
    assert response.status_code == 400
    assert message in body(response)
    assert len(_members(app, org_id)) == 1


def test_the_history_is_newest_first_paginated_and_without_personal_data(
    app: Flask, people: None, clock: FrozenClock
) -> None:
    org_id = _claim(app)
    with app.app_context():
        accounts = Accounts.of()
        rep = accounts.account_service().find_by_username("rep")
        organisation = accounts.organisation_service().get(org_id)
        assert rep is not None
        assert organisation is not None
        for _ in range(24):
            clock.advance(60)
            accounts.authorisation_service().invite(
                rep,
                organisation,
                number=AGENT_ID,
                scope=Scope(all_services=False, clients=("svc",)),
            )
    client = _client(app, "rep")
    first = body(client.get(f"/org/{org_id}"))
    history = first[first.index("Activity") :]
    assert history.count("Authorisation offered") == 20
    assert "Claimed by the legal representative" not in history  # the oldest: page 2
    assert "Older" in history
    assert "Newer" not in history
    assert "Legal representative (authorisation " in history
    assert not re.search(r"\brep\b", history)  # the username
    for personal in (REP_ID, REP_NAME, AGENT_ID, "127.0.0.1"):
        assert personal not in history
    second = body(client.get(f"/org/{org_id}?page=2"))
    older = second[second.index("Activity") :]
    assert "Claimed by the legal representative" in older
    assert "Newer" in older
    assert "Older" not in older
    for odd in ("abc", "-1", "0", "99999999999999999999", "１"):  # noqa: RUF001 - a wide digit
        assert client.get(f"/org/{org_id}?page={odd}").status_code == 200


def test_the_page_lists_the_organisations_certificates(app: Flask, people: None) -> None:
    org_id = _claim(app)
    with app.app_context():
        organisation = Accounts.of().organisation_service().get(org_id)
        assert organisation is not None
        db().add(
            CertificateBinding(
                organisation_id=organisation.id,
                ca_name="gd-ca",
                fingerprint="ab" * 32,
                serial="0a1b2c",
                identity_kind="organisation",
                identifier_type="uscc",
                identity_index="cd" * 32,
                identifier_masked=MASKED_ACME,
                not_after=Accounts.of().core.clock.now() + timedelta(days=365),
            )
        )
        db().commit()
    html = body(_client(app, "rep").get(f"/org/{org_id}"))
    assert "gd-ca" in html
    assert "0a1b2c" in html
    assert "No enterprise certificate" not in html


# -- idp orgs show | list | members -------------------------------------------------------


def test_the_orgs_commands(app: Flask, people: None) -> None:
    org_id = _claim(app)
    rep = _client(app, "rep")
    _add_agent(rep, org_id, by="document", invitee=AGENT_ID, scope="named", clients="svc")
    runner = app.test_cli_runner()

    shown = runner.invoke(args=["orgs", "show", ACME_CODE.lower(), "--json"])
    assert shown.exit_code == 0, shown.output
    profile = json.loads(shown.output)
    assert profile == {
        "id": org_id,
        "uscc": MASKED_ACME,
        "name": ACME_NAME,
        "kind": "enterprise",
        "level": 3,
        "members": {"live": 1, "pending": 1, "total": 2},
    }
    assert runner.invoke(args=["orgs", "show", ACME_CODE]).output.startswith(MASKED_ACME)

    listed = runner.invoke(args=["orgs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in json.loads(listed.output)] == [org_id]

    members = runner.invoke(args=["orgs", "members", ACME_CODE, "--json"])
    assert members.exit_code == 0, members.output
    rows = json.loads(members.output)
    assert [(r["role"], r["status"], r["username"]) for r in rows] == [
        ("agent", "pending", None),
        ("legal_representative", "active", "rep"),
    ]
    assert rows[0]["clients"] == ["svc"]
    for output in (shown.output, listed.output, members.output):
        assert ACME_CODE not in output
        assert AGENT_ID not in output

    unknown = runner.invoke(args=["orgs", "members", OTHER_CODE, "--json"])
    assert unknown.exit_code == 1
    assert unknown.stdout == ""
    assert runner.invoke(args=["orgs", "show", "12345"]).exit_code == 1
    assert runner.invoke(args=["orgs", "show"]).exit_code == 2
    assert runner.invoke(args=["orgs", "list", "--limit", "0"]).exit_code == 2


_CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*>')
_INVITEE_VALUE = re.compile(r'(<input[^>]*name="invitee"[^>]*value=")[^"]*"')


def _normalised(html: str) -> str:
    """The page without its CSRF token and without the username typed."""
    return _INVITEE_VALUE.sub(r'\1"', _CSRF_INPUT.sub("", html))


def _notice(client: FlaskClient, response: TestResponse) -> str:
    """The flashed message the redirect shows."""
    match = re.search(r'role="status"[^>]*>(.*?)</', body(client.get(response.headers["Location"])))
    assert match, "no notice"
    return match.group(1).strip()


def test_inviting_by_username_does_not_tell_whether_the_account_exists(
    app: Flask, people: None
) -> None:
    """An administrator cannot probe usernames: an invitation to an account and to a
    username no account has get the same answer and the same kind of row in the list
    (no username until its holder confirms); only the account's can be confirmed."""
    org_id = _claim(app)
    rep = _client(app, "rep")
    known = _add_agent(rep, org_id, invitee="agent")
    known_notice = _notice(rep, known)
    unknown = _add_agent(rep, org_id, invitee="nobody-here")
    unknown_notice = _notice(rep, unknown)
    assert (known.status_code, known.headers["Location"]) == (
        unknown.status_code,
        unknown.headers["Location"],
    )
    assert known.status_code == 302
    assert body(known) == body(unknown)
    assert known_notice == unknown_notice
    assert "If an account with this username exists" in known_notice
    agents = [row for row in _members(app, org_id) if row.role.value == "agent"]
    [real] = [row for row in agents if row.user_id is not None]
    [decoy] = [row for row in agents if row.user_id is None]
    assert real.status is decoy.status is AuthorisationStatus.PENDING
    page = body(rep.get(f"/org/{org_id}"))
    real_row, decoy_row = (
        re.sub(r"\s+", " ", _row_of(page, row.public_id))
        .replace(row.public_id, "ID")
        .replace(row.public_id[:8], "ID")
        for row in (real, decoy)
    )
    assert real_row == decoy_row  # the same row but for its id
    assert ">agent<" not in page
    assert "No account" not in page
    # only the real account was offered it; once confirmed, the list names the holder
    agent = _client(app, "agent")
    offered = body(agent.get("/account/organisations"))
    assert real.public_id in offered
    assert decoy.public_id not in offered
    confirmed = _action(
        agent, f"/account/organisations/{real.public_id}/confirm", "/account/organisations"
    )
    assert confirmed.status_code == 302
    assert ">agent<" in body(rep.get(f"/org/{org_id}"))
    # nobody else can take the one offered to no account; the administrator revokes it
    stranger = _client(app, "stranger")
    refused = _action(
        stranger, f"/account/organisations/{decoy.public_id}/confirm", "/account/organisations"
    )
    assert refused.status_code == 404
    [still] = [row for row in _members(app, org_id) if row.public_id == decoy.public_id]
    assert still.status is AuthorisationStatus.PENDING
    revoked = _action(
        rep, f"/org/{org_id}/authorisations/{decoy.public_id}/revoke", f"/org/{org_id}"
    )
    assert revoked.status_code == 302
    # the unknown username is audited as a refusal, without the username
    with app.app_context():
        events = [e for e in audit_events(app, "org.authorise") if e.outcome == "failure"]
    assert [e.details for e in events] == [
        {"reason": "unknown_account", "authorisation": decoy.public_id}
    ]
    assert "nobody-here" not in json.dumps([e.details for e in events])


def _row_of(page: str, public_id: str) -> str:
    """The members table's row of this authorisation (its short id in the first cell)."""
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.DOTALL):
        if public_id[:8] in row:
            return str(re.sub(r'name="csrf_token"[^>]*>', "", row))
    raise AssertionError(f"no row for {public_id}")


@pytest.mark.parametrize(
    "fields",
    [
        {"starts_on": "2099-01-10", "ends_on": "2099-01-01"},
        {"scope": "named", "clients": ""},
        {"role": "legal_representative"},
    ],
)
def test_a_bad_invitation_by_username_is_refused_alike_for_any_username(
    app: Flask, people: None, fields: dict[str, str]
) -> None:
    org_id = _claim(app)
    rep = _client(app, "rep")
    known = _add_agent(rep, org_id, invitee="agent", **fields)
    unknown = _add_agent(rep, org_id, invitee="nobody-here", **fields)
    assert known.status_code == unknown.status_code
    assert known.status_code in {400, 403}
    assert 'value="nobody-here"' in body(unknown)
    assert _normalised(body(known)) == _normalised(body(unknown))
    assert len(_members(app, org_id)) == 1
