"""A client's own access tokens for this service's resource APIs (SCIM provisioning):
the token is checked as every access token is (signature, issuer, expiry, revocation),
then its scopes are narrowed to those its client is still registered for, so taking a
scope away from a client (or removing the client) takes effect on its live tokens.

``UpstreamClientKey`` hands the upstream relying party (``federation.upstream``, below
this layer) the key it signs its ``private_key_jwt`` client assertions with: this
provider's active signing key, published at its JWKS URI."""

from __future__ import annotations

from typing import Any

from federation.upstream.client import ClientKey
from idp.oauth.server import OAuthRuntime


class ClientTokens:
    """``federation.container.BearerCheck`` for the provider's access tokens."""

    def __init__(self, provider: OAuthRuntime) -> None:
        self._provider = provider

    def __call__(self, token: str) -> dict[str, Any] | None:
        claims = self._provider.verifier.claims(token)
        if claims is None:
            return None
        client = self._provider.clients.get(claims.get("client_id"))
        if client is None:
            return None
        scopes = str(claims.get("scope", "")).split()
        return {**claims, "scope": " ".join(s for s in scopes if s in client.scopes)}


class UpstreamClientKey:
    """``Callable[[], ClientKey]``: the active signing key (ES256), read at each call so
    a rotation is followed."""

    def __init__(self, provider: OAuthRuntime) -> None:
        self._provider = provider

    def __call__(self) -> ClientKey:
        entry = self._provider.keys.signing_key()
        return ClientKey(kid=entry.kid, alg=entry.alg, key=entry.key)
