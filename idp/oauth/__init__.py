"""The OAuth 2.0 / OpenID Connect provider: Authlib's server with our extensions.

Modules: ``models`` (clients, grants, refresh tokens, consents, signing keys, logout
deliveries), ``keys`` (signing keys, JWKS, rotation), ``clients`` (registration,
secrets, cache), ``tokens`` (JWT access tokens, ID tokens, refresh tokens,
revocation), ``server`` (``OAuthRuntime``, the provider's services, and its Authlib
server), ``provider`` (builds them), ``grants``, ``introspection`` and ``client_auth``
(Authlib extensions; they reach the provider as ``self.server.provider``), the
interactive flow (``authorize_request`` parses and validates, ``decision`` decides,
``pending`` keeps the request while the user acts, ``authorize`` is the views),
``endpoints`` (userinfo, discovery, JWKS), ``lean`` (token, introspection and
revocation in front of Flask), ``logout`` (RP-initiated logout), ``backchannel``
(back-channel logout notices), ``account`` (connected services), ``acting`` and
``act_for`` (acting for an organisation: the claims and checks, the picker),
``staff_clients`` (staff register services on ``/staff/clients``), ``client_tokens``
(a client's own access tokens for this service's APIs: SCIM and the service records)
and ``record_subjects`` (the subjects a client may name, handed to the service records
API), ``cli``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, has_app_context

from accounts import records
from accounts.signals import account_disabled, grants_withdrawn
from idp.core.runtime import Runtime
from idp.core.sessions import session_ended
from idp.core.signin import SignInMethods
from idp.oauth import (
    account,
    act_for,
    authorize,
    cli,
    endpoints,
    logout,
    provider,
    security_events,
    staff_clients,
)
from idp.oauth.client_tokens import ClientTokens
from idp.oauth.record_subjects import ClientSubjects
from idp.oauth.server import OAuthRuntime


def init_app(app: Flask, core: Runtime, *, background: bool = False) -> None:
    built = provider.init_app(app, core)
    endpoints.init_app(app)
    authorize.init_app(app)
    SignInMethods.of(app).service_name = authorize.client_display_name
    logout.init_app(app)
    account.init_app(app)
    act_for.init_app(app)
    staff_clients.init_app(app)
    security_events.init_app(app, core, built.keys, background=background)
    # below the protocol layer, the records API is handed the token check and subjects
    records.init_app(app, core, bearer=ClientTokens(built), subjects=ClientSubjects(built))
    for command in cli.COMMANDS:
        app.cli.add_command(command)
    account_disabled.connect(revoke_disabled_accounts_grants, weak=False)
    grants_withdrawn.connect(revoke_withdrawn_grants, weak=False)
    session_ended.connect(revoke_session_grants, sender=app, weak=False)
    if background:
        built.backchannel.start()


def revoke_disabled_accounts_grants(user: Any, **_: Any) -> None:
    """A disabled account keeps no grant: refresh tokens die, access tokens are listed."""
    if not has_app_context() or not OAuthRuntime.installed(current_app):
        return
    tokens = OAuthRuntime.of().tokens()
    tokens.revoke_grants(tokens.active_grants(user_id=user.id), "account_disabled")


def revoke_withdrawn_grants(user: Any, **_: Any) -> None:
    """The holder withdrew every grant ("This wasn't me", deletion asked for)."""
    if not has_app_context() or not OAuthRuntime.installed(current_app):
        return
    tokens = OAuthRuntime.of().tokens()
    tokens.revoke_grants(tokens.active_grants(user_id=user.id), "withdrawn_by_user")


def revoke_session_grants(sender: Flask, data: dict[str, Any], **_: Any) -> None:
    """The grants made in an SSO session end with it, except those with
    ``offline_access`` (OpenID Connect Back-Channel Logout 1.0, 2.7): their access
    tokens introspect inactive and their refresh tokens stop working."""
    sid, uid = data.get("sid"), data.get("uid")
    if not OAuthRuntime.installed(sender) or not sid or uid is None:
        return
    tokens = OAuthRuntime.of(sender).tokens()
    ended = [
        grant
        for grant in tokens.active_grants(user_id=int(uid))
        if grant.sid == sid and "offline_access" not in grant.scope.split()
    ]
    tokens.revoke_grants(ended, "session_ended")
