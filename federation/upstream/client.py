"""The city as a strict OpenID Connect relying party of an upstream provider.

Authlib's requests client (``OAuth2Session``) builds the authorization request (PKCE
S256, ``state``, ``nonce``) and redeems the code with the configured client
authentication; joserfc verifies the ID token. What is checked, and refused with an
``UpstreamRefused`` naming the reason (an audit code and a message a person can read):

* discovery: its ``issuer`` is exactly the configured one; its endpoints are https (or
  http on a loopback host, like the issuer);
* the authorization response: the RFC 9207 ``iss`` parameter equals the issuer (and is
  required when the upstream says it sends it), an ``error`` is reported as such;
* the ID token: a signature by a key of the upstream's JWKS, the algorithm taken from
  that key's type only (``none`` and HMAC are refused whatever the header says); an
  unknown ``kid`` refetches the JWKS once; ``iss``, ``aud`` (our client id), ``azp``
  (when present, or required with several audiences), ``exp``, ``iat`` and the
  ``nonce`` this browser's sign-in started with;
* userinfo (when the upstream has the endpoint): its ``sub`` equals the ID token's.

With ``private_key_jwt`` the code is redeemed with a client assertion (RFC 7523,
OpenID Connect Core 9) that Authlib's ``PrivateKeyJWT`` signs with the city's own
signing key (``ClientKey``, handed in by the container: the upstream has the city's
JWKS URI registered): ``iss`` = ``sub`` = our client id, ``aud`` the upstream's issuer
identifier (not the token endpoint: an assertion addressed to one issuer cannot be
replayed at another), ``exp`` a minute ahead, a fresh ``jti``.

Every request has bounded connect and read timeouts, follows no redirects and reads at
most ``MAX_DOCUMENT_BYTES``. Nothing here imports Flask.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.urls import add_params_to_uri
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from config.fields import is_loopback_host

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
TIMEOUTS = (CONNECT_TIMEOUT, READ_TIMEOUT)
MAX_DOCUMENT_BYTES = 256 * 1024
CLOCK_LEEWAY = 60  # seconds of skew allowed on exp / iat
DISCOVERY_PATH = "/.well-known/openid-configuration"
ASSERTION_LIFETIME = 60  # seconds a client assertion is valid
PRIVATE_KEY_JWT = "private_key_jwt"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 300  # seconds: an older logout token is refused (with the leeway)

# the algorithms a key of each type may sign with (never "none", never HMAC)
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    return message


UNREACHABLE = N_("The identity platform cannot be reached at the moment. Please try later.")
REFUSED = N_(
    "The answer of the identity platform could not be trusted, so nobody was signed in. "
    "Please start again."
)
CANCELLED = N_("The sign-in at the identity platform was cancelled or refused.")


class UpstreamRefused(Exception):
    """An answer the relying party does not accept. ``code`` is the audit's short code,
    ``message`` an English msgid a person can read, ``status`` the HTTP status of the
    page that says so."""

    def __init__(self, code: str, message: str = REFUSED, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UpstreamConfig:
    """An upstream as the relying party uses it (from the TOML file or the database)."""

    name: str
    issuer: str
    client_id: str
    client_secret: str | None
    token_auth_method: str = "client_secret_basic"
    scopes: tuple[str, ...] = ("openid",)
    identity_claim: str | None = None
    identity_type: str | None = None
    level_claim: str | None = None
    level_map: tuple[tuple[str, int], ...] = ()
    link_min_level: int = 3
    source: str = "cli"  # "cli" (the database) or "settings" (the TOML file)
    display_name: str | None = None

    @property
    def label(self) -> str:
        """What people see it called: its display name, else its name."""
        return self.display_name or self.name

    def mapped_level(self, asserted: object) -> int:
        """Our level for what the upstream asserted (1: nothing we can map)."""
        if asserted is None or isinstance(asserted, bool | dict | list):
            return 1
        for theirs, ours in self.level_map:
            if str(asserted) == theirs:
                return ours
        return 1


@dataclass
class ProviderMetadata:
    """The upstream's discovery document and key set."""

    discovery: dict[str, Any]
    jwks: dict[str, Any]

    def endpoint(self, name: str) -> str:
        value = self.discovery.get(name)
        if not isinstance(value, str):
            raise UpstreamRefused("discovery_incomplete", UNREACHABLE, 502)
        return value


@dataclass(frozen=True)
class ClientKey:
    """The private key the city signs client assertions with: one of its own signing
    keys, published at its JWKS URI under ``kid``."""

    kid: str
    alg: str
    key: RSAKey | ECKey


