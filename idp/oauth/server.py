"""The provider's app-lifetime services and its Authlib server.

``OAuthRuntime`` is what the provider is wired with (signing keys, the client registry,
revocations, the access-token verifier, its URLs, the back-channel deliverer) and
builds the services of one request (``tokens()``, ``consents()``, ``pending()``).
``IdpAuthorizationServer`` is Authlib's server with a typed reference to it: grants and
endpoints reach the provider as ``self.server.provider``, views and wiring as
``OAuthRuntime.of()``. This module registers no grant (``idp.oauth.provider`` does),
so the grants can import it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Response
from flask import request as flask_request

from accounts.container import Accounts
from idp.core.error_text import safe_description
from idp.core.runtime import Component, Runtime, db
from idp.oauth.backchannel import BackchannelDeliverer
from idp.oauth.clients import ClientInfo, ClientRegistry
from idp.oauth.consent import ConsentService
from idp.oauth.keys import SigningKeys
from idp.oauth.pending import PendingRequests
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
    """One per app, made by its ``OAuthRuntime``: ``provider`` is what the grants and
    endpoints registered on it use."""

    def __init__(self, provider: OAuthRuntime) -> None:
        super().__init__()
        self.provider = provider
        self.issuer = provider.issuer

    def query_client(self, client_id: str) -> ClientInfo | None:
        return self.provider.clients.get(client_id)

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
    """The provider's app-lifetime services, and the builders of a request's."""

    extension: ClassVar[str] = EXTENSION

    core: Runtime
    accounts: Accounts
    keys: SigningKeys
    clients: ClientRegistry
    revocations: Revocations
    verifier: AccessTokenVerifier
    endpoints: Endpoints
    backchannel: BackchannelDeliverer
    # discovery documents, serialised once per app (they change only with the settings)
    json_cache: dict[str, bytes] = field(default_factory=dict)
    server: IdpAuthorizationServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = IdpAuthorizationServer(self)

    @property
    def issuer(self) -> str:
        return self.endpoints.issuer

    # -- the request's services (they use the request's database session)

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

    def consents(self) -> ConsentService:
        return ConsentService(db(), self.core.clock)

    def pending(self) -> PendingRequests:
        return PendingRequests(self.core.store)
