"""``private_key_jwt`` client authentication (RFC 7523, OpenID Connect Core 9).

Built on Authlib's ``JWTBearerClientAssertion``: the assertion must be signed by one of
the client's registered keys (inline JWKS or ``jwks_uri``), with ``iss`` = ``sub`` =
client id, an audience of this issuer or one of its endpoints, a short lifetime, and a
``jti`` never seen before (kept in the short-lived store until the assertion expires).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, KeySet

from idp.core.clock import Clock, SystemClock
from idp.core.store import Store
from idp.oauth.clients import ClientInfo
from idp.oauth.keys import CLIENT_ASSERTION_ALGS

MAX_ASSERTION_LIFETIME = 600
JWKS_CACHE_SECONDS = 300
JWKS_REFETCH_COOLDOWN_SECONDS = 10
JWKS_MAX_BYTES = 100_000


class JwksFetcher:
    """Fetches and caches clients' ``jwks_uri`` documents."""

    def __init__(self, timeout: float = 3.0, clock: Clock | None = None) -> None:
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._fetched: dict[str, float] = {}  # when each URI was last fetched
        self._lock = threading.Lock()

    def resolver(self, uri: str) -> Callable[[GuestProtocol], KeySet]:
        """The keys to check one signed token with: the cached set, fetched again when
        it has no key with the token's ``kid`` (the client rolled its keys over), at
        most once per ``JWKS_REFETCH_COOLDOWN_SECONDS`` per URI, so that made-up kids
        cannot make this server hammer the client's."""

        def resolve(token: GuestProtocol) -> KeySet:
            keyset = self.get(uri)
            kid = token.headers().get("kid")
            if isinstance(kid, str) and all(key.kid != kid for key in keyset.keys):
                with self._lock:
                    last = self._fetched.get(uri, float("-inf"))
                due = self._now() >= last + JWKS_REFETCH_COOLDOWN_SECONDS
                if due:
                    keyset = self.get(uri, fresh=True)
            return keyset

        return resolve

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def get(self, uri: str, *, fresh: bool = False) -> KeySet:
        cached = self._cache.get(uri)
        if cached and not fresh and cached[0] > self._now():
            return cached[1]
        request = urllib.request.Request(uri, headers={"Accept": "application/json"})  # noqa: S310 - registered https/loopback URI
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read(JWKS_MAX_BYTES + 1)
        except OSError as exc:
            raise InvalidClientError(description=f"cannot fetch the client's JWKS: {exc}") from None
        if len(body) > JWKS_MAX_BYTES:
            raise InvalidClientError(description="the client's JWKS is too large")
        try:
            keyset = KeySet.import_key_set(json.loads(body))
        except (ValueError, JoseError, TypeError):
            raise InvalidClientError(description="the client's JWKS is not valid") from None
        with self._lock:
            now = self._now()
            self._cache[uri] = (now + JWKS_CACHE_SECONDS, keyset)
            self._fetched[uri] = now
        return keyset


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: list[str], store: Store, fetcher: JwksFetcher) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._audiences = audiences
        self._store = store
        self._fetcher = fetcher

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(
        self, client: ClientInfo
    ) -> KeySet | Callable[[GuestProtocol], KeySet]:
        if client.jwks:
            try:
                return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError):
                raise InvalidClientError(description="the client's JWKS is not valid") from None
        if client.jwks_uri:
            return self._fetcher.resolver(client.jwks_uri)
        raise InvalidClientError(description="the client has no keys registered")

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=CLIENT_ASSERTION_ALGS)
        except JoseError as exc:
            raise InvalidClientError(description=exc.description) from exc
        claims = dict(token.claims)
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp - time.time() > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(
                description=f"the assertion must expire within {MAX_ASSERTION_LIFETIME} s"
            )
        self.verify_claims(claims)  # audience, iss = sub, and a jti not seen before
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """First use of this ``jti`` for this client (replay protection)."""
        digest = hashlib.sha256(f"{claims['sub']}\x00{jti}".encode()).hexdigest()
        ttl = max(int(claims["exp"]) - time.time(), 0) + self.leeway
        return self._store.add(f"jti:{digest}", b"1", ttl)
