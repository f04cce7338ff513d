"""Logout, replaying the OpenID Foundation conformance plans "RP-Initiated OP" and
"Back-Channel OP" module by module, plus what an attacker would try.

RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ``/session/end`` with an
``id_token_hint`` and/or ``client_id``, a registered ``post_logout_redirect_uri`` and
``state``. Back-channel logout (OpenID Connect Back-Channel Logout 1.0): every service
of an ending session that registered a ``backchannel_logout_uri`` is sent a logout
token; here a real HTTP server on 127.0.0.1 receives them and validates each as an RP
must (2.6).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey
from sqlalchemy import select
from werkzeug.test import TestResponse

from config import Settings
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.models import LogoutDelivery
from idp.oauth.server import OAuthRuntime
from tests.oauth_support import RP, register
from tests.support import STRONG_PASSWORD, create_user, csrf_token, sign_in
from tests.support import text as body

ISSUER = "http://localhost"  # tests/conftest.py
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGGED_OUT = "https://rp.example.gov.cn/logged-out"
LOGGED_OUT_WITH_QUERY = "https://rp.example.gov.cn/bye?from=idp"
OTHER_LOGGED_OUT = "https://other.example.gov.cn/logged-out"
WRONG_PASSWORD = "this is not the password at all"
JWS_ALGS = ["ES256", "RS256"]

_LID = re.compile(r'name="lid" value="([^"]+)"')
_LINK = re.compile(r'(?:href|action|src|formaction)="([^"]*)"', re.IGNORECASE)


# -- a relying party's back-channel logout endpoint: a real HTTP server


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    content_type: str
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) is expected here: no traceback on stderr."""


class Receiver:
    """An RP's ``backchannel_logout_uri``: records every request, answers ``status``
    (with ``headers``) after ``delay`` seconds, or hangs until the test ends when
    ``hang`` is set."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.hang = False
        self.delay = 0.0
        self.received: list[Received] = []
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.received.append(
                    Received(
                        self.command,
                        self.path,
                        self.headers.get("Content-Type", ""),
                        self.rfile.read(length),
                    )
                )
                if receiver.hang:
                    receiver._release.wait(30)
                elif receiver.delay:
                    receiver._release.wait(receiver.delay)
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self._record()

            def do_GET(self) -> None:
                self._record()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def to(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.start()
    yield made
    made.stop()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # a receiver that hangs must not hold a test for the default 5 s
    return {"backchannel_timeout_seconds": 1.0}


# -- tokens, as an RP checks them


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def jwks(client: FlaskClient) -> KeySet:
    response = client.get("/jwks.json")
    assert response.status_code == 200
    return KeySet.import_key_set(response.get_json())


def verify(client: FlaskClient, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWS signed with a key the provider publishes."""
    decoded = jwt.decode(token, jwks(client), algorithms=JWS_ALGS)
    return dict(decoded.header), dict(decoded.claims)


def id_claims(client: FlaskClient, tokens: dict[str, Any]) -> dict[str, Any]:
    header, claims = verify(client, tokens["id_token"])
    assert header.get("typ") in (None, "JWT")
    assert claims["iss"] == ISSUER
    return claims


def check_logout_token(
    client: FlaskClient,
    received: Received,
    *,
    client_id: str,
    alg: str,
    sub: str,
    sid: str,
    now: datetime,
) -> dict[str, Any]:
    """Back-Channel Logout 1.0 2.4 and 2.6, the RP's validation, step by step."""
    assert received.method == "POST"
    assert received.content_type.split(";")[0].strip() == "application/x-www-form-urlencoded"
    form = parse_qs(received.body.decode(), strict_parsing=True)
    assert list(form) == ["logout_token"]
    assert len(form["logout_token"]) == 1
    token = form["logout_token"][0]
    header, claims = verify(client, token)  # 2.6 step 3: signed with a key from jwks_uri
    assert header["alg"] == alg  # the algorithm registered for the client's ID tokens
    assert header["typ"] == "logout+jwt"  # 2.4 explicit typing
    assert header["kid"] in {key["kid"] for key in client.get("/jwks.json").get_json()["keys"]}
    assert claims["iss"] == ISSUER  # 2.6 step 4
    audience = claims["aud"]
    assert audience == client_id or (isinstance(audience, list) and client_id in audience)
    assert isinstance(claims["iat"], int)
    assert claims["iat"] <= int(now.timestamp()) + 1
    assert isinstance(claims["exp"], int)
    assert claims["exp"] > int(now.timestamp())
    assert claims["exp"] > claims["iat"]
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    events = claims["events"]  # 2.6 step 6
    assert isinstance(events, dict)
    assert events[BACKCHANNEL_EVENT] == {}
    assert "nonce" not in claims  # 2.6 step 7: a logout token with a nonce is rejected
    assert claims["sub"] == sub  # 2.6 step 5: sub and/or sid; we were promised both
    assert claims["sid"] == sid
    return claims


