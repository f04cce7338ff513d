"""A small OpenID provider on a free port that can misbehave on request: the city's
relying party is tested against what a conformance suite's malicious OP would send.

It publishes discovery, a JWKS (an RSA key; optionally a rotated one), answers the
token endpoint (client_secret_basic, or ``private_key_jwt`` once ``client_keys`` holds
the city's published keys; PKCE S256 checked) and userinfo. The browser's
visit to the authorization endpoint is played by ``authorize``: the test hands it the
query our ``/federation/NAME/login`` redirected to and gets the callback query back.
``mode`` chooses the misbehaviour of the next answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.e2e.servers import free_port

CLIENT_ID = "city"
CLIENT_SECRET = "city-secret-0123456789"
SUBJECT = "province-user-1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class FakeUpstream:
    url: str
    now: Callable[[], float]
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))
    mode: set[str] = field(default_factory=set)
    claims: dict[str, Any] = field(default_factory=dict)
    subject: str = SUBJECT
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    published: list[RSAKey] = field(default_factory=list)
    jwks_fetches: int = 0
    client_keys: KeySet | None = None  # the city's JWKS: private_key_jwt is required
    assertions: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    session_id: str = "upstream-session-1"  # the ID token's sid

    def __post_init__(self) -> None:
        self.published = [self.key]

    # -- the browser's visit --------------------------------------------------------------

    def authorize(self, location: str) -> dict[str, str]:
        """The callback's query for the authorization request at ``location``."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256"
        assert query["response_type"] == "code"
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        iss = "https://evil.example" if "wrong_iss_param" in self.mode else self.url
        return {"code": code, "state": query["state"], "iss": iss}

    def rotate(self) -> None:
        """A new signing key, published next to the old one (the ID token's kid is new)."""
        self.key = RSAKey.generate_key(2048, {"kid": f"k{len(self.published) + 1}"})
        self.published.append(self.key)

    # -- the endpoints -----------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        issuer = "https://other.example" if "wrong_discovery_issuer" in self.mode else self.url
        return {
            "issuer": issuer,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "userinfo_endpoint": self.url + "/userinfo",
            "jwks_uri": self.url + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "authorization_response_iss_parameter_supported": True,
            **(
                {"token_endpoint_auth_methods_supported": ["client_secret_basic"]}
                if "secrets_only" in self.mode
                else {}
            ),
            **(
                {}
                if "no_end_session" in self.mode
                else {"end_session_endpoint": self.url + "/logout"}
            ),
        }

    def _id_token(self, request: dict[str, str]) -> str:
        now = int(self.now())
        claims: dict[str, Any] = {
            "iss": "https://evil.example" if "wrong_iss" in self.mode else self.url,
            "sub": self.subject,
            "aud": "someone-else" if "wrong_aud" in self.mode else CLIENT_ID,
            "iat": now,
            "exp": now - 600 if "expired" in self.mode else now + 300,
            "nonce": "not-the-nonce" if "wrong_nonce" in self.mode else request["nonce"],
            "sid": self.session_id,
            **self.claims,
        }
        if "two_audiences" in self.mode:
            claims["aud"] = [CLIENT_ID, "someone-else"]
        if "alg_none" in self.mode:
            header = _b64({"alg": "none", "typ": "JWT"})
            return f"{header}.{_b64(claims)}."
        if "hs256" in self.mode:
            secret = OctKey.import_key(CLIENT_SECRET.encode())
            return jwt.encode({"alg": "HS256", "kid": self.key.kid}, claims, secret)
        if "unknown_key" in self.mode:
            stranger = RSAKey.generate_key(2048, {"kid": str(self.key.kid)})
            return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, stranger)
        token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        if "tampered" in self.mode:
            head, _body, signature = token.split(".")
            forged = dict(claims, sub="someone-important")
            token = f"{head}.{_b64(forged)}.{signature}"
        return token

    def logout_token(self, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A back-channel logout token for our client, signed with the current key;
        ``claims`` add to or replace the defaults (a value of None removes one)."""
        now = int(self.now())
        body: dict[str, Any] = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "jti": secrets.token_urlsafe(12),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            "sid": self.session_id,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        protected = {"alg": "RS256", "kid": self.key.kid, "typ": "logout+jwt", **(header or {})}
        return jwt.encode(protected, body, self.key)

    def token(self, request: Request) -> Response:
        if "slow" in self.mode:
            time.sleep(3)
        if "down" in self.mode:
            return Response("no", status=503)
        if not self._client_authenticated(request):
            return _json({"error": "invalid_client"}, 401)
        authorized = self.codes.pop(request.form.get("code", ""), None)
        if authorized is None:
            return _json({"error": "invalid_grant"}, 400)
        verifier = request.form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if challenge != authorized["code_challenge"]:
            return _json({"error": "invalid_grant"}, 400)
        if request.form.get("redirect_uri") != authorized["redirect_uri"]:
            return _json({"error": "invalid_grant"}, 400)
        return _json(
            {
                "access_token": "at-" + secrets.token_urlsafe(8),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self._id_token(authorized),
            }
        )

    def _client_authenticated(self, request: Request) -> bool:
        if self.client_keys is None:
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            return request.headers.get("Authorization") == expected
        if request.headers.get("Authorization") or request.form.get("client_secret"):
            return False
        if request.form.get("client_assertion_type") != ASSERTION_TYPE:
            return False
        try:
            token = jwt.decode(
                request.form.get("client_assertion", ""), self.client_keys, algorithms=["ES256"]
            )
        except JoseError:
            return False
        claims = dict(token.claims)
        self.assertions.append((dict(token.header), claims))
        now = self.now()
        return (
            claims.get("iss") == claims.get("sub") == CLIENT_ID
            and claims.get("aud") == self.url
            and isinstance(claims.get("exp"), int)
            and now < claims["exp"] <= now + 300
            and isinstance(claims.get("jti"), str)
            and [c["jti"] for _h, c in self.assertions].count(claims["jti"]) == 1
        )

    def userinfo(self) -> Response:
        sub = "someone-else" if "userinfo_sub" in self.mode else self.subject
        return _json({"sub": sub, **self.claims})

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        path = request.path
        if path == "/.well-known/openid-configuration":
            response = _json(self.discovery())
        elif path == "/jwks":
            self.jwks_fetches += 1
            response = _json({"keys": [k.as_dict(private=False) for k in self.published]})
        elif path == "/token" and request.method == "POST":
            response = self.token(request)
        elif path == "/userinfo":
            response = self.userinfo()
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _json(value: object, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")


class _Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's name
        pass


@contextmanager
def serving(now: Callable[[], float]) -> Iterator[FakeUpstream]:
    port = free_port()
    fake = FakeUpstream(url=f"http://127.0.0.1:{port}", now=now)
    server = make_server("127.0.0.1", port, fake, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(timeout=5)
