"""With an enterprise certificate alone the subject is the organisation (issue 12).

The certificate proves the organisation, not who holds its key: the tokens' ``sub`` is
derived from the organisation's public id (public or pairwise), they carry ``org`` and
no ``act``, no personal claim of the account the key is bound to is released, and
refresh, userinfo, introspection, token exchange and back-channel logout all name the
same subject. The same account signing in with its password and acting for the same
organisation stays the subject, with ``act``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from accounts.container import Accounts
from idp.core.principal import ActingFor
from idp.core.signin import Proof
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_realname import load_registry
from tests.oauth.test_acting_for import (
    callback,
    follow,
    introspect,
    picker_choices,
    redeem,
    refresh,
    tokens_acting_for,
    userinfo,
)
from tests.oauth.test_basic_op import claims_of
from tests.oauth.test_logout import local_logout, owed
from tests.oauth.test_token_exchange import exchange
from tests.oauth_support import RP, Flow, register
from tests.pki.certs import Issued
from tests.pki.test_certificate_signin import (
    USCC,
    create_account_for_pending,
    enterprise,
    post_signed,
)
from tests.support import sign_in

SCOPE = "openid profile enterprise offline_access"
NAME = "示例科技有限公司"


@pytest.fixture
def cert(app: Flask, city_ca: Issued) -> Issued:
    """An enterprise certificate of a registered enterprise; its first use created the
    account ``clerk``, which now administers the organisation."""
    load_registry(app, f"number,name\n{USCC},{NAME}\n", kind="organisation")
    issued = enterprise(city_ca)
    first = app.test_client()
    post_signed(first, issued)
    assert create_account_for_pending(first, "clerk").status_code == 302
    return issued


@pytest.fixture
def rp(app: Flask) -> RP:
    _, secret = register(app, "rp", scope=SCOPE, first_party=True)
    return RP(app, "rp", secret)


def key_holder(app: Flask, cert: Issued) -> FlaskClient:
    """A browser signed in with the enterprise certificate alone."""
    browser = app.test_client()
    assert post_signed(browser, cert).status_code == 302
    return browser


def ids(app: Flask) -> tuple[str, str]:
    """(the organisation's public id, the clerk's public id)."""
    with app.app_context():
        accounts = Accounts.of()
        organisation = accounts.organisation_service().find(USCC)
        clerk = accounts.account_service().find_by_username("clerk")
        assert organisation is not None
        assert clerk is not None
        return organisation.public_id, clerk.public_id


def certificate_tokens(browser: FlaskClient, rp: RP, scope: str = SCOPE) -> dict[str, Any]:
    """One authorization in the certificate's session: no picker (the session already
    acts for the organisation), the code redeemed."""
    flow = Flow()
    response = follow(browser, rp.start(browser, flow, scope))
    return redeem(browser, rp, callback(response), flow)


def test_the_organisation_is_the_subject_of_every_answer(app: Flask, cert: Issued, rp: RP) -> None:
    organisation, clerk = ids(app)
    browser = key_holder(app, cert)
    tokens = certificate_tokens(browser, rp)
    _, id_token = claims_of(app, tokens["id_token"])
    assert id_token["sub"] == organisation
    assert id_token["org"]["uscc"] == USCC
    assert id_token["org"]["level"] == 5
    assert id_token["org"]["role"] == "administrator"
    assert "act" not in id_token  # no person proved who holds the key
    assert "preferred_username" not in id_token
    _, access = claims_of(app, tokens["access_token"])
    assert access["sub"] == organisation
    assert "act" not in access
    info = userinfo(browser, tokens["access_token"]).get_json()
    assert info["sub"] == organisation
    assert info["org"]["uscc"] == USCC
    assert "act" not in info
    assert "preferred_username" not in info  # nothing of the clerk's account
    answer = introspect(browser, rp, tokens["access_token"])
    assert answer["active"] is True
    assert answer["sub"] == organisation
    refreshed = refresh(browser, rp, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    _, again = claims_of(app, refreshed.get_json()["id_token"])
    assert again["sub"] == organisation
    assert "act" not in again
    assert clerk not in (id_token["sub"], info["sub"], answer["sub"], again["sub"])


def test_a_pairwise_client_gets_the_organisations_pairwise_subject(
    app: Flask, cert: Issued
) -> None:
    info, secret = register(app, "pw", scope=SCOPE, first_party=True, subject_type="pairwise")
    pairwise = RP(app, "pw", secret)
    organisation, clerk = ids(app)
    tokens = certificate_tokens(key_holder(app, cert), pairwise)
    _, id_token = claims_of(app, tokens["id_token"])
    with app.app_context():
        service = OAuthRuntime.of().tokens()
        assert id_token["sub"] == service.subject(info, organisation)
        assert id_token["sub"] != service.subject(info, clerk)
    assert id_token["sub"] != organisation


def test_the_same_account_signed_in_with_its_password_stays_the_subject(
    app: Flask, cert: Issued, rp: RP, client: FlaskClient
) -> None:
    """The clerk's password sign-in, acting for the organisation through the picker:
    the person is the subject and ``act`` names them."""
    organisation, clerk = ids(app)
    sign_in(client, "clerk")
    flow = Flow()
    page = follow(client, rp.start(client, flow, SCOPE))
    (choice,) = [value for value in picker_choices(page) if value != "self"]
    tokens = tokens_acting_for(client, rp, choice)
    _, id_token = claims_of(app, tokens["id_token"])
    assert id_token["sub"] == clerk
    assert id_token["act"] == {"sub": clerk}
    assert id_token["org"]["uscc"] == USCC
    assert organisation != clerk


def test_a_client_that_does_not_ask_for_the_organisation_gets_the_account(
    app: Flask, cert: Issued
) -> None:
    """Without ``enterprise`` a plain client gets a personal token, as for any sign-in
    (the account the certificate is bound to)."""
    _, secret = register(app, "plain", scope="openid profile", first_party=True)
    plain = RP(app, "plain", secret)
    _organisation, clerk = ids(app)
    tokens = certificate_tokens(key_holder(app, cert), plain, "openid profile")
    _, id_token = claims_of(app, tokens["id_token"])
    assert id_token["sub"] == clerk
    assert "org" not in id_token


def test_back_channel_logout_names_the_subject_each_service_was_given(
    app: Flask, cert: Issued
) -> None:
    organisation, clerk = ids(app)
    register(
        app, "org-rp", scope=SCOPE, first_party=True,
        backchannel_logout_uri="https://org-rp.example/bcl",
    )  # fmt: skip
    register(
        app, "person-rp", scope="openid profile", first_party=True,
        backchannel_logout_uri="https://person-rp.example/bcl",
    )  # fmt: skip
    browser = key_holder(app, cert)
    org_rp = RP(app, "org-rp", None)
    person_rp = RP(app, "person-rp", None)
    for rp, scope in ((org_rp, SCOPE), (person_rp, "openid profile")):
        flow = Flow()
        assert "code" in callback(follow(browser, rp.start(browser, flow, scope)))
    local_logout(browser)
    subjects = {delivery.client_id: delivery.subject for delivery in owed(app)}
    assert subjects == {"org-rp": organisation, "person-rp": clerk}


def test_a_token_exchange_keeps_the_organisation_as_the_subject(app: Flask, cert: Issued) -> None:
    """The downstream service sees the organisation (its own ``sub`` for it), the ``org``
    claim, and the exchanging service as the only actor."""
    _, down_secret = register(
        app, "down", grant_types=["client_credentials"], scope="api.down", redirect_uris=[],
        subject_type="pairwise",
    )  # fmt: skip
    _, secret = register(
        app, "front", scope=f"{SCOPE} api.down", first_party=True, exchange_audiences=["down"]
    )
    front = RP(app, "front", secret)
    organisation, _clerk = ids(app)
    browser = key_holder(app, cert)
    tokens = certificate_tokens(browser, front, f"{SCOPE} api.down")
    answer = exchange(front, browser, tokens["access_token"], audience="down")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    _, exchanged = claims_of(app, answer.get_json()["access_token"])
    with app.app_context():
        down = OAuthRuntime.of().clients.get("down")
        assert down is not None
        assert exchanged["sub"] == OAuthRuntime.of().tokens().subject(down, organisation)
    assert exchanged["act"] == {"sub": "front"}
    assert exchanged["org"]["uscc"] == USCC
    seen = introspect(browser, RP(app, "down", down_secret), answer.get_json()["access_token"])
    assert seen["active"] is True
    assert seen["sub"] == exchanged["sub"]


def test_the_proof_keeps_the_organisation_while_a_second_factor_is_pending() -> None:
    """An account with a one-time code signs in with the certificate: the proof waits
    in the session as JSON and must come back acting for the organisation."""
    acting = ActingFor("org-id", "authz-id", as_subject=True)
    proof = Proof(method="certificate", uid=7, sub="u", subject="user:u", amr=("hwk",),
                  acting_for=acting)  # fmt: skip
    assert Proof.from_json(json.loads(json.dumps(proof.to_json()))) == proof
    person = ActingFor("org-id", "authz-id")
    assert ActingFor.from_session(person.to_session()) == person
    assert "subj" not in person.to_session()
