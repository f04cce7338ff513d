"""Token introspection (RFC 7662) and revocation (RFC 7009) on Authlib's endpoints.

Access tokens are JWTs: introspection checks the signature (cached per worker), the
expiry and the revocation list in the store, and needs no database. Refresh tokens
are looked up by their MAC and are only described to the client they were issued to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import rfc7009, rfc7662

from idp.core.runtime import db
from idp.oauth.clients import ClientInfo
from idp.oauth.grants import ALL_AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS
from idp.oauth.server import IdpAuthorizationServer, OAuthRuntime
from idp.oauth.tokens import REFRESH_PREFIX


@dataclass
class FoundToken:
    kind: str  # "access_token" | "refresh_token"
    client_id: str
    claims: dict[str, Any] = field(default_factory=dict)
    grant_id: str | None = None

    # -- what Authlib asks of a token
    def check_client(self, client: ClientInfo) -> bool:
        return self.client_id == client.client_id

    def is_expired(self) -> bool:
        return False  # found tokens are unexpired: see _find

    def is_revoked(self) -> bool:
        return False


def _find(provider: OAuthRuntime, token: str) -> FoundToken | None:
    """A token this service issued that is still usable (else None: inactive)."""
    if token.startswith(REFRESH_PREFIX):
        described = provider.tokens().describe_refresh_token(token)
        if described is None:
            return None
        grant = described.pop("grant")
        return FoundToken("refresh_token", grant.client_id, described, grant.id)
    claims = provider.verifier.claims(token)
    if claims is None:
        return None
    return FoundToken("access_token", str(claims.get("client_id")), claims, claims.get("gid"))


def access_token_introspection(claims: dict[str, Any]) -> dict[str, Any]:
    """RFC 7662 answer for a valid access token (shared with the lean fast path)."""
    payload = {
        "active": True,
        "token_type": "Bearer",
        "scope": claims.get("scope", ""),
        "client_id": claims.get("client_id"),
        "sub": claims.get("sub"),
        "aud": claims.get("aud"),
        "iss": claims.get("iss"),
        "exp": claims.get("exp"),
        "iat": claims.get("iat"),
        "jti": claims.get("jti"),
    }
    for extra in ("auth_time", "acr", "amr", "sid", "act"):  # act: RFC 8693 2.1
        if extra in claims:
            payload[extra] = claims[extra]
    return payload


class IntrospectionEndpoint(rfc7662.IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS
    server: IdpAuthorizationServer

    def query_token(self, token_string: str, _token_type_hint: str | None) -> FoundToken | None:
        return _find(self.server.provider, token_string)

    def check_permission(self, token: FoundToken, client: ClientInfo, _request: Any) -> bool:
        """Any resource server may ask about access tokens; a refresh token is described
        only to the client it belongs to."""
        if token.kind == "refresh_token":
            return token.check_client(client)
        return True

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        if token.kind == "refresh_token":
            return {"active": True, **token.claims}
        return access_token_introspection(token.claims)


class RevocationEndpoint(rfc7009.RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS
    server: IdpAuthorizationServer

    def query_token(self, token_string: str, _token_type_hint: str | None) -> FoundToken | None:
        # an invalid, expired or already revoked token: nothing to do, answer 200
        return _find(self.server.provider, token_string)

    def revoke_token(self, token: FoundToken, _request: Any) -> None:
        tokens = self.server.provider.tokens()
        if token.kind == "refresh_token" and token.grant_id:
            tokens.revoke_grant(token.grant_id, "revoked_by_client")
        else:
            tokens.revoke_access_token(token.claims)
        db().commit()
