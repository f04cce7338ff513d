"""Single logout with an upstream (issue 13 part 6), against the small misbehaving
provider of ``fake_upstream``: signing out here goes on to the upstream's end-session
endpoint and back; the upstream's back-channel logout token ends exactly the sessions
made from its session, and every bad token (from the attacker's side) ends nothing."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy import select
from werkzeug.test import TestResponse

from federation.upstream.container import Upstreams
from idp.core.audit.models import AuditEvent
from idp.core.runtime import db
from idp.core.sessions import session_ended
from tests.federation.fake_upstream import CLIENT_ID, CLIENT_SECRET, FakeUpstream
from tests.federation.test_upstream_signin import (
    NAME,
    PERSON,
    add_fake,
    confirmed_holder,
    invoke_json,
    round_trip,
    signed_in_as,
)
from tests.oauth_support import register
from tests.support import csrf_token, sign_in, text

LOGGED_OUT = "https://rp.example.gov.cn/logged-out"
BCL = "/federation/province/backchannel-logout"


@pytest.fixture
def holder(upstream_app: Flask, fake: FakeUpstream) -> int:
    """An account the upstream's verified assertion links to (rule 2): every round trip
    signs it in."""
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    return confirmed_holder(upstream_app, level=3)


def through_upstream(app: Flask, fake: FakeUpstream, session_id: str) -> FlaskClient:
    fake.session_id = session_id
    browser = app.test_client()
    assert round_trip(browser, fake).location == "/account"
    assert signed_in_as(browser) is not None
    return browser


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def log_out(browser: FlaskClient) -> TestResponse:
    page = browser.get("/logout")
    return browser.post("/logout", data={"csrf_token": csrf_token(text(page))})


def back_channel(app: Flask, token: str) -> TestResponse:
    return app.test_client().post(BCL, data={"logout_token": token})


def audited(app: Flask, event: str) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db().scalars(select(AuditEvent).where(AuditEvent.event == event))
        return [dict(row.details, outcome=row.outcome) for row in rows]


# -- signing out here ends the upstream session ------------------------------------------


@pytest.mark.usefixtures("holder")
def test_signing_out_goes_on_to_the_upstream_and_back_to_the_sign_in_page(
    upstream_app: Flask,
    fake: FakeUpstream,
) -> None:
    browser = through_upstream(upstream_app, fake, "up-1")
    out = log_out(browser)
    assert out.status_code == 302
    assert out.location.startswith(fake.url + "/logout?")
    params = query(out.location)
    assert params["client_id"] == CLIENT_ID
    assert params["post_logout_redirect_uri"] == "http://localhost/federation/province/logged-out"
    # the hint is the upstream's own ID token of this sign-in
    hint = jwt.decode(params["id_token_hint"], fake.key)
    assert hint.claims["sid"] == "up-1"
    assert hint.claims["iss"] == fake.url
    # signed out here before the browser leaves (the upstream may never send it back)
    assert signed_in_as(browser) is None
    back = browser.get("/federation/province/logged-out?" + urlencode({"state": params["state"]}))
    assert back.status_code == 302
    assert back.location == "/login"
    assert "You have signed out." in text(browser.get("/login"))
    # the state was single use: a replay draws the signed-out page, it goes nowhere
    again = browser.get("/federation/province/logged-out?" + urlencode({"state": params["state"]}))
    assert again.status_code == 200


@pytest.mark.usefixtures("holder")
def test_a_service_initiated_logout_passes_through_the_upstream_to_the_service(
    upstream_app: Flask,
    fake: FakeUpstream,
) -> None:
    register(upstream_app, "rp", post_logout_redirect_uris=[LOGGED_OUT])
    browser = through_upstream(upstream_app, fake, "up-2")
    asked = browser.get(
        "/session/end?" + urlencode({"client_id": "rp", "post_logout_redirect_uri": LOGGED_OUT})
    )
    lid = re.search(r'name="lid" value="([^"]+)"', text(asked))
    assert lid
    confirmed = browser.post(
        "/session/end/confirm",
        data={"csrf_token": csrf_token(text(asked)), "lid": lid.group(1), "logout": "yes"},
    )
    assert confirmed.location.startswith(fake.url + "/logout?")
    assert signed_in_as(browser) is None
    state = query(confirmed.location)["state"]
    back = browser.get("/federation/province/logged-out?" + urlencode({"state": state}))
    assert back.location == LOGGED_OUT


def test_a_forged_way_back_goes_nowhere(upstream_app: Flask) -> None:
    # no open redirector: only the address stored at the sign-out is followed
    browser = upstream_app.test_client()
    for state in ("", "x" * 65, "made-up"):
        page = browser.get("/federation/province/logged-out?" + urlencode({"state": state}))
        assert page.status_code == 200
    page = browser.get("/federation/province/logged-out?state=a&final=https://evil.example")
    assert page.status_code == 200


@pytest.mark.usefixtures("holder")
def test_a_password_sign_in_signs_out_here_only(upstream_app: Flask) -> None:
    browser = upstream_app.test_client()
    assert sign_in(browser, "holder").status_code == 302
    assert log_out(browser).location == "/login"


def test_an_upstream_without_an_end_session_endpoint_signs_out_here_only(
    app: Flask,
    fake: FakeUpstream,
) -> None:
    fake.mode.add("no_end_session")
    add_fake(app, fake)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    confirmed_holder(app, level=3)
    browser = through_upstream(app, fake, "up-3")
    assert log_out(browser).location == "/login"
    assert signed_in_as(browser) is None


# -- the upstream's back-channel logout ---------------------------------------------------


@pytest.mark.usefixtures("holder")
def test_a_logout_token_ends_the_sessions_made_from_that_upstream_session_only(
    upstream_app: Flask,
    fake: FakeUpstream,
) -> None:
    first = through_upstream(upstream_app, fake, "up-A")
    first_again = through_upstream(upstream_app, fake, "up-A")  # a second browser, same sid
    second = through_upstream(upstream_app, fake, "up-B")
    by_password = upstream_app.test_client()
    sign_in(by_password, "holder")
    ended: list[dict[str, Any]] = []

    def listen(_sender: Flask, data: dict[str, Any], **_: Any) -> None:
        ended.append(data)

    with session_ended.connected_to(listen, sender=upstream_app):
        answer = back_channel(upstream_app, fake.logout_token(sid="up-A", sub=fake.subject))
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert signed_in_as(first) is None
    assert signed_in_as(first_again) is None
    assert signed_in_as(second) is not None
    assert signed_in_as(by_password) is not None
    # this service's own relying parties are told in turn (back-channel logout)
    assert len(ended) == 2
    # only a sub: every session of that upstream subject made through the upstream
    assert (
        back_channel(upstream_app, fake.logout_token(sid=None, sub=fake.subject)).status_code == 200
    )
    assert signed_in_as(second) is None
    assert signed_in_as(by_password) is not None
    outcomes = audited(upstream_app, "federation.backchannel_logout")
    assert [(o["outcome"], o["sessions"]) for o in outcomes] == [("success", 2), ("success", 1)]


@pytest.mark.usefixtures("holder")
def test_a_logout_token_for_someone_else_ends_nothing(
    upstream_app: Flask,
    fake: FakeUpstream,
) -> None:
    browser = through_upstream(upstream_app, fake, "up-C")
    for claims in ({"sid": "another-session"}, {"sid": None, "sub": "another-person"}):
        assert back_channel(upstream_app, fake.logout_token(**claims)).status_code == 200
    # both sid and sub: both must match
    token = fake.logout_token(sid="up-C", sub="another-person")
    assert back_channel(upstream_app, token).status_code == 200
    assert signed_in_as(browser) is not None


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _forged(fake: FakeUpstream, how: str) -> str:
    now = int(fake.now())
    if how == "alg_none":
        good = jwt.decode(fake.logout_token(), fake.key).claims
        return f"{_b64({'alg': 'none'})}.{_b64(good)}."
    if how == "hs256_with_the_client_secret":
        good = jwt.decode(fake.logout_token(), fake.key).claims
        return jwt.encode({"alg": "HS256"}, good, OctKey.import_key(CLIENT_SECRET.encode()))
    if how == "a_stranger_key":
        good = jwt.decode(fake.logout_token(), fake.key).claims
        stranger = RSAKey.generate_key(2048, {"kid": str(fake.key.kid)})
        return jwt.encode({"alg": "RS256", "kid": fake.key.kid}, good, stranger)
    if how == "tampered":
        head, _body, signature = fake.logout_token(sid="other").split(".")
        _h, body, _s = fake.logout_token(sid="up-D").split(".")
        return f"{head}.{body}.{signature}"
    overrides: dict[str, dict[str, Any]] = {
        "wrong_issuer": {"iss": "https://evil.example"},
        "wrong_audience": {"aud": "someone-else"},
        "stale": {"iat": now - 3600},
        "from_the_future": {"iat": now + 3600},
        "no_event": {"events": {"http://schemas.openid.net/event/other": {}}},
        "no_jti": {"jti": None},
        "with_a_nonce": {"nonce": "n"},  # an ID token is not a logout token
        "no_subject": {"sid": None, "sub": None},
    }
    if how == "id_token_type":
        return fake.logout_token(header={"typ": "JWT+id"})
    return fake.logout_token(**overrides[how])


@pytest.mark.parametrize(
    "how",
    [
        "alg_none",
        "hs256_with_the_client_secret",
        "a_stranger_key",
        "tampered",
        "wrong_issuer",
        "wrong_audience",
        "stale",
        "from_the_future",
        "no_event",
        "no_jti",
        "with_a_nonce",
        "no_subject",
        "id_token_type",
    ],
)
@pytest.mark.usefixtures("holder")
def test_a_bad_logout_token_is_refused_and_ends_nothing(
    upstream_app: Flask,
    fake: FakeUpstream,
    how: str,
) -> None:
    browser = through_upstream(upstream_app, fake, "up-D")
    answer = back_channel(upstream_app, _forged(fake, how))
    assert answer.status_code == 400, how
    assert answer.get_json()["error"] == "invalid_request"
    assert signed_in_as(browser) is not None
    [refusal] = audited(upstream_app, "federation.backchannel_logout")
    assert refusal["outcome"] == "failure"
    assert refusal["reason"].startswith("logout_token_")


@pytest.mark.usefixtures("holder")
def test_a_replayed_logout_token_is_refused(
    upstream_app: Flask,
    fake: FakeUpstream,
) -> None:
    token = fake.logout_token(sid="up-E")
    first = through_upstream(upstream_app, fake, "up-E")
    assert back_channel(upstream_app, token).status_code == 200
    assert signed_in_as(first) is None
    second = through_upstream(upstream_app, fake, "up-E")  # signed in again meanwhile
    replay = back_channel(upstream_app, token)
    assert replay.status_code == 400
    assert signed_in_as(second) is not None
    assert audited(upstream_app, "federation.backchannel_logout")[-1]["reason"] == (
        "logout_token_replayed"
    )


def test_no_token_or_an_unknown_upstream_is_a_clear_error(upstream_app: Flask) -> None:
    client = upstream_app.test_client()
    missing = client.post(BCL, data={})
    assert missing.status_code == 400
    assert missing.get_json()["error"] == "invalid_request"
    unknown = client.post("/federation/nobody/backchannel-logout", data={"logout_token": "x"})
    assert unknown.status_code == 400
    assert client.post(BCL, data={"logout_token": "a.b.c"}).status_code == 400


def test_the_cli_prints_the_addresses_to_register_at_the_upstream(upstream_app: Flask) -> None:
    with upstream_app.app_context():
        labels = Upstreams.of().labels()
    assert labels == {"province": "province"}  # no display name: its name
    [listed] = invoke_json(upstream_app, "list")
    assert listed["post_logout_redirect_uri"].endswith("/federation/province/logged-out")
    assert listed["backchannel_logout_uri"].endswith("/federation/province/backchannel-logout")


@pytest.mark.usefixtures("holder")
def test_made_up_key_ids_do_not_flood_the_upstream_with_key_set_fetches(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    before = fake.jwks_fetches
    for n in range(5):
        token = fake.logout_token(header={"kid": f"made-up-{n}"})
        assert back_channel(upstream_app, token).status_code == 400
    assert fake.jwks_fetches == before + 1