# -- driving the pages


def signed_in(client: FlaskClient) -> bool:
    response = client.get("/account")
    if response.status_code == 200:
        return True
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    return False


def end_session(
    client: FlaskClient, params: dict[str, str], *, method: str = "GET"
) -> TestResponse:
    if method == "POST":
        return client.post("/session/end", data=params)
    return client.get("/session/end?" + urlencode(params))


def assert_redirected_to(response: TestResponse, uri: str, state: str | None) -> None:
    assert response.status_code in (302, 303), body(response)[:500]
    location = response.headers["Location"]
    expected = urlsplit(uri)
    actual = urlsplit(location)
    assert (actual.scheme, actual.netloc, actual.path) == (
        expected.scheme,
        expected.netloc,
        expected.path,
    )
    query = parse_qs(actual.query, keep_blank_values=True)
    wanted = parse_qs(expected.query, keep_blank_values=True)
    if state is None:
        assert "state" not in query
    else:
        wanted["state"] = [state]
    assert query == wanted


def assert_refused(response: TestResponse) -> None:
    """An error page: status 400, never a redirect."""
    assert response.status_code == 400, (response.status_code, response.headers)
    assert "Location" not in response.headers
    assert "Refresh" not in response.headers
    html = body(response)
    assert 'http-equiv="refresh"' not in html.lower()
    for link in _LINK.findall(html):  # nor is the attacker's address offered as a link
        parts = urlsplit(unescape(link))
        assert "evil" not in parts.netloc, link
        assert parts.scheme in ("", "http", "https"), link


def confirmation(response: TestResponse) -> tuple[str, str]:
    """The confirmation page: (CSRF token, lid)."""
    assert response.status_code == 200, (response.status_code, response.headers)
    assert "Location" not in response.headers
    html = body(response)
    assert 'action="/session/end/confirm"' in html
    match = _LID.search(html)
    assert match, "no lid in the confirmation form"
    return csrf_token(html), match.group(1)


def owed(app: Flask) -> list[LogoutDelivery]:
    with app.app_context():
        return list(db().scalars(select(LogoutDelivery).order_by(LogoutDelivery.client_id)).all())


def deliver(app: Flask) -> int:
    return OAuthRuntime.of(app).backchannel.deliver_due()


def local_logout(client: FlaskClient) -> TestResponse:
    page = client.get("/logout")
    assert page.status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(body(page))})
    assert response.status_code == 302
    return response


@dataclass
class Site:
    """One registered relying party and its tokens for the signed-in user."""

    rp: RP
    tokens: dict[str, Any]
    claims: dict[str, Any]


def rp_logout_client(app: Flask, client_id: str = "rp", **values: Any) -> RP:
    values.setdefault("post_logout_redirect_uris", [LOGGED_OUT, LOGGED_OUT_WITH_QUERY])
    values.setdefault("scope", "openid profile")
    info, secret = register(app, client_id, **values)
    return RP(app, client_id, secret, redirect_uri=info.redirect_uris[0])


def signed_in_at(browser: FlaskClient, rp: RP, *, username: str = "alice", **kwargs: Any) -> Site:
    tokens, _flow = rp.tokens(browser, username=username, **kwargs)
    return Site(rp, tokens, id_claims(browser, tokens))


@pytest.fixture
def alice(app: Flask) -> None:
    create_user(app, "alice")


# == RP-Initiated OP ==


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_hint_of_this_session_signs_out_and_redirects_with_state(
    app: Flask, client: FlaskClient, alice: None, method: str
) -> None:
    """oidcc-rp-initiated-logout (GET and POST: 3 "MUST support GET and POST")."""
    site = signed_in_at(client, rp_logout_client(app))
    assert signed_in(client)
    state = "st & = ?ate/é"
    response = end_session(
        client,
        {
            "id_token_hint": site.tokens["id_token"],
            "post_logout_redirect_uri": LOGGED_OUT,
            "state": state,
        },
        method=method,
    )
    assert_redirected_to(response, LOGGED_OUT, state)
    assert not signed_in(client)
    with app.app_context():
        events = db().scalars(select(AuditEvent).where(AuditEvent.event == "signout")).all()
    assert [event.details.get("initiated_by") for event in events] == ["rp"]


