"""The account page's connected services: what a user consented to, and withdrawing it.

Withdrawing access forgets the consent (the next authorization asks again) and ends
every grant of the service: its access tokens are inactive at introspection and its
refresh tokens give ``invalid_grant`` (RFC 7009 2.1 describes the same for a revoked
refresh token). It needs this session's CSRF token, and touches no other user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.models import Consent
from tests.oauth_support import RP, Flow, query_of, register
from tests.support import create_user, csrf_token, sign_in
from tests.support import text as body

OFFLINE = "openid offline_access"
TAX_NAME = "Dongguan Tax Service"
_SERVICE = re.compile(r'name="client_id" value="([^"]+)"')


@dataclass
class Issued:
    access_token: str
    refresh_token: str


def third_party(app: Flask, client_id: str = "tax", name: str = TAX_NAME) -> RP:
    redirect_uri = f"https://{client_id}.example.gov.cn/callback"
    _info, secret = register(app, client_id, name=name, redirect_uris=[redirect_uri])
    return RP(app, client_id, secret, redirect_uri=redirect_uri)


def issued(browser: FlaskClient, rp: RP, **kwargs: Any) -> Issued:
    tokens, _flow = rp.tokens(browser, scope=OFFLINE, **kwargs)
    assert set(tokens["scope"].split()) == {"openid", "offline_access"}
    return Issued(tokens["access_token"], tokens["refresh_token"])


def listed(browser: FlaskClient) -> list[str]:
    """The client ids the services page offers to withdraw."""
    page = browser.get("/account/services")
    assert page.status_code == 200
    return _SERVICE.findall(body(page))


def withdraw(browser: FlaskClient, client_id: str) -> TestResponse:
    page = browser.get("/account/services")
    return browser.post(
        "/account/services/revoke",
        data={"csrf_token": csrf_token(body(page)), "client_id": client_id},
    )


def introspect(browser: FlaskClient, rp: RP, token: str) -> dict[str, Any]:
    response = rp.post(browser, "/introspect", {"token": token})
    assert response.status_code == 200
    result: dict[str, Any] = response.get_json()
    return result


def refresh(browser: FlaskClient, rp: RP, token: str) -> TestResponse:
    return rp.token_request(browser, {"grant_type": "refresh_token", "refresh_token": token})


def userinfo_status(browser: FlaskClient, token: str) -> int:
    return browser.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code


def asks_for_consent(browser: FlaskClient, rp: RP) -> bool:
    """Whether an authorization request of the signed-in user stops at the consent page
    (else it must go straight back to the client with a code)."""
    response = rp.start(browser, Flow(), OFFLINE)
    if response.status_code == 200:
        assert 'name="consent"' in body(response)
        return True
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(rp.redirect_uri + "?"), location
    assert "code" in query_of(location)
    return False


def assert_alive(browser: FlaskClient, rp: RP, tokens: Issued) -> Issued:
    """The tokens work (the refresh token is rotated: the new pair is returned)."""
    assert introspect(browser, rp, tokens.access_token)["active"] is True
    assert introspect(browser, rp, tokens.refresh_token)["active"] is True
    assert userinfo_status(browser, tokens.access_token) == 200
    response = refresh(browser, rp, tokens.refresh_token)
    assert response.status_code == 200, body(response)
    new = response.get_json()
    return Issued(new["access_token"], new["refresh_token"])


def assert_dead(browser: FlaskClient, rp: RP, tokens: Issued) -> None:
    assert introspect(browser, rp, tokens.access_token) == {"active": False}
    assert introspect(browser, rp, tokens.refresh_token) == {"active": False}
    assert userinfo_status(browser, tokens.access_token) == 401
    response = refresh(browser, rp, tokens.refresh_token)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def consents(app: Flask) -> list[tuple[int, str, str]]:
    with app.app_context():
        rows = db().scalars(select(Consent).order_by(Consent.user_id, Consent.client_id)).all()
        return [(row.user_id, row.client_id, row.scope) for row in rows]


@pytest.fixture
def alice(app: Flask) -> None:
    create_user(app, "alice")


def test_a_consented_service_is_listed(app: Flask, client: FlaskClient, alice: None) -> None:
    rp = third_party(app)
    first_party_rp = RP(app, "portal", register(app, "portal", first_party=True)[1])
    sign_in(client)
    assert listed(client) == []
    assert "No service has access" in body(client.get("/account/services"))
    issued(client, rp)
    assert listed(client) == ["tax"]
    # a first-party service needs no consent, but once it keeps access while the user
    # is away (offline_access) the user can stop it here too
    first_party_rp.tokens(client, scope="openid")
    assert listed(client) == ["tax"]
    portal = issued(client, first_party_rp)
    assert listed(client) == ["tax", "portal"]
    withdraw = client.get("/account/services")
    client.post(
        "/account/services/revoke",
        data={"csrf_token": csrf_token(body(withdraw)), "client_id": "portal"},
    )
    assert listed(client) == ["tax"]
    refreshed = first_party_rp.token_request(
        client, {"grant_type": "refresh_token", "refresh_token": portal.refresh_token}
    )
    assert refreshed.get_json()["error"] == "invalid_grant"
    html = body(client.get("/account/services"))
    assert TAX_NAME in html
    assert "offline_access" in html


def test_the_services_page_needs_a_session(app: Flask, client: FlaskClient) -> None:
    response = client.get("/account/services")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    response = client.post("/account/services/revoke", data={"client_id": "tax"})
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")


def test_withdrawing_access_asks_again_and_kills_the_tokens_issued_before(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    rp = third_party(app)
    other = third_party(app, "health", "Dongguan Health Service")
    first = issued(client, rp)
    second = issued(client, rp, password="not the password: single sign-on")  # second grant
    kept = issued(client, other)
    first = assert_alive(client, rp, first)
    assert not asks_for_consent(client, rp)
    assert sorted(listed(client)) == ["health", "tax"]

    response = withdraw(client, "tax")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/services"

    assert listed(client) == ["health"]
    assert asks_for_consent(client, rp)
    assert_dead(client, rp, first)
    assert_dead(client, rp, second)
    assert_alive(client, other, kept)  # another service of the same user: untouched
    assert not asks_for_consent(client, other)
    assert client.get("/account").status_code == 200  # still signed in
    with app.app_context():
        events = db().scalars(select(AuditEvent).where(AuditEvent.event == "consent.withdraw"))
        assert [event.details for event in events] == [{"client_id": "tax"}]


def test_after_withdrawing_a_new_consent_gives_working_tokens(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    rp = third_party(app)
    old = issued(client, rp)
    withdraw(client, "tax")
    new = issued(client, rp)  # consents again on the way
    assert listed(client) == ["tax"]
    assert_alive(client, rp, new)
    assert_dead(client, rp, old)


def test_another_users_consent_is_unaffected(app: Flask, client: FlaskClient, alice: None) -> None:
    create_user(app, "bob")
    rp = third_party(app)
    bobs_browser = app.test_client()
    alices = issued(client, rp)
    bobs = issued(bobs_browser, rp, username="bob")
    withdraw(client, "tax")
    assert_dead(client, rp, alices)
    assert listed(bobs_browser) == ["tax"]
    assert not asks_for_consent(bobs_browser, rp)
    assert_alive(bobs_browser, rp, bobs)
    # nor can bob withdraw anything of alice's: his form only ever names his own consent
    withdraw(bobs_browser, "tax")
    assert listed(bobs_browser) == []
    assert consents(app) == []


@pytest.mark.parametrize("csrf", ["missing", "from-another-session", "garbage"])
def test_without_this_sessions_csrf_token_nothing_is_withdrawn(
    app: Flask, client: FlaskClient, alice: None, csrf: str
) -> None:
    """A cross-site POST (the user visits the attacker's page) withdraws nothing."""
    rp = third_party(app)
    tokens = issued(client, rp)
    data = {"client_id": "tax"}
    if csrf == "from-another-session":
        create_user(app, "mallory")
        attacker = app.test_client()
        sign_in(attacker, "mallory")
        data["csrf_token"] = csrf_token(body(attacker.get("/logout")))  # mallory's own
    elif csrf == "garbage":
        data["csrf_token"] = "IjAwMDAi.forged.token"
    before = consents(app)
    response = client.post("/account/services/revoke", data=data)
    assert response.status_code in (302, 400)
    assert consents(app) == before
    assert listed(client) == ["tax"]
    assert not asks_for_consent(client, rp)
    assert_alive(client, rp, tokens)


def test_a_code_issued_before_withdrawing_is_not_redeemable_after(
    app: Flask, client: FlaskClient, clock: FrozenClock, alice: None
) -> None:
    """Withdrawing "ends every grant of the service": an authorization code that was
    issued but not yet redeemed is a grant too. Redeemed after the withdrawal it must
    not give the service a fresh 30-day refresh token."""
    rp = third_party(app)
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow, scope=OFFLINE)
    clock.advance(5)
    withdraw(client, "tax")
    assert listed(client) == []
    response = rp.redeem(client, callback["code"], flow)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_grant"
