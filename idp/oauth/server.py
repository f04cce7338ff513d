"""One Authlib ``AuthorizationServer`` per app, and what the provider is wired with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Flask, Response, current_app
from flask import request as flask_request

from idp.core.runtime import Runtime, db, runtime
from idp.oauth.client_auth import JwksFetcher, PrivateKeyJwt
from idp.oauth.clients import ClientInfo, ClientRegistry
from idp.oauth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    StrictPKCE,
)
from idp.oauth.introspection import IntrospectionEndpoint, RevocationEndpoint
from idp.oauth.keys import SigningKeys
from idp.oauth.revocation import Revocations
from idp.oauth.tokens import AccessTokenVerifier, TokenService

EXTENSION = "idp.oauth"
JSON_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
]


class Endpoints:
    """The provider's URLs (also published by discovery)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.authorization = f"{issuer}/authorize"
        self.token = f"{issuer}/token"
        self.userinfo = f"{issuer}/userinfo"
        self.introspection = f"{issuer}/introspect"
        self.revocation = f"{issuer}/revoke"
        self.end_session = f"{issuer}/session/end"
        self.jwks = f"{issuer}/jwks.json"


class IdpAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, registry: ClientRegistry, issuer: str) -> None:
        super().__init__()
        self._registry = registry
        self.issuer = issuer

    def query_client(self, client_id: str) -> ClientInfo | None:
        return self._registry.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Our grants persist what they issue themselves."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        """Accept a stored authorization request (resumed after sign-in) as it is."""
        if isinstance(request, OAuth2Request):
            return request
        return FlaskOAuth2Request(flask_request)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":"))
        return Response(payload, status=status_code, headers=headers)

    def handle_error_response(self, request: OAuth2Request, error: OAuth2Error) -> Response:
        status, body, headers = error(self.get_error_uri(request, error))
        if status == 302:
            # RFC 9207: errors sent back to the client name the issuer too
            headers = [
                (
                    name,
                    add_params_to_uri(value, [("iss", self.issuer)])
                    if name == "Location"
                    else value,
                )
                for name, value in headers
            ]
        return self.handle_response(status, body, headers)


@dataclass
class OAuthRuntime:
    server: IdpAuthorizationServer
    keys: SigningKeys
    clients: ClientRegistry
    verifier: AccessTokenVerifier
    endpoints: Endpoints
    core: Runtime
    revocations: Revocations

    @property
    def issuer(self) -> str:
        return self.endpoints.issuer

    def tokens(self) -> TokenService:
        core = self.core
        return TokenService(
            db(),
            core.store,
            self.keys,
            core.keys.secrets,
            core.settings,
            core.clock,
            self.revocations,
        )


def oauth() -> OAuthRuntime:
    value: OAuthRuntime = current_app.extensions[EXTENSION]
    return value


def build(core: Runtime) -> OAuthRuntime:
    settings = core.settings
    keys = SigningKeys(
        core.database,
        settings.keys_dir,
        core.clock,
        refresh_seconds=settings.key_refresh_seconds,
        retain_seconds=settings.longest_token_lifetime + 60,
    )
    registry = ClientRegistry(
        core.database,
        core.keys.secrets,
        core.clock,
        cache_seconds=settings.client_cache_seconds,
        allow_http=not settings.is_https,
    )
    endpoints = Endpoints(settings.issuer)
    server = IdpAuthorizationServer(registry, settings.issuer)
    server.register_grant(AuthorizationCodeGrant, [StrictPKCE(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    audiences = [
        settings.issuer,
        endpoints.token,
        endpoints.introspection,
        endpoints.revocation,
    ]
    server.register_client_auth_method(
        "private_key_jwt", PrivateKeyJwt(audiences, core.store, JwksFetcher())
    )
    server.register_endpoint(IntrospectionEndpoint(server))
    server.register_endpoint(RevocationEndpoint(server))
    revocations = Revocations(
        core.database,
        core.store,
        core.clock,
        access_token_lifetime=settings.access_token_lifetime,
        sync_seconds=settings.revocation_sync_seconds,
    )
    verifier = AccessTokenVerifier(keys, revocations, settings.issuer, core.clock)
    return OAuthRuntime(server, keys, registry, verifier, endpoints, core, revocations)


def init_app(app: Flask) -> None:
    with app.app_context():
        provider = build(runtime())
    provider.keys.reload()
    app.extensions[EXTENSION] = provider