def test_a_registered_uri_with_a_query_keeps_its_query(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    site = signed_in_at(client, rp_logout_client(app))
    response = end_session(
        client,
        {
            "id_token_hint": site.tokens["id_token"],
            "post_logout_redirect_uri": LOGGED_OUT_WITH_QUERY,
            "state": "s1",
        },
    )
    assert_redirected_to(response, LOGGED_OUT_WITH_QUERY, "s1")
    assert not signed_in(client)


def test_no_state_adds_no_state(app: Flask, client: FlaskClient, alice: None) -> None:
    """oidcc-rp-initiated-logout-no-state."""
    site = signed_in_at(client, rp_logout_client(app))
    response = end_session(
        client, {"id_token_hint": site.tokens["id_token"], "post_logout_redirect_uri": LOGGED_OUT}
    )
    assert_redirected_to(response, LOGGED_OUT, None)
    assert response.headers["Location"] == LOGGED_OUT
    assert not signed_in(client)


@pytest.mark.parametrize("with_state", [False, True], ids=["hint-only", "only-state"])
def test_hint_without_redirect_uri_shows_the_signed_out_page(
    app: Flask, client: FlaskClient, alice: None, with_state: bool
) -> None:
    """oidcc-rp-initiated-logout-no-post-logout-redirect-uri and -only-state."""
    site = signed_in_at(client, rp_logout_client(app))
    params = {"id_token_hint": site.tokens["id_token"]}
    if with_state:
        params["state"] = "only-state"
    response = end_session(client, params)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "You have signed out" in body(response)
    assert not signed_in(client)


def test_client_id_without_hint_asks_and_yes_signs_out_and_redirects(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    """oidcc-rp-initiated-logout-client-id (OIDC RP-Initiated Logout 2: without a hint
    the OP MUST ask the user)."""
    rp = rp_logout_client(app, name="Dongguan Housing Fund")
    signed_in_at(client, rp)
    response = end_session(
        client,
        {"client_id": rp.client_id, "post_logout_redirect_uri": LOGGED_OUT, "state": "xyz"},
    )
    token, lid = confirmation(response)
    assert "Dongguan Housing Fund" in body(response)
    assert signed_in(client)  # nothing happened yet
    response = client.post(
        "/session/end/confirm", data={"csrf_token": token, "lid": lid, "logout": "yes"}
    )
    assert_redirected_to(response, LOGGED_OUT, "xyz")
    assert not signed_in(client)


def test_no_parameters_at_all_asks(app: Flask, client: FlaskClient, alice: None) -> None:
    """oidcc-rp-initiated-logout-no-params: the user is asked, then signed out."""
    signed_in_at(client, rp_logout_client(app))
    token, lid = confirmation(client.get("/session/end"))
    response = client.post(
        "/session/end/confirm", data={"csrf_token": token, "lid": lid, "logout": "yes"}
    )
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "You have signed out" in body(response)
    assert not signed_in(client)


def test_answering_no_keeps_the_session(app: Flask, client: FlaskClient, alice: None) -> None:
    rp = rp_logout_client(app, backchannel_logout_uri="https://rp.example.gov.cn/bc")
    signed_in_at(client, rp)
    token, lid = confirmation(
        end_session(
            client,
            {"client_id": rp.client_id, "post_logout_redirect_uri": LOGGED_OUT, "state": "s"},
        )
    )
    response = client.post(
        "/session/end/confirm", data={"csrf_token": token, "lid": lid, "logout": "no"}
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location == "/account" or location.startswith(LOGGED_OUT + "?")
    assert signed_in(client)
    assert owed(app) == []


@pytest.mark.parametrize("csrf", ["missing", "another-session"])
def test_the_confirmation_needs_this_sessions_csrf_token(
    app: Flask, client: FlaskClient, alice: None, csrf: str
) -> None:
    """Logout CSRF: a forged "yes" from another site signs nobody out."""
    rp = rp_logout_client(app)
    signed_in_at(client, rp)
    _token, lid = confirmation(end_session(client, {"client_id": rp.client_id}))
    data = {"lid": lid, "logout": "yes"}
    if csrf == "another-session":
        create_user(app, "mallory")
        attacker = app.test_client()
        sign_in(attacker, "mallory")
        attacker_token, _lid = confirmation(end_session(attacker, {"client_id": rp.client_id}))
        data["csrf_token"] = attacker_token
    response = client.post("/session/end/confirm", data=data)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert signed_in(client)


def test_a_hint_from_an_earlier_session_asks_first(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    """RP-Initiated Logout 1.0 section 2: "the OP MUST ask the End-User this question if
    an id_token_hint was not provided or if the supplied ID Token does not belong to the
    current OP session with the RP and/or currently logged in End-User", and "If the ID
    Token's sid claim does not correspond to the RP's current session or a recent session
    at the OP, the OP SHOULD treat the logout request as suspect". An ID token of a
    session that has ended must not sign the current session out unasked: hints travel
    in URLs (history, logs, Referer), and a stale one replayed is a logout CSRF."""
    rp = rp_logout_client(app)
    old = signed_in_at(client, rp)
    local_logout(client)
    current = signed_in_at(client, rp)
    assert old.claims["sid"] != current.claims["sid"]
    response = end_session(
        client,
        {
            "id_token_hint": old.tokens["id_token"],
            "post_logout_redirect_uri": LOGGED_OUT,
            "state": "s",
        },
    )
    confirmation(response)
    assert signed_in(client)


def test_a_hint_for_another_user_asks_first(app: Flask, client: FlaskClient, alice: None) -> None:
    create_user(app, "bob")
    rp = rp_logout_client(app)
    alices = signed_in_at(client, rp)
    bobs_browser = app.test_client()
    signed_in_at(bobs_browser, rp, username="bob")
    response = end_session(
        bobs_browser,
        {"id_token_hint": alices.tokens["id_token"], "post_logout_redirect_uri": LOGGED_OUT},
    )
    confirmation(response)
    assert signed_in(bobs_browser)
    assert signed_in(client)


# -- the open redirector an attacker looks for

BAD_REDIRECTS = {
    "another-host": "https://evil.example/logged-out",
    "userinfo-trick": "https://rp.example.gov.cn@evil.example/logged-out",
    "extra-path": LOGGED_OUT + "/evil",
    "dot-segments": "https://rp.example.gov.cn/logged-out/../evil",
    "trailing-slash": LOGGED_OUT + "/",
    "added-query": LOGGED_OUT + "?next=https://evil.example/",
    "different-query": "https://rp.example.gov.cn/bye?from=evil",
    "extra-query": LOGGED_OUT_WITH_QUERY + "&next=https://evil.example/",
    "dropped-query": "https://rp.example.gov.cn/bye",
    "fragment": LOGGED_OUT + "#evil",
    "http-downgrade": "http://rp.example.gov.cn/logged-out",
    "scheme-relative": "//evil.example/logged-out",
    "javascript": "javascript:alert('evil')",
    "another-clients-uri": OTHER_LOGGED_OUT + "?evil",
}


@pytest.mark.parametrize("identified_by", ["id_token_hint", "client_id"])
@pytest.mark.parametrize("uri", list(BAD_REDIRECTS.values()), ids=list(BAD_REDIRECTS))
def test_an_unregistered_redirect_uri_gets_an_error_page(
    app: Flask, client: FlaskClient, alice: None, identified_by: str, uri: str
) -> None:
    """oidcc-rp-initiated-logout-bad-post-logout-redirect-uri and
    -query-added-to-post-logout-redirect-uri: no redirect, whatever else is right."""
    rp_logout_client(app, "other", post_logout_redirect_uris=[OTHER_LOGGED_OUT + "?evil"])
    rp = rp_logout_client(app)
    site = signed_in_at(client, rp)
    params = {"post_logout_redirect_uri": uri, "state": "evil"}
    if identified_by == "id_token_hint":
        params["id_token_hint"] = site.tokens["id_token"]
    else:
        params["client_id"] = rp.client_id
    for method in ("GET", "POST"):
        assert_refused(end_session(client, params, method=method))
    assert signed_in(client)


def test_another_clients_registered_uri_is_refused(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    """The URI must be registered for the client the hint was issued to."""
    rp_logout_client(app, "other", post_logout_redirect_uris=[OTHER_LOGGED_OUT])
    site = signed_in_at(client, rp_logout_client(app))
    response = end_session(
        client,
        {"id_token_hint": site.tokens["id_token"], "post_logout_redirect_uri": OTHER_LOGGED_OUT},
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert signed_in(client)


def test_a_redirect_uri_without_hint_or_client_id_is_refused(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    """oidcc-rp-initiated-logout-no-id-token-hint: the OP cannot know whose URI it is."""
    signed_in_at(client, rp_logout_client(app))
    response = end_session(client, {"post_logout_redirect_uri": LOGGED_OUT, "state": "s"})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert signed_in(client)


def test_an_unknown_client_id_is_refused(app: Flask, client: FlaskClient, alice: None) -> None:
    signed_in_at(client, rp_logout_client(app))
    response = end_session(
        client, {"client_id": "nobody", "post_logout_redirect_uri": LOGGED_OUT, "state": "s"}
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert signed_in(client)


def test_a_client_id_that_is_not_the_hints_audience_is_refused(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    other = rp_logout_client(app, "other", post_logout_redirect_uris=[OTHER_LOGGED_OUT])
    site = signed_in_at(client, rp_logout_client(app))
    for uri in (OTHER_LOGGED_OUT, LOGGED_OUT):
        response = end_session(
            client,
            {
                "id_token_hint": site.tokens["id_token"],
                "client_id": other.client_id,
                "post_logout_redirect_uri": uri,
                "state": "s",
            },
        )
        assert response.status_code == 400
        assert "Location" not in response.headers
    assert signed_in(client)


# -- forged hints


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), signature


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), signature])


def _tampered_signature(app: Flask, site: Site) -> str:
    header, payload, signature = site.tokens["id_token"].split(".")
    raw = bytearray(unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{b64(bytes(raw))}"


def _tampered_claims(app: Flask, site: Site) -> str:
    header, claims, signature = _split(site.tokens["id_token"])
    claims["exp"] += 3600
    return _compact(header, claims, signature)


def _alg_none(app: Flask, site: Site) -> str:
    _header, claims, _signature = _split(site.tokens["id_token"])
    return _compact({"alg": "none", "typ": "JWT"}, claims)


def _another_key_our_kid(app: Flask, site: Site) -> str:
    header, claims, _signature = _split(site.tokens["id_token"])
    key = ECKey.generate_key("P-256")
    return jwt.encode({"alg": "ES256", "kid": header["kid"], "typ": "JWT"}, claims, key)


def _another_key_embedded(app: Flask, site: Site) -> str:
    _header, claims, _signature = _split(site.tokens["id_token"])
    key = ECKey.generate_key("P-256", auto_kid=True)
    header = {"alg": "ES256", "typ": "JWT", "kid": key.kid, "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key)


def _hmac_with_our_public_key(app: Flask, site: Site) -> str:
    """Algorithm confusion: HS256 keyed with the published public key."""
    header, claims, _signature = _split(site.tokens["id_token"])
    with app.app_context():
        published = json.loads(OAuthRuntime.of().keys.jwks_json())["keys"]
    public = next(key for key in published if key["kid"] == header["kid"])
    secret = OctKey.import_key(json.dumps(public, sort_keys=True).encode())
    return jwt.encode(
        {"alg": "HS256", "kid": header["kid"], "typ": "JWT"}, claims, secret, algorithms=["HS256"]
    )


def _wrong_issuer(app: Flask, site: Site) -> str:
    _header, claims, _signature = _split(site.tokens["id_token"])
    claims["iss"] = "https://evil.example"
    with app.app_context():
        signed: str = OAuthRuntime.of().keys.sign(claims)
    return signed


def _an_access_token(app: Flask, site: Site) -> str:
    token: str = site.tokens["access_token"]
    return token


def _not_a_jwt(app: Flask, site: Site) -> str:
    return "not-a-jwt"


FORGERIES: dict[str, Callable[[Flask, Site], str]] = {
    "tampered-signature": _tampered_signature,
    "tampered-claims": _tampered_claims,
    "alg-none": _alg_none,
    "another-key-our-kid": _another_key_our_kid,
    "another-key-embedded-jwk": _another_key_embedded,
    "hs256-with-our-public-key": _hmac_with_our_public_key,
    "our-key-wrong-issuer": _wrong_issuer,
    "an-access-token": _an_access_token,
    "not-a-jwt": _not_a_jwt,
}


@pytest.mark.parametrize("forge", list(FORGERIES.values()), ids=list(FORGERIES))
def test_a_hint_we_did_not_issue_gets_an_error_page(
    app: Flask,
    client: FlaskClient,
    alice: None,
    forge: Callable[[Flask, Site], str],
) -> None:
    """oidcc-rp-initiated-logout-modified-id-token-hint: no sign-out, no redirect."""
    rp = rp_logout_client(app)
    site = signed_in_at(client, rp)
    hint = forge(app, site)
    for params in (
        {"id_token_hint": hint, "post_logout_redirect_uri": LOGGED_OUT, "state": "s"},
        {"id_token_hint": hint, "client_id": rp.client_id, "post_logout_redirect_uri": LOGGED_OUT},
        {"id_token_hint": hint},
    ):
        for method in ("GET", "POST"):
            response = end_session(client, params, method=method)
            assert response.status_code == 400, (params, method)
            assert "Location" not in response.headers
    assert signed_in(client)


# -- without a session


def test_without_a_session_a_valid_request_still_redirects(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    rp = rp_logout_client(app)
    site = signed_in_at(client, rp)
    local_logout(client)
    assert not signed_in(client)
    for browser in (client, app.test_client()):
        response = end_session(
            browser,
            {
                "id_token_hint": site.tokens["id_token"],
                "post_logout_redirect_uri": LOGGED_OUT,
                "state": "again",
            },
        )
        assert_redirected_to(response, LOGGED_OUT, "again")
        response = end_session(
            browser,
            {"client_id": rp.client_id, "post_logout_redirect_uri": LOGGED_OUT, "state": "c"},
        )
        assert_redirected_to(response, LOGGED_OUT, "c")
        response = end_session(browser, {})
        assert response.status_code == 200
        assert "You have signed out" in body(response)
        # and the open redirector stays closed without a session too
        response = end_session(
            browser,
            {"client_id": rp.client_id, "post_logout_redirect_uri": "https://evil.example/"},
        )
        assert_refused(response)


def test_an_expired_hint_is_accepted(
    app: Flask, client: FlaskClient, clock: FrozenClock, alice: None
) -> None:
    """RP-Initiated Logout 1.0 section 2: "The OP SHOULD accept ID Tokens when the RP
    identified by the ID Token's aud claim and/or sid claim has a current session or had
    a recent session at the OP, even when the exp time has passed." """
    site = signed_in_at(client, rp_logout_client(app))
    clock.advance(site.claims["exp"] - site.claims["iat"] + 60)
    assert site.claims["exp"] < clock.now().timestamp()
    assert signed_in(client)
    response = end_session(
        client,
        {
            "id_token_hint": site.tokens["id_token"],
            "post_logout_redirect_uri": LOGGED_OUT,
            "state": "late",
        },
    )
    assert_redirected_to(response, LOGGED_OUT, "late")
    assert not signed_in(client)


# == Back-Channel OP ==


@dataclass
class BackchannelSetup:
    public: Site
    pairwise: Site
    silent: Site  # registered no backchannel_logout_uri


def three_services(app: Flask, client: FlaskClient, receiver: Receiver) -> BackchannelSetup:
    """Three services, one browser session: the first signs in with the password, the
    others by single sign-on (a wrong password would fail if it were asked for)."""
    public = rp_logout_client(app, "public-rp", backchannel_logout_uri=receiver.url("/bc/public"))
    pairwise = rp_logout_client(
        app,
        "pairwise-rp",
        redirect_uris=["https://pairwise.example.org/callback"],
        backchannel_logout_uri=receiver.url("/bc/pairwise"),
        subject_type="pairwise",
        id_token_signed_response_alg="RS256",
        first_party=True,
    )
    silent = rp_logout_client(app, "silent-rp")
    first = signed_in_at(client, public)
    second = signed_in_at(client, pairwise, password=WRONG_PASSWORD)
    third = signed_in_at(client, silent, password=WRONG_PASSWORD)
    for site in (second, third):
        assert site.claims["sid"] == first.claims["sid"]
        assert site.claims["auth_time"] == first.claims["auth_time"]
    assert second.claims["sub"] != first.claims["sub"]  # pairwise
    return BackchannelSetup(first, second, third)


def _check_owed(app: Flask, setup: BackchannelSetup) -> None:
    rows = owed(app)
    assert [row.client_id for row in rows] == ["pairwise-rp", "public-rp"]
    for row, site in zip(rows, (setup.pairwise, setup.public), strict=True):
        assert row.subject == site.claims["sub"]
        assert row.sid == site.claims["sid"]
        assert row.delivered_at is None
        assert row.failed_at is None
        assert row.attempts == 0


def _check_delivered(
    app: Flask,
    client: FlaskClient,
    receiver: Receiver,
    setup: BackchannelSetup,
    clock: FrozenClock,
) -> None:
    assert deliver(app) == 2
    assert len(receiver.received) == 2
    jtis = set()
    for path, site, alg in (
        ("/bc/public", setup.public, "ES256"),
        ("/bc/pairwise", setup.pairwise, "RS256"),
    ):
        [received] = receiver.to(path)
        claims = check_logout_token(
            client,
            received,
            client_id=site.rp.client_id,
            alg=alg,
            sub=site.claims["sub"],
            sid=site.claims["sid"],
            now=clock.now(),
        )
        jtis.add(claims["jti"])
    assert len(jtis) == 2
    for row in owed(app):
        assert row.delivered_at is not None
        assert row.attempts == 1
        assert row.failed_at is None
    # delivered once: the next passes send nothing
    clock.advance(3600)
    assert deliver(app) == 0
    assert len(receiver.received) == 2


def test_rp_initiated_logout_notifies_every_service_of_the_session(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    """oidcc-backchannel-rp-initiated-logout (and the pairwise subject)."""
    setup = three_services(app, client, receiver)
    assert owed(app) == []  # nothing before the logout
    assert deliver(app) == 0
    response = end_session(
        client,
        {
            "id_token_hint": setup.public.tokens["id_token"],
            "post_logout_redirect_uri": LOGGED_OUT,
            "state": "bc",
        },
    )
    assert_redirected_to(response, LOGGED_OUT, "bc")
    assert not signed_in(client)
    _check_owed(app, setup)
    assert receiver.received == []  # delivered off the request path
    _check_delivered(app, client, receiver, setup, clock)


def test_confirmed_rp_initiated_logout_notifies(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    setup = three_services(app, client, receiver)
    token, lid = confirmation(end_session(client, {"client_id": "silent-rp"}))
    client.post("/session/end/confirm", data={"csrf_token": token, "lid": lid, "logout": "yes"})
    assert not signed_in(client)
    _check_owed(app, setup)
    _check_delivered(app, client, receiver, setup, clock)


def test_the_logout_page_notifies_every_service_of_the_session(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    setup = three_services(app, client, receiver)
    page = client.get("/logout")
    assert page.status_code == 200
    assert signed_in(client)  # showing the page signs nobody out
    refused = client.post("/logout", data={})  # no CSRF token: a forged sign-out
    assert refused.status_code in (200, 400)
    assert signed_in(client)
    assert owed(app) == []
    response = client.post("/logout", data={"csrf_token": csrf_token(body(page))})
    assert response.status_code == 302
    assert not signed_in(client)
    _check_owed(app, setup)
    _check_delivered(app, client, receiver, setup, clock)


def test_another_user_signing_in_ends_the_first_session_and_owes_its_notices(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    create_user(app, "bob")
    setup = three_services(app, client, receiver)
    response = sign_in(client, "bob", form_url="/login?reauth=1")
    assert response.status_code == 302
    assert signed_in(client)
    _check_owed(app, setup)  # alice's subjects and session
    _check_delivered(app, client, receiver, setup, clock)


def test_the_same_user_signing_in_again_keeps_the_session_and_owes_nothing(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    setup = three_services(app, client, receiver)
    clock.advance(60)
    # prompt=login: a re-authentication (the password is asked for again)
    again = signed_in_at(client, setup.public.rp, prompt="login")
    assert again.claims["auth_time"] > setup.public.claims["auth_time"]
    assert again.claims["sid"] == setup.public.claims["sid"]
    assert owed(app) == []
    local_logout(client)
    assert len(owed(app)) == 2  # and the services are still known to the session


def test_a_password_change_that_signs_other_browsers_out_owes_their_notices(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    """The module promises a notice "whenever a signed-in session ends". Changing the
    password ends the user's other sessions (an attacker's, typically): their services
    must be told now, not when (if ever) that browser comes back to us."""
    rp = rp_logout_client(app, backchannel_logout_uri=receiver.url("/bc"))
    stolen = app.test_client()
    site = signed_in_at(stolen, rp)
    clock.advance(1)
    sign_in(client)
    page = client.get("/account/password")
    response = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(body(page)),
            "current_password": STRONG_PASSWORD,
            "password": "brand new passphrase",
            "password_confirm": "brand new passphrase",
        },
    )
    assert response.status_code == 302
    assert signed_in(client)
    # the other browser does not come back; its service must hear of it anyway
    rows = owed(app)
    assert [(row.client_id, row.subject, row.sid) for row in rows] == [
        ("rp", site.claims["sub"], site.claims["sid"])
    ]


def test_two_workers_delivering_at_once_send_each_notice_once(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    """Every worker runs a deliverer: a notice is claimed by one of them."""
    setup = three_services(app, client, receiver)
    local_logout(client)
    _check_owed(app, setup)
    receiver.delay = 0.2  # both passes see the notices before either is delivered
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(10)
            counts.append(OAuthRuntime.of(app).backchannel.deliver_due())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(counts) in ([0, 2], [1, 1])
    assert sorted(item.path for item in receiver.received) == ["/bc/pairwise", "/bc/public"]
    for row in owed(app):
        assert row.delivered_at is not None
        assert row.attempts == 1


def test_a_failing_receiver_is_retried_with_back_off_then_marked_failed_and_audited(
    app: Flask,
    client: FlaskClient,
    clock: FrozenClock,
    receiver: Receiver,
    settings: Settings,
    alice: None,
) -> None:
    rp = rp_logout_client(app, backchannel_logout_uri=receiver.url("/bc"))
    site = signed_in_at(client, rp)
    receiver.status = 500
    local_logout(client)
    maximum = settings.backchannel_max_attempts
    delays: list[float] = []
    for attempt in range(1, maximum + 1):
        assert deliver(app) == 0
        assert len(receiver.received) == attempt
        check_logout_token(
            client,
            receiver.received[-1],
            client_id="rp",
            alg="ES256",
            sub=site.claims["sub"],
            sid=site.claims["sid"],
            now=clock.now(),
        )
        [row] = owed(app)
        assert row.attempts == attempt
        assert row.delivered_at is None
        assert row.last_error
        assert "500" in row.last_error
        if attempt == maximum:
            assert row.failed_at is not None
            break
        assert row.failed_at is None
        delay = (row.next_attempt_at - clock.now()).total_seconds()
        assert delay > 0
        delays.append(delay)
        # not due yet: nothing is sent
        clock.advance(delay / 2)
        assert deliver(app) == 0
        assert len(receiver.received) == attempt
        clock.advance(delay / 2)
    assert delays == sorted(delays)
    assert delays[-1] > delays[0]  # back-off, not a fixed rhythm
    # failed for good: never tried again
    clock.advance(30 * 24 * 3600)
    assert deliver(app) == 0
    assert len(receiver.received) == maximum
    with app.app_context():
        events = (
            db()
            .scalars(select(AuditEvent).where(AuditEvent.event == "backchannel_logout.failed"))
            .all()
        )
    assert len(events) == 1
    assert events[0].outcome == "failure"
    assert events[0].subject == "client:rp"
    assert events[0].details["attempts"] == maximum


def test_a_receiver_that_recovers_gets_the_notice(
    app: Flask, client: FlaskClient, clock: FrozenClock, receiver: Receiver, alice: None
) -> None:
    rp = rp_logout_client(app, backchannel_logout_uri=receiver.url("/bc"))
    signed_in_at(client, rp)
    receiver.status = 503
    local_logout(client)
    assert deliver(app) == 0
    receiver.status = 204
    [row] = owed(app)
    clock.advance((row.next_attempt_at - clock.now()).total_seconds())
    assert deliver(app) == 1
    [row] = owed(app)
    assert row.attempts == 2
    assert row.delivered_at is not None
    assert row.last_error is None
    assert len(receiver.received) == 2


def test_a_redirect_is_a_failure_and_is_not_followed(
    app: Flask, client: FlaskClient, receiver: Receiver, alice: None
) -> None:
    """An RP's logout endpoint answers 200 (2.8); a redirect is not followed: the logout
    token must not be carried to another address."""
    rp = rp_logout_client(app, backchannel_logout_uri=receiver.url("/bc"))
    signed_in_at(client, rp)
    receiver.status = 302
    receiver.headers = {"Location": receiver.url("/elsewhere")}
    local_logout(client)
    assert deliver(app) == 0
    assert [item.path for item in receiver.received] == ["/bc"]
    [row] = owed(app)
    assert row.attempts == 1
    assert row.delivered_at is None
    assert row.last_error
    assert "302" in row.last_error


def test_a_receiver_that_hangs_times_out(
    app: Flask, client: FlaskClient, receiver: Receiver, settings: Settings, alice: None
) -> None:
    rp = rp_logout_client(app, backchannel_logout_uri=receiver.url("/bc"))
    signed_in_at(client, rp)
    receiver.hang = True
    local_logout(client)
    started = time.monotonic()
    assert deliver(app) == 0
    elapsed = time.monotonic() - started
    assert elapsed < settings.backchannel_timeout_seconds + 5
    [row] = owed(app)
    assert row.attempts == 1
    assert row.delivered_at is None
    assert row.last_error


def test_a_session_without_back_channel_services_owes_nothing(
    app: Flask, client: FlaskClient, receiver: Receiver, alice: None
) -> None:
    site = signed_in_at(client, rp_logout_client(app))
    response = end_session(client, {"id_token_hint": site.tokens["id_token"]})
    assert response.status_code == 200
    assert not signed_in(client)
    assert owed(app) == []
    assert deliver(app) == 0
    assert receiver.received == []
