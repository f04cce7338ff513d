"""Interoperability with panva's ``openid-client`` (npm), an OpenID-certified relying
party library, against a real ``idp serve`` process.

The relying party is ``rp.mjs`` (Node.js), driven over JSON lines: it does discovery,
builds authorization URLs (PKCE S256, state, nonce), redeems codes with full ID token
validation, and calls userinfo, refresh, introspection, revocation, client credentials
and RP-initiated logout, each through the library's own API. This module plays the
browser with ``requests`` (sign-in form, consent page) and hands the callback URL to
the relying party. Whatever the library refuses fails the test; negative controls
(wrong nonce, forged ID token, wrong ``iss``/``state`` in the callback) show that it
does check.

One provider per module, on the embedded back end (SQLite in a temporary data
directory, in-process store, one worker), with three clients: ``client_secret_basic``,
``private_key_jwt`` (an ES256 key made here) and a public client (no authentication,
RS256 ID tokens).

Needs ``node`` (20 or newer) and ``tests/interop/node_modules`` (``npm ci`` here, run
by the fixture when missing). Without them the tests are skipped, unless
``IDP_TEST_INTEROP=required`` (as in CI): then they fail.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from joserfc.jwk import ECKey

from accounts.adapters.registry import import_records
from accounts.container import Accounts
from config.settings import build_settings
from idp.app import create_app
from idp.core.runtime import Runtime, db
from idp.oauth.clients import Registration
from idp.oauth.server import OAuthRuntime
from tests.e2e.servers import free_port, idp, running
from tests.interop.support import page_forms, require_node
from tests.support import STRONG_PASSWORD

pytestmark = pytest.mark.multiprocess

HERE = Path(__file__).resolve().parent
RP_SCRIPT = HERE / "rp.mjs"
CALL_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0

USERNAME = "interop-alice"
ACR_PASSWORD = "urn:dongguan:idp:acr:pwd"  # the default IDP_ACR_PASSWORD
USER_SCOPE = "openid profile email offline_access"
SERVICE_SCOPE = "interop.read"  # a non-user scope for client credentials
CLIENT_SCOPE = f"{USER_SCOPE} phone {SERVICE_SCOPE}"
# rp-basic's id has characters that HTTP Basic credentials must form-encode (RFC 6749
# 2.3.1): openid-client encodes them, so the provider must decode them.
BASIC, JWT, PUBLIC = "urn:interop:rp.basic", "rp-jwt", "rp-public"
# a client that needs real-name level 3 and asks for verified_claims
LEVEL_CLIENT, LEVEL_SCOPE = "rp-level3", "openid profile realname"
# the interop user's identity document, as the local registry copy holds it
PERSON_NAME, PERSON_NUMBER = "王小丽", "11010519491231002X"


# --- the relying party process ------------------------------------------------------------


class RpError(Exception):
    """The relying party (the library) refused: ``error`` is its description as JSON."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {json.dumps(error, ensure_ascii=False)}")
        self.error = error

    @property
    def text(self) -> str:
        """Message and causes, for matching what the library complained about."""
        return " | ".join([str(self.error.get("message")), *self.error.get("causes", [])])


