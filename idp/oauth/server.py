"""One Authlib ``AuthorizationServer`` per app, and what the provider is wired with."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Flask, Response
from flask import request as flask_request

from idp.core.error_text import safe_description
from idp.core.runtime import Component, Runtime, db
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


def make_error_descriptions_safe() -> None:
    """Every OAuth error's description is safe from the moment it is built.

    Authlib builds descriptions from request parameters (``response_type``,
    ``redirect_uri``, ...) and then, in ``OAuth2Error.__init__``, refuses any outside
    the RFC 6749 5.2 character set with a ``ValueError``: a 500 for ``response_type=登``
    instead of the error the client should get. Every OAuth2Error (Authlib's, the
    OpenID Connect ones, ours) passes through that constructor, so it is the one place
    where the description is made safe (``idp.core.error_text``); the responses built
    by ``IdpAuthorizationServer.handle_error_response`` are checked once more. Applied
    once per process (idempotent); tests/fuzz/test_safe_errors.py pins the behaviour.
    """
    authlib_init = OAuth2Error.__init__
    if getattr(authlib_init, "_idp_safe", False):
        return

    @functools.wraps(authlib_init)
    def safe_init(self: OAuth2Error, description: Any = None, *args: Any, **kwargs: Any) -> None:
        if isinstance(description, str):
            description = safe_description(description)
        authlib_init(self, description, *args, **kwargs)

    safe_init._idp_safe = True  # type: ignore[attr-defined]
    OAuth2Error.__init__ = safe_init


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
        # a description assigned after the error was built is made safe here
        if error.description:
            error.description = safe_description(str(error.description))
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
class OAuthRuntime(Component):
    """The provider's app-lifetime services."""

    extension: ClassVar[str] = EXTENSION

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


def build(core: Runtime) -> OAuthRuntime:
    make_error_descriptions_safe()
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


def init_app(app: Flask, core: Runtime) -> None:
    provider = build(core)
    provider.keys.reload()
    provider.install(app)
