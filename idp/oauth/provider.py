"""Building the provider: its services (``OAuthRuntime``) and its Authlib server with
our grants, client authentication and endpoints registered."""

from __future__ import annotations

from flask import Flask

from accounts.container import Accounts
from idp.core.runtime import Runtime
from idp.oauth.backchannel import BackchannelDeliverer
from idp.oauth.client_auth import JwksFetcher, PrivateKeyJwt
from idp.oauth.clients import ClientRegistry
from idp.oauth.exchange import TokenExchangeGrant
from idp.oauth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    StrictPKCE,
)
from idp.oauth.introspection import IntrospectionEndpoint, RevocationEndpoint
from idp.oauth.keys import SigningKeys
from idp.oauth.revocation import Revocations
from idp.oauth.server import Endpoints, OAuthRuntime, make_error_descriptions_safe
from idp.oauth.tokens import AccessTokenVerifier


def build(core: Runtime, accounts: Accounts) -> OAuthRuntime:
    """The provider's services, and its Authlib server with our grants and endpoints."""
    make_error_descriptions_safe()
    settings = core.settings
    keys = SigningKeys(
        core.database,
        settings.keys_dir,
        core.clock,
        refresh_seconds=settings.key_refresh_seconds,
        retain_seconds=settings.longest_token_lifetime + 60,
    )
    clients = ClientRegistry(
        core.database,
        core.keys.secrets,
        core.clock,
        cache_seconds=settings.client_cache_seconds,
        allow_http=not settings.is_https,
    )
    revocations = Revocations(
        core.database,
        core.store,
        core.clock,
        access_token_lifetime=settings.access_token_lifetime,
        sync_seconds=settings.revocation_sync_seconds,
    )
    urls = Endpoints(settings.issuer)
    provider = OAuthRuntime(
        core=core,
        accounts=accounts,
        keys=keys,
        clients=clients,
        revocations=revocations,
        verifier=AccessTokenVerifier(keys, revocations, settings.issuer, core.clock),
        endpoints=urls,
        backchannel=BackchannelDeliverer(core, clients, keys, settings.issuer),
    )
    server = provider.server
    server.register_grant(AuthorizationCodeGrant, [StrictPKCE(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(TokenExchangeGrant)
    audiences = [settings.issuer, urls.token, urls.introspection, urls.revocation]
    server.register_client_auth_method(
        "private_key_jwt", PrivateKeyJwt(audiences, core.store, JwksFetcher(clock=core.clock))
    )
    server.register_endpoint(IntrospectionEndpoint(server))
    server.register_endpoint(RevocationEndpoint(server))
    return provider


def init_app(app: Flask, core: Runtime) -> OAuthRuntime:
    provider = build(core, Accounts.of(app))
    provider.keys.reload()
    provider.install(app)
    return provider
