"""Real-name levels in the protocol: acr values for levels, a client's minimum level,
step-up through /account/realname and back, prompt=none errors, and the
``verified_claims`` of OpenID Connect for Identity Assurance (scope ``realname``)."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from accounts.container import Accounts
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime
from tests.accounts.test_realname import ALICE_ID, ALICE_NAME, REGISTRY_CSV, load_registry, verify
from tests.oauth.test_basic_op import claims_of
from tests.oauth_support import RP, Flow, query_of, register
from tests.support import create_user, csrf_token, sign_in
from tests.support import text as body

LEVEL = "urn:dongguan:idp:acr:level"
PWD = "urn:dongguan:idp:acr:pwd"
SCOPE = "openid profile realname"


@pytest.fixture
def alice(app: Flask) -> None:
    create_user(app)
    load_registry(app, REGISTRY_CSV)


def make_rp(app: Flask, client_id: str = "rp", **values: Any) -> RP:
    values.setdefault("first_party", True)
    values.setdefault("scope", "openid profile realname offline_access")
    _, secret = register(app, client_id, **values)
    return RP(app, client_id, secret)


def follow_to_page(browser: FlaskClient, response: TestResponse) -> TestResponse:
    """Follow redirects inside the provider until a page (or the client) is reached."""
    for _ in range(6):
        location = response.headers.get("Location", "")
        if response.status_code != 302 or location.startswith("https://rp."):
            return response
        response = browser.get(location)
    return response


def start(browser: FlaskClient, rp: RP, flow: Flow, **extra: Any) -> TestResponse:
    sign_in(browser)
    return follow_to_page(browser, rp.start(browser, flow, SCOPE, **extra))


def redeem(browser: FlaskClient, rp: RP, response: TestResponse, flow: Flow) -> dict[str, Any]:
    assert response.status_code == 302, body(response)[:400]
    callback = query_of(response.headers["Location"])
    assert "code" in callback, callback
    tokens = rp.redeem(browser, callback["code"], flow)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    result: dict[str, Any] = tokens.get_json()
    return result


def userinfo(browser: FlaskClient, access_token: str) -> dict[str, Any]:
    response = browser.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def rid_of(page: str) -> str:
    match = re.search(r'name="rid" value="([^"]+)"', page)
    assert match
    return match.group(1)


def decline(browser: FlaskClient, page: TestResponse) -> TestResponse:
    text = body(page)
    return browser.post(
        "/authorize/level", data={"csrf_token": csrf_token(text), "rid": rid_of(text)}
    )


# -- discovery


def test_discovery_lists_the_level_acr_values_and_identity_assurance(client: FlaskClient) -> None:
    document = client.get("/.well-known/openid-configuration").get_json()
    assert [f"{LEVEL}{n}" for n in (2, 3, 4, 5)] == [
        v for v in document["acr_values_supported"] if v.startswith(LEVEL)
    ]
    assert "realname" in document["scopes_supported"]
    assert "verified_claims" in document["claims_supported"]
    assert document["verified_claims_supported"] is True
    assert document["trust_frameworks_supported"] == ["cn_gd_kexin"]
    assert {"name", "birthdate", "document_number"} <= set(
        document["claims_in_verified_claims_supported"]
    )


# -- step-up


def test_a_client_minimum_level_leads_to_step_up_and_back_to_the_client(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    """End to end: level 1 user, client needs level 3 -> step-up page -> the registry
    form at /account/realname -> back to the authorization request -> code -> tokens
    whose verified_claims say level 3."""
    rp = make_rp(app, min_level=3)
    flow = Flow()
    page = start(client, rp, flow)
    assert page.status_code == 200
    text = body(page)
    assert "needs real-name level 3" in text
    raise_url = html.unescape(re.search(r'href="(/account/realname[^"]+)"', text).group(1))  # type: ignore[union-attr]
    assert "level=3" in raise_url
    form_page = client.get(raise_url)
    assert form_page.status_code == 200
    form_text = body(form_page)
    next_value = html.unescape(re.search(r'name="next" value="([^"]+)"', form_text).group(1))  # type: ignore[union-attr]
    assert next_value.startswith("/authorize/continue?rid=")
    verified = client.post(
        urlsplit(raise_url).path,
        data={
            "csrf_token": csrf_token(form_text),
            "name": ALICE_NAME,
            "id_number": ALICE_ID,
            "next": next_value,
        },
    )
    assert verified.status_code == 302, body(verified)[:500]
    assert verified.headers["Location"].endswith(next_value)
    tokens = redeem(client, rp, follow_to_page(client, client.get(next_value)), flow)
    claims = userinfo(client, tokens["access_token"])["verified_claims"]
    assert claims["verification"]["assurance_level"] == "3"


def test_acr_values_for_a_level_are_met_after_step_up_and_put_in_the_id_token(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = make_rp(app)
    flow = Flow()
    page = start(client, rp, flow, acr_values=f"{LEVEL}3")
    assert page.status_code == 200
    assert "needs real-name level 3" in body(page)
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # e.g. in another tab
    response = follow_to_page(client, client.get(f"/authorize/continue?rid={rid_of(body(page))}"))
    tokens = redeem(client, rp, response, flow)
    _, id_claims = claims_of(app, tokens["id_token"])
    assert id_claims["acr"] == f"{LEVEL}3"


def test_the_first_satisfied_acr_value_is_returned(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app)
    flow = Flow()
    # level 4 is preferred but the account is at 3: the user may decline level 4 and
    # the token then says level 3, the one reached
    page = start(client, rp, flow, acr_values=f"{LEVEL}4 {LEVEL}3")
    assert page.status_code == 302  # level 3 is acceptable: no step-up page
    tokens = redeem(client, rp, page, flow)
    assert claims_of(app, tokens["id_token"])[1]["acr"] == f"{LEVEL}3"


def test_declining_a_preferred_level_continues_with_the_acr_reached(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = make_rp(app)
    flow = Flow()
    page = start(client, rp, flow, acr_values=f"{LEVEL}3")
    assert "Continue at my current level" in body(page)
    tokens = redeem(client, rp, follow_to_page(client, decline(client, page)), flow)
    id_claims = claims_of(app, tokens["id_token"])[1]
    assert id_claims["acr"] == PWD  # never the level asked for
    assert "verified_claims" not in userinfo(client, tokens["access_token"])


def test_declining_a_required_minimum_level_is_an_error_to_the_client(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = make_rp(app, min_level=3)
    flow = Flow()
    page = start(client, rp, flow)
    assert "Cancel and return to the service" in body(page)
    response = decline(client, page)
    callback = query_of(response.headers["Location"])
    assert callback["error"] == "unmet_authentication_requirements"
    assert callback["state"] == flow.state
    assert "code" not in callback


def test_declining_an_essential_level_is_an_error_to_the_client(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = make_rp(app)
    flow = Flow()
    claims = {"id_token": {"acr": {"essential": True, "values": [f"{LEVEL}3"]}}}
    page = start(client, rp, flow, claims=json.dumps(claims))
    assert page.status_code == 200
    callback = query_of(decline(client, page).headers["Location"])
    assert callback["error"] == "unmet_authentication_requirements"


@pytest.mark.parametrize("ask", ["min_level", "acr_values", "essential"])
def test_prompt_none_below_the_level_is_interaction_required(
    app: Flask, alice: None, client: FlaskClient, ask: str
) -> None:
    rp = make_rp(app, min_level=4 if ask == "min_level" else 1)
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # level 3, below 4
    extra: dict[str, str] = {"prompt": "none"}
    if ask == "acr_values":
        extra["acr_values"] = f"{LEVEL}4"
    elif ask == "essential":
        extra["claims"] = json.dumps(
            {"id_token": {"acr": {"essential": True, "value": f"{LEVEL}4"}}}
        )
    flow = Flow()
    sign_in(client)
    response = rp.start(client, flow, SCOPE, **extra)
    assert response.status_code == 302
    callback = query_of(response.headers["Location"])
    assert callback["error"] == "interaction_required"
    assert "level 4" in callback["error_description"]
    assert "code" not in callback


def test_a_level_that_expired_no_longer_meets_the_minimum(
    app: Flask, alice: None, client: FlaskClient, clock: FrozenClock
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app, min_level=3)
    flow = Flow()
    assert start(client, rp, flow).status_code == 302  # met: straight to the client
    clock.advance(Runtime.of(app).settings.registry_level_valid_days * 86400 + 1)
    page = start(client, rp, Flow())
    assert page.status_code == 200
    assert "needs real-name level 3" in body(page)


def test_the_step_up_page_needs_the_csrf_token_and_a_live_request(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = make_rp(app, min_level=3)
    page = start(client, rp, Flow())
    rid = rid_of(body(page))
    assert client.post("/authorize/level", data={"rid": rid}).status_code == 400  # no CSRF
    stale = client.post(
        "/authorize/level", data={"csrf_token": csrf_token(body(page)), "rid": "not-a-request"}
    )
    assert stale.status_code == 400


# -- verified_claims


def test_verified_claims_after_a_registry_match(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app)
    flow = Flow()
    tokens = redeem(client, rp, start(client, rp, flow), flow)
    released = userinfo(client, tokens["access_token"])["verified_claims"]
    verification = released["verification"]
    assert verification["trust_framework"] == "cn_gd_kexin"
    assert verification["assurance_level"] == "3"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", verification["time"])
    (evidence,) = verification["evidence"]
    assert evidence["type"] == "electronic_record"
    assert evidence["check_details"][0]["check_method"] == "data"
    assert released["claims"] == {
        "name": ALICE_NAME,
        "birthdate": "1949-12-31",
        "document_type": "idcard",
        "document_number": "110***********002X",
    }
    # without the realname scope: nothing of it
    flow = Flow()
    plain = rp.sign_in_and_get_code(client, flow, scope="openid profile")
    other = rp.redeem(client, plain["code"], flow).get_json()
    assert "verified_claims" not in userinfo(client, other["access_token"])


def test_a_client_registered_for_the_full_number_gets_it(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app, "tax", document_number_release="full")
    flow = Flow()
    tokens = redeem(client, rp, start(client, rp, flow), flow)
    claims = userinfo(client, tokens["access_token"])["verified_claims"]["claims"]
    assert claims["document_number"] == ALICE_ID


def test_verified_claims_in_the_id_token_only_as_requested(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app)
    flow = Flow()
    request = {"id_token": {"verified_claims": {"verification": {}, "claims": {"name": None}}}}
    tokens = redeem(client, rp, start(client, rp, flow, claims=json.dumps(request)), flow)
    id_claims = claims_of(app, tokens["id_token"])[1]
    assert id_claims["verified_claims"]["claims"] == {"name": ALICE_NAME}
    assert id_claims["verified_claims"]["verification"]["assurance_level"] == "3"


def test_a_client_without_the_realname_scope_cannot_get_verified_claims(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    """Neither by asking for the scope nor by naming the claim in a claims request."""
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app, "plain", scope="openid profile")
    flow = Flow()
    request = {
        "userinfo": {"verified_claims": {"claims": {"name": None}}},
        "id_token": {"verified_claims": {"claims": {"name": None}}},
    }
    tokens = redeem(client, rp, start(client, rp, flow, claims=json.dumps(request)), flow)
    assert "realname" not in tokens["scope"].split()
    assert "verified_claims" not in claims_of(app, tokens["id_token"])[1]
    assert "verified_claims" not in userinfo(client, tokens["access_token"])


def test_userinfo_follows_a_lowered_level(app: Flask, alice: None, client: FlaskClient) -> None:
    """An access token issued at level 3 does not keep claiming level 3 once an
    administrator lowered the account."""
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app)
    flow = Flow()
    tokens = redeem(client, rp, start(client, rp, flow), flow)
    assert "verified_claims" in userinfo(client, tokens["access_token"])
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        Accounts.of().realname_service().end_verifications(
            user, above=1, reason="document reported stolen", actor="cli"
        )
    assert "verified_claims" not in userinfo(client, tokens["access_token"])


def test_the_consent_page_says_what_realname_releases(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = make_rp(app, "third", first_party=False, document_number_release="full")
    page = start(client, rp, Flow())
    assert page.status_code == 200
    assert "identity document number (in full)" in body(page)


def lower(app: Flask) -> None:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        Accounts.of().realname_service().end_verifications(
            user, above=1, reason="checked again", actor="cli"
        )


def refresh(browser: FlaskClient, rp: RP, token: str) -> TestResponse:
    return rp.token_request(browser, {"grant_type": "refresh_token", "refresh_token": token})


@pytest.mark.parametrize("bound_by", ["min_level", "acr_values"])
def test_a_grant_given_for_a_level_is_not_refreshed_below_it(
    app: Flask, alice: None, client: FlaskClient, bound_by: str
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app, min_level=3 if bound_by == "min_level" else 1)
    flow = Flow()
    extra = {"acr_values": f"{LEVEL}3"} if bound_by == "acr_values" else {}
    sign_in(client)
    response = follow_to_page(
        client, rp.start(client, flow, "openid realname offline_access", **extra)
    )
    tokens = redeem(client, rp, response, flow)
    renewed = refresh(client, rp, tokens["refresh_token"])
    assert renewed.status_code == 200  # still level 3
    lower(app)
    refused = refresh(client, rp, renewed.get_json()["refresh_token"])
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_grant"
    # and the grant is gone: its access token is revoked too
    check = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {renewed.get_json()['access_token']}"}
    )
    assert check.status_code == 401


def test_a_grant_without_a_level_is_refreshed_whatever_the_level(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = make_rp(app)
    flow = Flow()
    sign_in(client)
    response = follow_to_page(client, rp.start(client, flow, "openid realname offline_access"))
    tokens = redeem(client, rp, response, flow)
    lower(app)
    assert refresh(client, rp, tokens["refresh_token"]).status_code == 200