class ClientAssertion(PrivateKeyJWT):  # type: ignore[misc]
    """Authlib's ``private_key_jwt`` with the city's key, our clock, a short lifetime and
    the upstream's issuer as the audience (Authlib's default: the token endpoint and an
    hour)."""

    def __init__(self, key: ClientKey, *, audience: str, now: Callable[[], int]) -> None:
        super().__init__(alg=key.alg)
        self._key = key
        self._audience = audience
        self._now = now

    def sign(self, auth: Any, token_endpoint: str) -> str:  # noqa: ARG002 - aud: the issuer
        issued_at = self._now()
        return str(
            private_key_jwt_sign(
                self._key.key,
                client_id=auth.client_id,
                token_endpoint=self._audience,
                alg=self._key.alg,
                claims={"jti": secrets.token_urlsafe(32)},
                header={"kid": self._key.kid, "typ": "JWT"},
                issued_at=issued_at,
                expires_at=issued_at + ASSERTION_LIFETIME,
            )
        )


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class UpstreamIdentity:
    """What a checked sign-in at the upstream says: its subject and claims (the ID
    token's, with userinfo's added)."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    amr: tuple[str, ...] = field(default=())
    # the ID token itself (the hint of a logout at the upstream) and its ``sid`` (the
    # upstream's session, which its back-channel logout names)
    id_token: str = ""

    @property
    def session_id(self) -> str | None:
        sid = self.claims.get("sid")
        return sid if isinstance(sid, str) and 0 < len(sid) <= 255 else None


def _checked_url(url: object, what: str) -> str:
    if not isinstance(url, str):
        raise UpstreamRefused(f"{what}_missing", UNREACHABLE, 502)
    parts = urlsplit(url)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )
    if not secure or not parts.hostname or parts.username or parts.password:
        raise UpstreamRefused(f"{what}_insecure", UNREACHABLE, 502)
    return url


def _read_json(response: requests.Response) -> Any:
    body = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise UpstreamRefused("too_large", UNREACHABLE, 502)
    try:
        return json.loads(body)
    except ValueError:
        raise UpstreamRefused("not_json", UNREACHABLE, 502) from None


Timeouts = tuple[float, float]  # (connect, read) seconds


def get_json(
    url: str, *, headers: Mapping[str, str] | None = None, timeouts: Timeouts = TIMEOUTS
) -> Any:
    """GET a JSON document with the bounded timeouts, no redirects."""
    try:
        response = requests.get(
            url,
            headers=dict(headers or {}),
            timeout=timeouts,
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException:
        raise UpstreamRefused("unreachable", UNREACHABLE, 502) from None
    with response:
        if response.status_code != 200:
            raise UpstreamRefused(f"http_{response.status_code}", UNREACHABLE, 502)
        return _read_json(response)


def fetch_metadata(issuer: str, *, timeouts: Timeouts = TIMEOUTS) -> ProviderMetadata:
    """Discovery and the JWKS, checked: the issuer must be exactly ours."""

    def fetch(url: str) -> Any:
        return get_json(url, timeouts=timeouts)

    discovery = fetch(issuer.rstrip("/") + DISCOVERY_PATH)
    if not isinstance(discovery, dict):
        raise UpstreamRefused("discovery_malformed", UNREACHABLE, 502)
    if discovery.get("issuer") != issuer:
        raise UpstreamRefused("issuer_mismatch", UNREACHABLE, 502)
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        _checked_url(discovery.get(name), name)
    if "userinfo_endpoint" in discovery:
        _checked_url(discovery["userinfo_endpoint"], "userinfo_endpoint")
    jwks = fetch(discovery["jwks_uri"])
    _key_set(jwks)
    return ProviderMetadata(discovery=discovery, jwks=jwks)


def _key_set(jwks: object) -> KeySet:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise UpstreamRefused("jwks_malformed", UNREACHABLE, 502)
    # only asymmetric public keys: a symmetric key in a JWKS is never trusted
    keys = [k for k in jwks["keys"] if isinstance(k, dict) and k.get("kty") in {"RSA", "EC", "OKP"}]
    try:
        return KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError):
        raise UpstreamRefused("jwks_malformed", UNREACHABLE, 502) from None


def _algorithms_of(key: RSAKey | ECKey | OKPKey) -> frozenset[str]:
    if isinstance(key, RSAKey):
        return _RSA_ALGS
    if isinstance(key, ECKey):
        alg = _EC_ALGS.get(str(key.get("crv")))
        return frozenset({alg} if alg else ())
    return frozenset({"EdDSA", "Ed25519"})


class RelyingParty:
    """One upstream's relying party. ``metadata`` is the cached discovery and JWKS;
    ``refresh_jwks`` fetches the key set again (an unknown ``kid``) and returns it."""

    def __init__(
        self,
        config: UpstreamConfig,
        metadata: ProviderMetadata,
        *,
        redirect_uri: str,
        refresh_jwks: Callable[[], dict[str, Any]],
        now: Callable[[], int],
        timeouts: Timeouts = TIMEOUTS,
        client_key: Callable[[], ClientKey] | None = None,
    ) -> None:
        self._timeouts = timeouts
        self._client_key = client_key
        self._config = config
        self._metadata = metadata
        self._redirect_uri = redirect_uri
        self._refresh_jwks = refresh_jwks
        self._now = now

    def _session(self, *, redeem: bool = False) -> OAuth2Session:
        assertion = self._config.token_auth_method == PRIVATE_KEY_JWT
        if assertion and self._client_key is None:
            raise UpstreamRefused("auth_method_unsupported", UNREACHABLE, 502)
        session = OAuth2Session(
            client_id=self._config.client_id,
            client_secret=None if assertion else self._config.client_secret,
            token_endpoint_auth_method=self._config.token_auth_method,
            scope=" ".join(self._config.scopes),
            redirect_uri=self._redirect_uri,
            code_challenge_method="S256",
        )
        if assertion and redeem:
            assert self._client_key is not None
            session.register_client_auth_method(
                ClientAssertion(self._client_key(), audience=self._config.issuer, now=self._now)
            )
        return session

    def start(self) -> AuthorizationStart:
        """The authorization request: the configured scopes in full, PKCE S256, a fresh
        state and nonce."""
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(24)
        state = secrets.token_urlsafe(24)
        with self._session() as session:
            url, _ = session.create_authorization_url(
                self._metadata.endpoint("authorization_endpoint"),
                state=state,
                code_verifier=verifier,
                nonce=nonce,
            )
        assert create_s256_code_challenge(verifier) in url  # S256, never plain
        return AuthorizationStart(url=url, state=state, nonce=nonce, code_verifier=verifier)

    def finish(
        self, params: Mapping[str, str], *, nonce: str, code_verifier: str
    ) -> UpstreamIdentity:
        """Check the authorization response, redeem the code, check the ID token and
        userinfo. ``params`` are the callback's query parameters (``state`` already
        matched by the caller)."""
        issuer = self._config.issuer
        iss = params.get("iss")
        if iss is not None and iss != issuer:
            raise UpstreamRefused("iss_mismatch")
        if iss is None and self._metadata.discovery.get(
            "authorization_response_iss_parameter_supported"
        ):
            raise UpstreamRefused("iss_missing")
        if "error" in params:
            raise UpstreamRefused("upstream_error", CANCELLED, 400)
        code = params.get("code")
        if not code:
            raise UpstreamRefused("no_code")
        token = self._redeem(code, code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamRefused("no_id_token")
        claims = self.verify_id_token(id_token, nonce=nonce)
        subject = claims["sub"]
        merged = dict(claims)
        userinfo_url = self._metadata.discovery.get("userinfo_endpoint")
        access_token = token.get("access_token")
        if isinstance(userinfo_url, str) and isinstance(access_token, str):
            info = get_json(
                userinfo_url,
                headers={"Authorization": f"Bearer {access_token}"},
                timeouts=self._timeouts,
            )
            if not isinstance(info, dict) or info.get("sub") != subject:
                raise UpstreamRefused("userinfo_sub_mismatch")
            protocol = {"iss", "aud", "exp", "iat", "nonce", "azp", "sid"}
            merged.update({k: v for k, v in info.items() if k not in protocol})
        amr = claims.get("amr")
        amr_values = tuple(str(v) for v in amr) if isinstance(amr, list) else ()
        return UpstreamIdentity(
            issuer=issuer, subject=subject, claims=merged, amr=amr_values, id_token=id_token
        )

    def end_session_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str, state: str
    ) -> str | None:
        """Where to send the browser to end its session at the upstream (OpenID Connect
        RP-Initiated Logout 1.0), or None when the upstream has no such endpoint."""
        endpoint = self._metadata.discovery.get("end_session_endpoint")
        if endpoint is None:
            return None
        params = [("client_id", self._config.client_id)]
        if id_token_hint:
            params.append(("id_token_hint", id_token_hint))
        params += [("post_logout_redirect_uri", post_logout_redirect_uri), ("state", state)]
        url: str = add_params_to_uri(_checked_url(endpoint, "end_session_endpoint"), params)
        return url

    def _redeem(self, code: str, code_verifier: str) -> dict[str, Any]:
        try:
            with self._session(redeem=True) as session:
                token = session.fetch_token(
                    self._metadata.endpoint("token_endpoint"),
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    timeout=self._timeouts,
                    allow_redirects=False,
                )
        except requests.RequestException:
            raise UpstreamRefused("token_unreachable", UNREACHABLE, 502) from None
        except Exception as exc:
            if isinstance(exc, UpstreamRefused):
                raise
            raise UpstreamRefused("token_refused", UNREACHABLE, 502) from None
        return dict(token)

    # -- the ID token -----------------------------------------------------------------

    def _key_for(self, kid: object, alg: str) -> RSAKey | ECKey | OKPKey:
        for attempt in range(2):
            jwks = self._metadata.jwks if attempt == 0 else self._refreshed()
            keys = [
                key
                for key in _key_set(jwks).keys
                if isinstance(key, RSAKey | ECKey | OKPKey)
                and (kid is None or key.kid == kid)
                and alg in _algorithms_of(key)
                and key.get("use", "sig") == "sig"
                and key.get("alg", alg) == alg
            ]
            if len(keys) == 1:
                return keys[0]
            if len(keys) > 1:
                raise UpstreamRefused("key_ambiguous")
            if kid is None:
                break  # no kid: nothing a refetch could tell apart
        raise UpstreamRefused("unknown_key")

    def _refreshed(self) -> dict[str, Any]:
        jwks = self._refresh_jwks()
        self._metadata.jwks = jwks
        return jwks

    def _signed(self, token: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and claims of a JWT signed by a key of the upstream's JWKS, the
        algorithm taken from that key's type (never ``none``, never HMAC)."""
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError, TypeError):
            raise UpstreamRefused(f"{what}_malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg == "none" or alg.startswith("HS"):
            raise UpstreamRefused(f"{what}_alg")
        key = self._key_for(header.get("kid"), alg)
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError):
            raise UpstreamRefused(f"{what}_signature") from None
        return dict(header), dict(decoded.claims)

    def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        _header, claims = self._signed(id_token, "id_token")
        registry = JWTClaimsRegistry(
            now=self._now,
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": self._config.issuer},
            sub={"essential": True},
            aud={"essential": True, "value": self._config.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise UpstreamRefused(f"id_token_{_claim_of(exc)}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise UpstreamRefused("id_token_sub")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self._config.client_id:
            raise UpstreamRefused("id_token_azp")
        return claims

    def verify_logout_token(self, logout_token: str) -> dict[str, Any]:
        """A back-channel logout token (OpenID Connect Back-Channel Logout 1.0, 2.6):
        signed like an ID token; ``iss``, ``aud`` (our client id), a recent ``iat``, a
        ``jti``, the back-channel logout event, ``sub`` or ``sid``, and no ``nonce`` (so
        an ID token cannot pass for one)."""
        header, claims = self._signed(logout_token, "logout_token")
        typ = header.get("typ")
        if typ is not None and str(typ).lower() not in ("logout+jwt", "application/logout+jwt"):
            raise UpstreamRefused("logout_token_typ")
        registry = JWTClaimsRegistry(
            now=self._now,
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": self._config.issuer},
            aud={"essential": True, "value": self._config.client_id},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise UpstreamRefused(f"logout_token_{_claim_of(exc)}") from None
        iat = claims["iat"]
        if not isinstance(iat, int | float) or self._now() - iat > LOGOUT_TOKEN_MAX_AGE:
            raise UpstreamRefused("logout_token_stale")
        if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 255:
            raise UpstreamRefused("logout_token_jti")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise UpstreamRefused("logout_token_events")
        if "nonce" in claims:
            raise UpstreamRefused("logout_token_nonce")
        sub, sid = claims.get("sub"), claims.get("sid")
        for value in (sub, sid):
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 255):
                raise UpstreamRefused("logout_token_subject")
        if sub is None and sid is None:
            raise UpstreamRefused("logout_token_subject")
        return claims


def _claim_of(exc: JoseError) -> str:
    claim = getattr(exc, "claim", None)
    return str(claim) if claim else str(getattr(exc, "error", "claims"))