class RelyingParty:
    """``node rp.mjs``: one request, one reply, in order."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self._process = process
        self._log = log
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _stderr(self) -> str:
        return self._log.read_text(errors="replace")[-3000:] if self._log.exists() else ""

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run ``op``; raises ``RpError`` when the library throws."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._process.stdin.flush()
        try:
            line = self._replies.get(timeout=CALL_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"rp.mjs did not answer {op} in {CALL_TIMEOUT} s:\n{self._stderr()}")
        if line is None:
            pytest.fail(f"rp.mjs exited during {op}:\n{self._stderr()}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RpError(op, reply["error"])
        result = reply["result"]
        assert isinstance(result, dict), reply
        return result

    def refuses(self, op: str, **args: Any) -> RpError:
        """Run ``op`` and return the library's error; fails if the library accepts."""
        with pytest.raises(RpError) as caught:
            self.call(op, **args)
        return caught.value

    def close(self) -> None:
        if self._process.poll() is None and self._process.stdin is not None:
            try:
                self._process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the locked packages installed (``npm ci`` if needed)."""
    return require_node()


# --- the provider -------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    issuer: str
    redirect_uri: str
    post_logout_redirect_uri: str
    secret: str  # rp-basic's client secret
    private_jwk: dict[str, Any]  # rp-jwt's ES256 key
    level_secret: str  # rp-level3's client secret
    data_dir: Path  # the provider's (for set-up the CLI cannot do)


def _idp(args: list[str], env: dict[str, str]) -> str:
    return idp(env, *args)


def _create_client(env: dict[str, str], client_id: str, *options: str) -> dict[str, Any]:
    output = _idp(["clients", "create", "--client-id", client_id, *options, "--json"], env)
    created = json.loads(output)
    assert isinstance(created, dict)
    return created


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    base = tmp_path_factory.mktemp("interop")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    # nothing listens there: the browser stops at the redirect, like a real one would
    # hand the callback to the relying party
    rp_base = f"http://127.0.0.1:{free_port()}"
    redirect_uri, post_logout = f"{rp_base}/callback", f"{rp_base}/signed-out"
    env = {
        "IDP_DATA_DIR": str(base / "data"),
        "IDP_ISSUER": issuer,
        "IDP_LOG_FORMAT": "text",
        "IDP_LOG_LEVEL": "WARNING",
    }
    _idp(["init"], env)
    _idp(["users", "create", "--username", USERNAME, "--password", STRONG_PASSWORD], env)
    common = [
        "--redirect-uri",
        redirect_uri,
        "--post-logout-redirect-uri",
        post_logout,
        "--scope",
        CLIENT_SCOPE,
    ]
    grants = ["authorization_code", "refresh_token", "client_credentials"]
    confidential = [*common, *(arg for g in grants for arg in ("--grant-type", g))]
    basic = _create_client(env, BASIC, *confidential)
    assert basic["token_endpoint_auth_method"] == "client_secret_basic"

    key = ECKey.generate_key("P-256", auto_kid=True)
    public_jwk = {**key.as_dict(private=False), "alg": "ES256", "use": "sig"}
    jwks_file = base / "rp-jwt.jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk]}))
    signed = _create_client(
        env,
        JWT,
        *confidential,
        "--token-endpoint-auth-method",
        "private_key_jwt",
        "--jwks",
        str(jwks_file),
    )
    assert "client_secret" not in signed
    public = _create_client(env, PUBLIC, *common, "--public", "--id-token-alg", "RS256")
    assert public["token_endpoint_auth_method"] == "none"
    registry_file = base / "registry.csv"
    registry_file.write_text(f"number,name\n{PERSON_NUMBER},{PERSON_NAME}\n", encoding="utf-8")
    _idp(["registry", "import", "--kind", "person", str(registry_file)], env)
    level = _create_client(
        env,
        LEVEL_CLIENT,
        "--redirect-uri",
        redirect_uri,
        "--scope",
        LEVEL_SCOPE,
        "--first-party",
        "--min-level",
        "3",
    )

    with running(["serve", "--port", str(port)], env, port, base / "server.log") as (url, _):
        assert url == issuer
        yield Provider(
            issuer=issuer,
            redirect_uri=redirect_uri,
            post_logout_redirect_uri=post_logout,
            secret=str(basic["client_secret"]),
            private_jwk=key.as_dict(private=True),
            level_secret=str(level["client_secret"]),
            data_dir=base / "data",
        )


@pytest.fixture(scope="module")
def rp(
    node: str, provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelyingParty]:
    """The relying party with the three clients configured by ``discovery()``."""
    log = tmp_path_factory.mktemp("rp") / "rp.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [node, str(RP_SCRIPT)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    party = RelyingParty(process, log)
    try:
        auths: dict[str, dict[str, Any]] = {
            BASIC: {"method": "client_secret_basic", "client_secret": provider.secret},
            JWT: {"method": "private_key_jwt", "jwk": provider.private_jwk},
            PUBLIC: {"method": "none"},
            LEVEL_CLIENT: {"method": "client_secret_basic", "client_secret": provider.level_secret},
        }
        for client_id, auth in auths.items():
            party.call(
                "discover",
                name=client_id,
                issuer=provider.issuer,
                client_id=client_id,
                auth=auth,
                metadata={
                    "redirect_uris": [provider.redirect_uri],
                    "id_token_signed_response_alg": "RS256" if client_id == PUBLIC else "ES256",
                },
            )
        yield party
    finally:
        party.close()


# --- the browser --------------------------------------------------------------------------


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def browse_to_callback(
    http: requests.Session, url: str, redirect_uri: str, username: str = USERNAME
) -> tuple[str, list[str]]:
    """Follow the authorization request like a browser: sign in, approve (and choose
    the first organisation offered), and return the redirect to the client (not
    followed) and the steps on the way."""
    visited = [url]
    response = http.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    for _ in range(12):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if _without_query(location) == redirect_uri:
                return location, visited
            visited.append(location)
            response = http.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT)
            continue
        assert response.status_code == 200, (visited, response.status_code, response.text[:800])
        forms = page_forms(response.text)
        if "/login" in forms:
            data = {**forms["/login"].fields, "username": username, "password": STRONG_PASSWORD}
            target = "/login"
        elif "/account/act-for" in forms:  # the organisation picker
            choice = re.search(r'name="authorisation" value="([^"]+)"', response.text)
            assert choice, response.text[:800]
            data = {**forms["/account/act-for"].fields, "authorisation": choice.group(1)}
            target = "/account/act-for"
        elif "/authorize/consent" in forms:
            data = {**forms["/authorize/consent"].fields, "consent": "approve"}
            target = "/authorize/consent"
        elif "/authorize/level" in forms:  # step-up: raise the real-name level
            link = re.search(r'href="(/account/realname\?[^"]+)"', response.text)
            assert link, response.text[:800]
            location = urljoin(response.url, html.unescape(link.group(1)))
            visited.append(location)
            response = http.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT)
            continue
        elif "/account/realname" in forms:
            data = {
                **forms["/account/realname"].fields,
                "name": PERSON_NAME,
                "id_number": PERSON_NUMBER,
            }
            target = "/account/realname"
        else:
            pytest.fail(f"unexpected page after {visited}:\n{response.text[:800]}")
        assert data.get("csrf_token"), f"no CSRF token on {response.url}"
        visited.append(f"POST {target}")
        response = http.post(
            urljoin(response.url, target), data=data, allow_redirects=False, timeout=HTTP_TIMEOUT
        )
    pytest.fail(f"the flow did not reach the client: {visited}")


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# --- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    flow: str
    url: str
    state: str
    nonce: str
    started: float
    steps: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def with_params(self, **changes: str | None) -> str:
        params = {**self.params, **changes}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return urlunsplit((*urlsplit(self.url)[:3], query, ""))


def authorize(
    rp: RelyingParty,
    browser: requests.Session,
    provider: Provider,
    client: str,
    *,
    scope: str = USER_SCOPE,
    username: str = USERNAME,
    **params: str,
) -> Callback:
    started = time.time()
    request = rp.call(
        "authorization_url",
        client=client,
        redirect_uri=provider.redirect_uri,
        scope=scope,
        params=params,
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(request["url"]).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == request["code_challenge"]
    assert (query["client_id"], query["response_type"]) == (client, "code")
    assert (query["state"], query["nonce"]) == (request["state"], request["nonce"])
    url, steps = browse_to_callback(browser, request["url"], provider.redirect_uri, username)
    return Callback(request["flow"], url, request["state"], request["nonce"], started, tuple(steps))


def redeem(rp: RelyingParty, client: str, callback: Callback, **extra: Any) -> dict[str, Any]:
    return rp.call(
        "code_grant", client=client, flow=callback.flow, callback_url=callback.url, **extra
    )


def jwt_header(token: str) -> dict[str, Any]:
    segment = token.split(".", maxsplit=1)[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(header, dict)
    return header


def assert_id_token(
    tokens: dict[str, Any], provider: Provider, client: str, callback: Callback
) -> dict[str, Any]:
    """The claims the library returned after validating the ID token; returns them."""
    claims: dict[str, Any] = tokens["claims"]
    assert claims["iss"] == provider.issuer
    assert claims["aud"] in (client, [client])
    assert claims["nonce"] == callback.nonce
    assert isinstance(claims["sub"], str)
    assert claims["sub"]
    assert claims["acr"] == ACR_PASSWORD
    assert claims["amr"] == ["pwd"]
    assert isinstance(claims["sid"], str)
    assert claims["sid"]
    assert isinstance(claims["auth_time"], int)
    assert callback.started - 2 <= claims["auth_time"] <= time.time() + 1
    assert claims["iat"] <= claims["exp"]
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    return claims


def at_hash(access_token: str) -> str:
    """OpenID Connect Core 3.1.3.6 (the library does not check it in the code flow)."""
    digest = hashlib.sha256(access_token.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def assert_refused(error: RpError, oauth_error: str, status: int = 400) -> None:
    """The provider answered an OAuth error, which the library reported as such (in the
    body, or for a 401 in the WWW-Authenticate challenge)."""
    assert error.error["name"] in {"ResponseBodyError", "WWWAuthenticateChallengeError"}, error
    assert (error.error["error"], error.error["status"]) == (oauth_error, status), error


# --- tests --------------------------------------------------------------------------------


def test_discovery_is_accepted(rp: RelyingParty, provider: Provider) -> None:
    metadata = rp.call(
        "discover",
        name="probe",
        issuer=provider.issuer,
        client_id=BASIC,
        auth={"method": "client_secret_basic", "client_secret": provider.secret},
    )
    server = metadata["server"]
    assert server["issuer"] == provider.issuer
    assert server["authorization_response_iss_parameter_supported"] is True
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["end_session_endpoint"] == f"{provider.issuer}/session/end"


def test_code_flow_with_client_secret_basic_and_refresh_rotation(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    callback = authorize(rp, browser, provider, BASIC)
    assert callback.params["iss"] == provider.issuer  # RFC 9207
    assert callback.params["state"] == callback.state

    # The library checks the callback before it spends the code (RFC 9207, state).
    forged_iss = rp.refuses(
        "code_grant",
        client=BASIC,
        flow=callback.flow,
        callback_url=callback.with_params(iss="http://127.0.0.1:1"),
    )
    assert 'unexpected "iss"' in forged_iss.text
    missing_iss = rp.refuses(
        "code_grant", client=BASIC, flow=callback.flow, callback_url=callback.with_params(iss=None)
    )
    assert '"iss" (issuer) missing' in missing_iss.text
    wrong_state = rp.refuses(
        "code_grant", client=BASIC, flow=callback.flow, callback_url=callback.with_params(state="x")
    )
    assert '"state"' in wrong_state.text

    tokens = redeem(rp, BASIC, callback)
    claims = assert_id_token(tokens, provider, BASIC, callback)
    assert jwt_header(tokens["id_token"])["alg"] == "ES256"
    assert tokens["token_type"].lower() == "bearer"
    assert set(tokens["scope"].split()) == set(USER_SCOPE.split())
    assert tokens["refresh_token"]

    info = rp.call(
        "userinfo", client=BASIC, access_token=tokens["access_token"], expected_sub=claims["sub"]
    )
    assert info["sub"] == claims["sub"]
    assert info["preferred_username"] == USERNAME
    wrong_sub = rp.refuses(
        "userinfo", client=BASIC, access_token=tokens["access_token"], expected_sub="someone-else"
    )
    assert "sub" in wrong_sub.text

    access = rp.call("introspect", client=BASIC, token=tokens["access_token"])
    assert access["active"] is True
    assert (access["sub"], access["client_id"]) == (claims["sub"], BASIC)
    assert set(access["scope"].split()) == set(USER_SCOPE.split())
    refresh = rp.call(
        "introspect", client=BASIC, token=tokens["refresh_token"], token_type_hint="refresh_token"
    )
    assert refresh["active"] is True
    assert refresh["client_id"] == BASIC

    # Rotation: a new refresh token; the old one is refused, and presenting it again
    # revoked the whole grant (RFC 9700 4.14.2), so the new one is dead too.
    renewed = rp.call("refresh", client=BASIC, refresh_token=tokens["refresh_token"])
    assert renewed["refresh_token"]
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert renewed["access_token"] != tokens["access_token"]
    # OpenID Connect Core 12.2: same subject, session and sign-in time, no nonce
    again = renewed["claims"]
    assert (again["sub"], again["sid"], again["auth_time"]) == (
        claims["sub"],
        claims["sid"],
        claims["auth_time"],
    )
    assert "nonce" not in again
    assert again["at_hash"] == at_hash(renewed["access_token"])
    still = rp.call(
        "userinfo", client=BASIC, access_token=renewed["access_token"], expected_sub=claims["sub"]
    )
    assert still["sub"] == claims["sub"]

    assert_refused(
        rp.refuses("refresh", client=BASIC, refresh_token=tokens["refresh_token"]), "invalid_grant"
    )
    assert_refused(
        rp.refuses("refresh", client=BASIC, refresh_token=renewed["refresh_token"]), "invalid_grant"
    )
    assert rp.call("introspect", client=BASIC, token=renewed["access_token"])["active"] is False
    revoked = rp.refuses(
        "userinfo", client=BASIC, access_token=renewed["access_token"], expected_sub=claims["sub"]
    )
    assert revoked.error["name"] == "WWWAuthenticateChallengeError", revoked
    assert revoked.error["status"] == 401


def test_revocation_and_introspection(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    tokens = redeem(rp, BASIC, authorize(rp, browser, provider, BASIC))
    access_token, refresh_token = tokens["access_token"], tokens["refresh_token"]

    assert rp.call("introspect", client=BASIC, token=access_token)["active"] is True
    rp.call("revoke", client=BASIC, token=access_token, token_type_hint="access_token")
    assert rp.call("introspect", client=BASIC, token=access_token)["active"] is False
    refused = rp.refuses(
        "userinfo", client=BASIC, access_token=access_token, expected_sub=tokens["claims"]["sub"]
    )
    assert refused.error["status"] == 401

    hint = {"token_type_hint": "refresh_token"}
    assert rp.call("introspect", client=BASIC, token=refresh_token, **hint)["active"] is True
    rp.call("revoke", client=BASIC, token=refresh_token, **hint)
    assert rp.call("introspect", client=BASIC, token=refresh_token, **hint)["active"] is False
    assert_refused(
        rp.refuses("refresh", client=BASIC, refresh_token=refresh_token), "invalid_grant"
    )
    # revoking again is no error (RFC 7009 2.2)
    rp.call("revoke", client=BASIC, token=refresh_token, **hint)


def test_code_flow_with_private_key_jwt(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    callback = authorize(rp, browser, provider, JWT, max_age="600")
    tokens = redeem(rp, JWT, callback, checks={"maxAge": 600})
    claims = assert_id_token(tokens, provider, JWT, callback)
    info = rp.call(
        "userinfo", client=JWT, access_token=tokens["access_token"], expected_sub=claims["sub"]
    )
    assert info["sub"] == claims["sub"]
    assert rp.call("introspect", client=JWT, token=tokens["access_token"])["active"] is True

    renewed = rp.call("refresh", client=JWT, refresh_token=tokens["refresh_token"])
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert rp.call("introspect", client=JWT, token=renewed["access_token"])["active"] is True

    # The same code again: refused, and everything issued from it is revoked.
    assert_refused(
        rp.refuses("code_grant", client=JWT, flow=callback.flow, callback_url=callback.url),
        "invalid_grant",
    )
    assert rp.call("introspect", client=JWT, token=renewed["access_token"])["active"] is False
    assert_refused(
        rp.refuses("refresh", client=JWT, refresh_token=renewed["refresh_token"]), "invalid_grant"
    )


def test_public_client_without_authentication(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    callback = authorize(rp, browser, provider, PUBLIC)
    # the only flow of this client: sign-in and consent pages were both shown
    assert {"POST /login", "POST /authorize/consent"} <= set(callback.steps), callback.steps
    tokens = redeem(rp, PUBLIC, callback)
    claims = assert_id_token(tokens, provider, PUBLIC, callback)
    assert jwt_header(tokens["id_token"])["alg"] == "RS256"
    info = rp.call(
        "userinfo", client=PUBLIC, access_token=tokens["access_token"], expected_sub=claims["sub"]
    )
    assert info["sub"] == claims["sub"]

    renewed = rp.call("refresh", client=PUBLIC, refresh_token=tokens["refresh_token"])
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert renewed["claims"]["sub"] == claims["sub"]
    rp.call(
        "revoke", client=PUBLIC, token=renewed["refresh_token"], token_type_hint="refresh_token"
    )
    assert_refused(
        rp.refuses("refresh", client=PUBLIC, refresh_token=renewed["refresh_token"]),
        "invalid_grant",
    )


@pytest.mark.parametrize("client", [BASIC, JWT])
def test_client_credentials(rp: RelyingParty, client: str) -> None:
    tokens = rp.call("client_credentials", client=client, scope=SERVICE_SCOPE)
    assert tokens["scope"] == SERVICE_SCOPE
    assert tokens["refresh_token"] is None
    assert tokens["id_token"] is None
    assert tokens["expires_in"] > 0
    described = rp.call("introspect", client=client, token=tokens["access_token"])
    assert described["active"] is True
    assert (described["sub"], described["client_id"]) == (client, client)
    # a client acting for itself gets no scope about a person
    assert_refused(rp.refuses("client_credentials", client=client, scope="openid"), "invalid_scope")


def test_wrong_client_credentials_are_refused(rp: RelyingParty, provider: Provider) -> None:
    basic = f"{BASIC} (wrong secret)"
    auth: dict[str, Any] = {"method": "client_secret_basic", "client_secret": provider.secret + "x"}
    rp.call("discover", name=basic, issuer=provider.issuer, client_id=BASIC, auth=auth)
    # credentials in the Authorization header: 401 (RFC 6749 5.2)
    refused = rp.refuses("client_credentials", client=basic, scope=SERVICE_SCOPE)
    assert_refused(refused, "invalid_client", 401)

    signed = f"{JWT} (unregistered key)"
    stranger = ECKey.generate_key("P-256", auto_kid=True).as_dict(private=True)
    auth = {"method": "private_key_jwt", "jwk": stranger}
    rp.call("discover", name=signed, issuer=provider.issuer, client_id=JWT, auth=auth)
    refused = rp.refuses("client_credentials", client=signed, scope=SERVICE_SCOPE)
    # an assertion in the body may get 400 or 401
    assert_refused(refused, "invalid_client", refused.error["status"])
    assert refused.error["status"] in {400, 401}


def test_library_rejects_a_wrong_nonce(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    callback = authorize(rp, browser, provider, BASIC)
    refused = rp.refuses(
        "code_grant",
        client=BASIC,
        flow=callback.flow,
        callback_url=callback.url,
        checks={"expectedNonce": "not-the-nonce-that-was-sent"},
    )
    assert refused.error["code"] == "OAUTH_JWT_CLAIM_COMPARISON_FAILED", refused
    assert '"nonce"' in refused.text


def test_library_rejects_a_forged_id_token(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    callback = authorize(rp, browser, provider, BASIC)
    refused = rp.refuses(
        "code_grant", client=BASIC, flow=callback.flow, callback_url=callback.url, tamper="id_token"
    )
    assert "signature verification failed" in refused.text, refused


def test_silent_authentication_then_rp_initiated_logout(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    first = redeem(rp, BASIC, authorize(rp, browser, provider, BASIC))

    # While signed in, prompt=none gets a code without any page (same session).
    silent = authorize(rp, browser, provider, BASIC, prompt="none")
    assert not [step for step in silent.steps if step.startswith("POST")], silent.steps
    quiet = redeem(rp, BASIC, silent)["claims"]
    assert (quiet["sub"], quiet["sid"], quiet["auth_time"]) == (
        first["claims"]["sub"],
        first["claims"]["sid"],
        first["claims"]["auth_time"],
    )

    end = rp.call(
        "end_session_url",
        client=BASIC,
        params={
            "id_token_hint": first["id_token"],
            "post_logout_redirect_uri": provider.post_logout_redirect_uri,
            "state": "bye-123",
        },
    )
    assert end["url"].startswith(f"{provider.issuer}/session/end?")
    response = browser.get(end["url"], allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert response.status_code in {302, 303}, response.text[:500]
    assert response.headers["Location"] == f"{provider.post_logout_redirect_uri}?state=bye-123"

    # Signed out: prompt=none now comes back with login_required, which the library
    # reports as such (after checking the error response's iss and state).
    request = rp.call(
        "authorization_url",
        client=BASIC,
        redirect_uri=provider.redirect_uri,
        scope="openid",
        params={"prompt": "none"},
    )
    response = browser.get(request["url"], allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert response.status_code == 302, response.text[:500]
    assert _without_query(response.headers["Location"]) == provider.redirect_uri
    refused = rp.refuses(
        "code_grant", client=BASIC, flow=request["flow"], callback_url=response.headers["Location"]
    )
    assert refused.error["name"] == "AuthorizationResponseError", refused
    assert refused.error["error"] == "login_required"


def test_step_up_to_a_client_minimum_level_then_verified_claims(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    """A client registered with real-name level 3: silent authentication below it is
    refused with interaction_required (reported by the library as an authorization
    error); interactively the user raises the level on the way and the library gets a
    valid ID token and userinfo with verified_claims."""
    redeem(rp, BASIC, authorize(rp, browser, provider, BASIC))  # signed in, level 1
    request = rp.call(
        "authorization_url",
        client=LEVEL_CLIENT,
        redirect_uri=provider.redirect_uri,
        scope=LEVEL_SCOPE,
        params={"prompt": "none"},
    )
    response = browser.get(request["url"], allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert response.status_code == 302, response.text[:500]
    refused = rp.refuses(
        "code_grant",
        client=LEVEL_CLIENT,
        flow=request["flow"],
        callback_url=response.headers["Location"],
    )
    assert refused.error["name"] == "AuthorizationResponseError", refused
    assert refused.error["error"] == "interaction_required"

    callback = authorize(rp, browser, provider, LEVEL_CLIENT, scope=LEVEL_SCOPE)
    assert "POST /account/realname" in callback.steps, callback.steps
    tokens = redeem(rp, LEVEL_CLIENT, callback)
    assert_id_token(tokens, provider, LEVEL_CLIENT, callback)
    info = rp.call(
        "userinfo",
        client=LEVEL_CLIENT,
        access_token=tokens["access_token"],
        expected_sub=tokens["claims"]["sub"],
    )
    verified = info["verified_claims"]
    assert verified["verification"]["assurance_level"] == "3"
    assert verified["verification"]["trust_framework"] == "cn_gd_kexin"
    assert verified["claims"]["name"] == PERSON_NAME
    assert verified["claims"]["document_number"] == "110***********002X"


# --- acting for an organisation -----------------------------------------------------------

ORG_CLIENT, ORG_SCOPE = "rp-org", "openid profile enterprise"
ORG_USER, ORG_PERSON, ORG_NUMBER = "interop-rep", "李四", "110105194912310038"
ORG_CODE, ORG_NAME = "91110000600037341L", "东莞示例科技有限公司"


def _organisation_set_up(provider: Provider) -> str:
    """A legal representative who claimed an enterprise, and a client asking for the
    scope ``enterprise`` (what the CLI cannot do yet), written to the provider's
    database by an app of this process; returns the client's secret."""
    settings = build_settings(
        {
            "data_dir": provider.data_dir,
            "issuer": provider.issuer,
            "log_format": "text",
            "log_level": "WARNING",
        }
    )
    app = create_app(settings)
    try:
        with app.app_context():
            cipher = Runtime.of().keys.cipher
            people = f"number,name\n{ORG_NUMBER},{ORG_PERSON}\n"
            import_records(db(), cipher, "person", io.StringIO(people))
            organisations = f"number,name,representative\n{ORG_CODE},{ORG_NAME},{ORG_NUMBER}\n"
            import_records(db(), cipher, "organisation", io.StringIO(organisations))
            accounts = Accounts.of()
            user = accounts.account_service(actor="test").register(ORG_USER, STRONG_PASSWORD)
            accounts.realname_service().verify_with_registry(user, ORG_PERSON, ORG_NUMBER)
            accounts.authorisation_service().claim(user, ORG_CODE, ORG_NAME)
            _, secret = OAuthRuntime.of().clients.create(
                db(),
                Registration(
                    client_id=ORG_CLIENT,
                    redirect_uris=[provider.redirect_uri],
                    scope=ORG_SCOPE,
                    first_party=True,
                ),
            )
    finally:
        Runtime.of(app).database.dispose()
    assert secret is not None
    return secret


