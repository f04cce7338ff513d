"""Acting for an organisation in the protocol: the picker, the scope ``enterprise`` and
``org_hint``, the ``org`` and ``act`` claims, an intermediary's separate
authorisations, revocation and expiry at the next token, refresh, userinfo and
introspection, and clients that require an organisation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from accounts.container import Accounts
from accounts.organisations.authorisations import Scope
from accounts.organisations.models import Organisation
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_authorisations import OTHER_NAME, REP_ID, REP_NAME, _registry
from tests.accounts.test_organisations import ACME_CODE, ACME_NAME, OTHER_CODE
from tests.accounts.test_realname import audit_events, load_registry
from tests.oauth.test_basic_op import claims_of
from tests.oauth_support import RP, Flow, query_of, register
from tests.support import create_user, csrf_token, sign_in
from tests.support import text as body

SCOPE = "openid profile enterprise offline_access"
AGENT = "agent"


# --- set-up -----------------------------------------------------------------------------


@pytest.fixture
def orgs(app: Flask) -> None:
    """Two enterprises whose legal representative is ``rep``, and ``agent`` (an
    intermediary's employee) with no authorisation yet."""
    _registry(app)
    load_registry(app, f"number,name\n{REP_ID},{REP_NAME}\n", kind="person")
    rep = create_user(app, "rep")
    create_user(app, AGENT)
    with app.app_context():
        accounts = Accounts.of()
        user = accounts.account_service().get(rep.id)
        assert user is not None
        accounts.realname_service().verify_with_registry(user, REP_NAME, REP_ID)
        service = accounts.authorisation_service()
        service.claim(user, ACME_CODE, ACME_NAME)
        service.claim(user, OTHER_CODE, OTHER_NAME)


def grant(
    app: Flask,
    code: str = ACME_CODE,
    *,
    scope: Scope | None = None,
    ends_in: int | None = None,
    confirm: bool = True,
) -> str:
    """``rep`` authorises ``agent`` for the organisation; returns the authorisation id."""
    with app.app_context():
        accounts = Accounts.of()
        people = accounts.account_service()
        rep, agent = people.find_by_username("rep"), people.find_by_username(AGENT)
        assert rep is not None
        assert agent is not None
        organisation = accounts.organisation_service().find(code)
        assert organisation is not None
        service = accounts.authorisation_service()
        ends_at = None
        if ends_in is not None:
            ends_at = accounts.core.clock.now() + timedelta(seconds=ends_in)
        offered = service.invite(
            rep, organisation, user=agent, scope=scope or Scope(), ends_at=ends_at
        )
        if confirm:
            service.confirm(agent, offered.public_id)
        return offered.public_id


def revoke(app: Flask, public_id: str) -> None:
    with app.app_context():
        accounts = Accounts.of()
        rep = accounts.account_service().find_by_username("rep")
        assert rep is not None
        accounts.authorisation_service().revoke(rep, public_id)


def authorisation_of(app: Flask, username: str, code: str) -> str:
    """The public id of ``username``'s live authorisation for the organisation."""
    with app.app_context():
        accounts = Accounts.of()
        user = accounts.account_service().find_by_username(username)
        organisation = accounts.organisation_service().find(code)
        assert user is not None
        assert organisation is not None
        for row in accounts.authorisation_service().live_for(user):
            if row.organisation_id == organisation.id:
                return row.public_id
    raise AssertionError("no such authorisation")


def organisation_id(app: Flask, code: str) -> str:
    with app.app_context():
        found = Accounts.of().organisation_service().find(code)
        assert isinstance(found, Organisation)
        return found.public_id


@pytest.fixture
def rp(app: Flask) -> RP:
    _, secret = register(app, "rp", scope=SCOPE, first_party=True)
    return RP(app, "rp", secret)


@pytest.fixture
def browser(client: FlaskClient, orgs: None) -> FlaskClient:
    sign_in(client, AGENT)
    return client


# --- the browser ------------------------------------------------------------------------


def follow(browser: FlaskClient, response: TestResponse) -> TestResponse:
    """Follow redirects inside the provider until a page or the client is reached."""
    for _ in range(8):
        location = response.headers.get("Location", "")
        if response.status_code != 302 or location.startswith("https://rp."):
            return response
        response = browser.get(location)
    return response


def picker_choices(page: TestResponse) -> list[str]:
    """The values of the picker's buttons, in order (``self`` included)."""
    return re.findall(r'name="authorisation" value="([^"]+)"', body(page))


def choose(browser: FlaskClient, page: TestResponse, choice: str) -> TestResponse:
    html = body(page)
    rid = re.search(r'name="rid" value="([^"]*)"', html)
    assert rid is not None, html[:500]
    return browser.post(
        "/account/act-for",
        data={"csrf_token": csrf_token(html), "rid": rid.group(1), "authorisation": choice},
    )


def callback(response: TestResponse) -> dict[str, str]:
    assert response.status_code == 302, body(response)[:600]
    location = response.headers["Location"]
    assert location.startswith("https://rp."), location
    return query_of(location)


def redeem(browser: FlaskClient, rp: RP, params: dict[str, str], flow: Flow) -> dict[str, Any]:
    assert "code" in params, params
    response = rp.redeem(browser, params["code"], flow)
    assert response.status_code == 200, body(response)
    tokens: dict[str, Any] = response.get_json()
    return tokens


def tokens_acting_for(
    browser: FlaskClient, rp: RP, choice: str | None, scope: str = SCOPE, **extra: str
) -> dict[str, Any]:
    """One authorization: choose ``choice`` on the picker (None: the picker must not
    be shown), redeem the code."""
    flow = Flow()
    response = follow(browser, rp.start(browser, flow, scope, **extra))
    if choice is not None:
        assert urlsplit(response.request.url).path == "/account/act-for", body(response)[:400]
        response = follow(browser, choose(browser, response, choice))
    return redeem(browser, rp, callback(response), flow)


def userinfo(browser: FlaskClient, access_token: str) -> TestResponse:
    return browser.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def refresh(browser: FlaskClient, rp: RP, refresh_token: str) -> TestResponse:
    return rp.token_request(
        browser, {"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def introspect(browser: FlaskClient, rp: RP, token: str) -> dict[str, Any]:
    response = rp.post(browser, "/introspect", {"token": token})
    assert response.status_code == 200, body(response)
    answer: dict[str, Any] = response.get_json()
    return answer


def personal_sub(app: Flask) -> str:
    with app.app_context():
        agent = Accounts.of().account_service().find_by_username(AGENT)
        assert agent is not None
        return agent.public_id


# --- the picker -------------------------------------------------------------------------


def test_the_picker_lists_only_live_authorisations(
    app: Flask, browser: FlaskClient, clock: FrozenClock
) -> None:
    live = grant(app, ACME_CODE)
    grant(app, OTHER_CODE, confirm=False)  # offered, not confirmed
    expiring = grant(app, OTHER_CODE, ends_in=120)
    revoked = grant(app, OTHER_CODE)
    revoke(app, revoked)
    clock.advance(121)
    page = browser.get("/account/act-for")
    assert page.status_code == 200
    assert picker_choices(page) == [live, "self"]
    assert ACME_NAME in body(page)
    assert OTHER_NAME not in body(page)
    assert ACME_CODE not in body(page)  # the code is shown masked
    assert expiring not in body(page)


def test_choosing_sets_the_session_and_a_forged_choice_is_refused(
    app: Flask, browser: FlaskClient
) -> None:
    mine = grant(app, ACME_CODE)
    theirs = authorisation_of(app, "rep", OTHER_CODE)  # the legal representative's own
    ended = grant(app, OTHER_CODE)
    revoke(app, ended)
    page = browser.get("/account/act-for")
    for forged in (theirs, ended, "not-an-id", "x" * 5000):
        response = choose(browser, page, forged)
        assert response.status_code == 400, forged
        assert "cannot act for this organisation" in body(response)
    refusals = [e for e in audit_events(app, "org.act_for") if e.outcome == "failure"]
    assert len(refusals) == 4
    assert "(now)" not in body(browser.get("/account/act-for"))

    response = choose(browser, page, mine)
    assert response.status_code == 302
    assert "(now)" in body(browser.get("/account/act-for"))
    assert [e.outcome for e in audit_events(app, "org.act_for")][-1] == "success"
    with browser.session_transaction() as session:
        assert session["act"] == {"org": organisation_id(app, ACME_CODE), "authz": mine}
    choose(browser, page, "self")
    with browser.session_transaction() as session:
        assert "act" not in session


def test_the_picker_needs_a_sign_in_and_a_csrf_token(
    client: FlaskClient, browser: FlaskClient, app: Flask
) -> None:
    mine = grant(app, ACME_CODE)
    response = browser.post("/account/act-for", data={"authorisation": mine})
    assert response.status_code == 400  # no CSRF token
    with browser.session_transaction() as session:
        assert "act" not in session
    anonymous = app.test_client()
    assert anonymous.get("/account/act-for").headers["Location"].startswith("/login")


# --- the claims -------------------------------------------------------------------------


def test_org_and_act_in_the_id_token_and_userinfo(
    app: Flask, browser: FlaskClient, rp: RP, clock: FrozenClock
) -> None:
    authorisation = grant(app, ACME_CODE, ends_in=86400)
    expires = int((clock.now() + timedelta(seconds=86400)).timestamp())
    tokens = tokens_acting_for(browser, rp, authorisation)
    assert "enterprise" in tokens["scope"].split()
    _, id_token = claims_of(app, tokens["id_token"])
    org = {
        "uscc": ACME_CODE,
        "name": ACME_NAME,
        "type": "enterprise",
        "level": 3,
        "role": "agent",
        "authorisation": authorisation,
        "authorisation_expires": expires,
    }
    sub = personal_sub(app)
    assert id_token["sub"] == sub  # the person stays the subject
    assert id_token["org"] == org
    assert id_token["act"] == {"sub": sub}
    info = userinfo(browser, tokens["access_token"])
    assert info.status_code == 200
    assert info.get_json()["org"] == org
    assert info.get_json()["act"] == {"sub": sub}
    _, access = claims_of(app, tokens["access_token"])
    assert access["org"]["authorisation"] == authorisation
    answer = introspect(browser, rp, tokens["access_token"])
    assert answer["active"] is True
    assert answer["org"] == org
    assert answer["act"] == {"sub": sub}


def test_the_act_sub_is_the_pairwise_sub_for_a_pairwise_client(
    app: Flask, browser: FlaskClient
) -> None:
    _, secret = register(app, "pw", scope=SCOPE, first_party=True, subject_type="pairwise")
    pairwise = RP(app, "pw", secret)
    tokens = tokens_acting_for(browser, pairwise, grant(app, ACME_CODE))
    _, id_token = claims_of(app, tokens["id_token"])
    assert id_token["sub"] != personal_sub(app)
    assert id_token["act"] == {"sub": id_token["sub"]}


def test_the_legal_representative_has_no_expiry(
    app: Flask, client: FlaskClient, orgs: None
) -> None:
    _, secret = register(app, "rp", scope=SCOPE, first_party=True)
    rp = RP(app, "rp", secret)
    sign_in(client, "rep")
    mine = authorisation_of(app, "rep", ACME_CODE)
    tokens = tokens_acting_for(client, rp, mine)
    _, id_token = claims_of(app, tokens["id_token"])
    assert id_token["org"]["role"] == "legal_representative"
    assert id_token["org"]["authorisation_expires"] is None


def test_a_personal_sign_in_carries_no_org(app: Flask, browser: FlaskClient, rp: RP) -> None:
    grant(app, ACME_CODE)
    tokens = tokens_acting_for(browser, rp, "self")  # declined: for myself
    assert "enterprise" not in tokens["scope"].split()
    _, id_token = claims_of(app, tokens["id_token"])
    assert "org" not in id_token
    assert "act" not in id_token
    assert "org" not in userinfo(browser, tokens["access_token"]).get_json()


def test_a_client_that_does_not_ask_gets_no_org(app: Flask, browser: FlaskClient, rp: RP) -> None:
    mine = grant(app, ACME_CODE)
    tokens_acting_for(browser, rp, mine)  # the session acts for ACME now
    tokens = tokens_acting_for(browser, rp, None, scope="openid profile")
    _, id_token = claims_of(app, tokens["id_token"])
    assert "org" not in id_token


def test_the_session_choice_is_reused_and_prompt_none_works_with_it(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    mine = grant(app, ACME_CODE)
    tokens_acting_for(browser, rp, mine)
    again = tokens_acting_for(browser, rp, None, prompt="none")  # no picker this time
    _, id_token = claims_of(app, again["id_token"])
    assert id_token["org"]["authorisation"] == mine


def test_prompt_none_without_an_organisation_context(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    grant(app, ACME_CODE)
    flow = Flow()
    params = callback(rp.start(browser, flow, SCOPE, prompt="none"))
    assert params["error"] == "interaction_required"
    assert params["state"] == flow.state
    assert "code" not in params


def test_an_authorisation_outside_its_scope_is_not_offered_nor_accepted(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    narrow = grant(app, ACME_CODE, scope=Scope(all_services=False, clients=("tax",)))
    flow = Flow()
    page = follow(browser, rp.start(browser, flow, SCOPE))
    assert picker_choices(page) == ["self"]
    assert "None of your authorisations covers this service" in body(page)
    response = choose(browser, page, narrow)  # forged: the form offered no such button
    assert response.status_code == 400
    # set in the session for another service, it does not count for this one
    choose(browser, browser.get("/account/act-for"), narrow)
    assert picker_choices(follow(browser, rp.start(browser, Flow(), SCOPE))) == ["self"]


def test_a_bad_org_hint_is_refused(app: Flask, browser: FlaskClient, rp: RP) -> None:
    for hint in ("9111000060003734", "x" * 100, "登"):
        params = callback(rp.start(browser, Flow(), SCOPE, org_hint=hint))
        assert params["error"] == "invalid_request"
        assert "org_hint" in params["error_description"]


# --- an intermediary, two enterprises ---------------------------------------------------


def test_an_intermediary_acts_for_two_enterprises_without_mixing_them(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    acme, other = grant(app, ACME_CODE), grant(app, OTHER_CODE)
    first = tokens_acting_for(browser, rp, acme)
    # acting for ACME, the client names the other enterprise: the picker again, with the
    # hinted one first
    flow = Flow()
    page = follow(browser, rp.start(browser, flow, SCOPE, org_hint=OTHER_CODE))
    assert picker_choices(page) == [other, acme, "self"]
    second = redeem(browser, rp, callback(follow(browser, choose(browser, page, other))), flow)

    def org_of(tokens: dict[str, Any]) -> dict[str, Any]:
        _, claims = claims_of(app, tokens["id_token"])
        org: dict[str, Any] = claims["org"]
        return org

    assert (org_of(first)["uscc"], org_of(first)["authorisation"]) == (ACME_CODE, acme)
    assert (org_of(second)["uscc"], org_of(second)["authorisation"]) == (OTHER_CODE, other)
    assert userinfo(browser, first["access_token"]).get_json()["org"]["uscc"] == ACME_CODE
    assert userinfo(browser, second["access_token"]).get_json()["org"]["uscc"] == OTHER_CODE
    # the session acts for the other one now; the first grant still refreshes as ACME
    renewed = refresh(browser, rp, first["refresh_token"])
    assert renewed.status_code == 200, body(renewed)
    assert org_of(renewed.get_json())["uscc"] == ACME_CODE
    # revoking ACME's authorisation ends the first grant only
    revoke(app, acme)
    assert refresh(browser, rp, renewed.get_json()["refresh_token"]).status_code == 400
    assert userinfo(browser, second["access_token"]).status_code == 200
    assert refresh(browser, rp, second["refresh_token"]).status_code == 200


# --- revocation and expiry --------------------------------------------------------------


@pytest.mark.parametrize("end", ["revoked", "expired"])
def test_an_ended_authorisation_ends_refresh_userinfo_and_introspection(
    app: Flask, browser: FlaskClient, rp: RP, clock: FrozenClock, end: str
) -> None:
    authorisation = grant(app, ACME_CODE, ends_in=120)
    tokens = tokens_acting_for(browser, rp, authorisation)
    assert introspect(browser, rp, tokens["access_token"])["active"] is True
    if end == "revoked":
        revoke(app, authorisation)
    else:
        clock.advance(121)  # the access token itself is still unexpired (600 s)
    assert introspect(browser, rp, tokens["access_token"]) == {"active": False}
    info = userinfo(browser, tokens["access_token"])
    assert info.status_code == 401
    assert info.get_json()["error"] == "invalid_token"
    refused = refresh(browser, rp, tokens["refresh_token"])
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_grant"
    refusals = audit_events(app, "org.act_refused")
    assert refusals
    assert all(event.outcome == "failure" for event in refusals)


def test_each_check_alone_refuses_an_ended_authorisation(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    """Userinfo and refresh ask the authorisation themselves (not only introspection)."""
    first, second = grant(app, ACME_CODE), grant(app, OTHER_CODE)
    one = tokens_acting_for(browser, rp, first)
    two = tokens_acting_for(browser, rp, second, org_hint=OTHER_CODE)
    revoke(app, first)
    revoke(app, second)
    info = userinfo(browser, one["access_token"])
    assert (info.status_code, info.get_json()["error"]) == (401, "invalid_token")
    refused = refresh(browser, rp, two["refresh_token"])
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_grant")


def test_a_code_redeemed_after_the_revocation_is_refused(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    authorisation = grant(app, ACME_CODE)
    flow = Flow()
    page = follow(browser, rp.start(browser, flow, SCOPE))
    params = callback(follow(browser, choose(browser, page, authorisation)))
    revoke(app, authorisation)
    response = rp.redeem(browser, params["code"], flow)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_an_ended_authorisation_in_the_session_sends_back_to_the_picker(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    authorisation = grant(app, ACME_CODE)
    tokens_acting_for(browser, rp, authorisation)
    revoke(app, authorisation)
    params = callback(rp.start(browser, Flow(), SCOPE, prompt="none"))
    assert params["error"] == "interaction_required"


# --- clients that require an organisation -----------------------------------------------


@pytest.fixture
def org_rp(app: Flask) -> RP:
    _, secret = register(
        app, "org-rp", scope="openid profile offline_access", first_party=True, require_org=True
    )
    return RP(app, "org-rp", secret)


def test_a_client_requiring_an_organisation_sends_to_the_picker(
    app: Flask, browser: FlaskClient, org_rp: RP
) -> None:
    mine = grant(app, ACME_CODE)
    tokens = tokens_acting_for(browser, org_rp, mine, scope="openid profile offline_access")
    _, id_token = claims_of(app, tokens["id_token"])
    assert id_token["org"]["authorisation"] == mine


def test_a_client_requiring_an_organisation_never_gets_a_personal_token(
    app: Flask, browser: FlaskClient, org_rp: RP
) -> None:
    # nobody to act for: the picker offers only to go back, and that is access_denied
    flow = Flow()
    page = follow(browser, org_rp.start(browser, flow, "openid profile"))
    assert picker_choices(page) == ["self"]
    assert "Cancel and return to the service" in body(page)
    params = callback(follow(browser, choose(browser, page, "self")))
    assert params["error"] == "access_denied"
    assert "code" not in params
    # prompt=none: an error, never a personal code
    params = callback(org_rp.start(browser, Flow(), "openid profile", prompt="none"))
    assert params["error"] == "interaction_required"


def test_the_token_endpoint_refuses_personal_grants_to_such_a_client(
    app: Flask, browser: FlaskClient, rp: RP
) -> None:
    """A client switched to ``require_org`` after personal codes and grants were made
    gets neither tokens for the code nor a refresh."""
    personal = tokens_acting_for(browser, rp, "self")
    flow = Flow()
    page = follow(browser, rp.start(browser, flow, SCOPE))
    params = callback(follow(browser, choose(browser, page, "self")))
    with app.app_context():
        OAuthRuntime.of().clients.update(db(), "rp", require_org=True)
    response = rp.redeem(browser, params["code"], flow)
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_grant")
    refused = refresh(browser, rp, personal["refresh_token"])
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_grant")


# --- discovery and registration ---------------------------------------------------------


def test_discovery_lists_the_scope_and_the_claims(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert "enterprise" in metadata["scopes_supported"]
    assert {"org", "act"} <= set(metadata["claims_supported"])


def test_require_org_is_registered_and_updated(app: Flask) -> None:
    created, _ = register(app, "needs-org", require_org=True)
    assert created.require_org
    assert created.public_json()["require_org"] is True
    with app.app_context():
        registry = OAuthRuntime.of().clients
        assert not registry.update(db(), "needs-org", require_org=False).require_org
        assert registry.get("needs-org") is not None
        assert not registry.get("needs-org").require_org  # type: ignore[union-attr]