def test_org_and_act_claims_through_the_library(
    rp: RelyingParty, browser: requests.Session, provider: Provider
) -> None:
    secret = _organisation_set_up(provider)
    rp.call(
        "discover",
        name=ORG_CLIENT,
        issuer=provider.issuer,
        client_id=ORG_CLIENT,
        auth={"method": "client_secret_basic", "client_secret": secret},
        metadata={"redirect_uris": [provider.redirect_uri]},
    )
    callback = authorize(
        rp, browser, provider, ORG_CLIENT, scope=ORG_SCOPE, username=ORG_USER, org_hint=ORG_CODE
    )
    assert any("/account/act-for" in step for step in callback.steps), callback.steps
    tokens = redeem(rp, ORG_CLIENT, callback)
    claims = tokens["claims"]  # validated by the library
    assert claims["org"]["uscc"] == ORG_CODE
    assert claims["org"]["name"] == ORG_NAME
    assert (claims["org"]["type"], claims["org"]["role"]) == ("enterprise", "legal_representative")
    assert claims["org"]["level"] == 3
    assert claims["org"]["authorisation_expires"] is None
    assert claims["act"] == {"sub": claims["sub"]}
    info = rp.call(
        "userinfo",
        client=ORG_CLIENT,
        access_token=tokens["access_token"],
        expected_sub=claims["sub"],
    )
    assert info["org"] == claims["org"]
    assert info["act"] == {"sub": claims["sub"]}
    access = rp.call("introspect", client=BASIC, token=tokens["access_token"])
    assert access["active"] is True
    assert access["org"]["authorisation"] == claims["org"]["authorisation"]
