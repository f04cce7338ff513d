"""OAuth 2.0 Token Exchange (RFC 8693) at the token endpoint.

A service that received a user's access token calls another service on the user's
behalf: it exchanges the token for one whose audience is the downstream service. The
new token must never carry more authority than the one presented, so every property
of it is derived from the subject token and its grant, never from the request:

* the same person (their ``sub`` as the audience sees it), the same ``acr``, ``amr``
  and ``auth_time``, the same organisation authorisation (asked again: it must still
  be live and cover the audience), a scope that is a subset of the subject token's
  (and of what the audience is registered for), and an expiry no later than the
  subject token's;
* an ``act`` claim naming the requesting client, with the subject token's own ``act``
  nested inside (RFC 8693 4.1), so the downstream service sees the whole chain;
* a grant row with ``parent_grant_id``: revoking the parent grant revokes every grant
  exchanged from it (``TokenService.revoke_grant_ids``), and so their access tokens.

Only confidential clients may exchange, only for the audiences registered for them
(``exchange_audiences``, ``idp clients create|update --exchange-audience``), and only
tokens issued to them (the subject token's ``aud`` names the requesting client: a
token a client merely holds for another service is not its to exchange). No refresh
token is issued, ``openid`` and ``offline_access`` are never exchanged (an exchanged
token does not reach userinfo, where another client's claim release would apply),
and actor tokens are refused: the authenticated client is the actor. Every refusal
is an RFC 8693 2.2.2 error and an audit event (docs/decisions/0034-token-exchange.md).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.hooks import hooked
from sqlalchemy import select

from accounts.organisations.authorisations import Scope
from accounts.organisations.models import Authorisation
from accounts.people.models import User, UserStatus
from idp.core.audit.services import FAILURE, SUCCESS
from idp.core.runtime import audit_log, db
from idp.oauth.acting import OrgAuthority
from idp.oauth.assurance import AcrPolicy
from idp.oauth.clients import ClientInfo
from idp.oauth.grants import CONFIDENTIAL_AUTH_METHODS
from idp.oauth.models import Grant
from idp.oauth.server import IdpAuthorizationServer, OAuthRuntime

log = logging.getLogger(__name__)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# Scopes an exchanged token never has: it is not refreshed, and does not reach userinfo.
NOT_EXCHANGED = frozenset({"openid", "offline_access"})
# How many actors an ``act`` chain may name (a chain A -> B -> C names two); a longer
# one is refused rather than grown without bound.
MAX_ACTORS = 5
AUDIT_EVENT = "token.exchange"


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8693 2.2.2: the server will not issue a token for the named target."""

    error = "invalid_target"


@dataclass(frozen=True)
class Exchange:
    """A checked exchange request: what the new token is derived from."""

    audience: ClientInfo
    parent: Grant
    user: User
    scope: str
    act: dict[str, Any]
    expires_at: int
    authorisation: Authorisation | None  # the organisation authority, asked again


def actors(act: Any) -> int:
    """How many actors an ``act`` claim names (0 for none)."""
    count = 0
    while isinstance(act, dict) and count <= MAX_ACTORS:
        count += 1
        act = act.get("act")
    return count


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):  # type: ignore[misc]
    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS
    server: IdpAuthorizationServer

    def validate_token_request(self) -> None:
        client: ClientInfo = self.authenticate_token_endpoint_client()
        self.request.client = client
        self._subject: str | None = None
        self._target: str | None = None
        try:
            self.exchange = self._checked(client)
        except OAuth2Error as error:
            self._refused(client, error)
            raise

    @hooked  # type: ignore[untyped-decorator]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: ClientInfo = self.request.client
        exchange = self.exchange
        provider = self.server.provider
        tokens = provider.tokens()
        parent = exchange.parent
        now = provider.core.clock.now()
        grant = Grant(
            id=str(uuid.uuid4()),
            client_id=client.client_id,
            user_id=parent.user_id,
            user_public_id=parent.user_public_id,
            scope=exchange.scope,
            auth_time=parent.auth_time,
            amr=list(parent.amr),
            acr=parent.acr,
            # no session of its own: it lives and dies with its parent (revoked with it)
            sid=None,
            claims=parent.claims,
            created_at=now,
            expires_at=datetime.fromtimestamp(exchange.expires_at, now.tzinfo),
            authorisation_id=parent.authorisation_id,
            parent_grant_id=parent.id,
            act=exchange.act,
            subject_id=parent.subject_id,
        )
        session = db()
        session.add(grant)
        self._audit(
            client,
            SUCCESS,
            {
                "grant": grant.id,
                "parent_grant": parent.id,
                "scope": exchange.scope,
                "authorisation": parent.authorisation_id,
            },
        )
        session.commit()
        # the parent revoked while this exchange was under way: its revocation may not
        # have seen the new grant (it looks children up after committing each level)
        revoked = session.scalar(select(Grant.revoked_at).where(Grant.id == parent.id))
        if revoked is not None:
            tokens.revoke_grant(grant.id, "parent_revoked")
            error = InvalidGrantError("The subject token was revoked.")
            self._refused(client, error)
            raise error
        subject = tokens.subject(exchange.audience, parent.subject_public_id)
        extra = {}
        if exchange.authorisation is not None:
            # the organisation, so that introspection asks its authorisation again; the
            # grant's ``act`` chain names the actors
            extra = OrgAuthority.of(provider.accounts).claims(exchange.authorisation, None)
        access_token, expires_in = tokens.access_token(
            client,
            exchange.scope,
            subject=subject,
            grant=grant,
            extra=extra,
            audience=exchange.audience.client_id,
            not_after=exchange.expires_at,
        )
        log.info(
            "token exchanged",
            extra={
                "grant_type": TOKEN_EXCHANGE,
                "client_id": client.client_id,
                "audience": exchange.audience.client_id,
                "grant": grant.id,
            },
        )
        body = {
            "access_token": access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": exchange.scope,
        }
        return 200, body, self.TOKEN_RESPONSE_HEADER

    # -- the checks, in the order of RFC 8693 2.2.2's errors

    def _checked(self, client: ClientInfo) -> Exchange:
        data: dict[str, Any] = self.request.payload.data
        if not client.exchange_audiences:
            raise UnauthorizedClientError("The client is not registered for token exchange.")
        if data.get("actor_token") or data.get("actor_token_type"):
            raise InvalidRequestError(
                "Actor tokens are not supported: the authenticated client is the actor."
            )
        requested_type = data.get("requested_token_type")
        if requested_type and requested_type != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError("Only access tokens can be issued.")
        subject_token = data.get("subject_token")
        if not subject_token or not data.get("subject_token_type"):
            raise InvalidRequestError("Send 'subject_token' and 'subject_token_type'.")
        if data.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(
                f"Only access tokens can be exchanged (subject_token_type {ACCESS_TOKEN_TYPE})."
            )
        audience = self._audience(client, data)
        provider = self.server.provider
        claims = provider.verifier.claims(str(subject_token))
        if claims is None:
            raise InvalidGrantError("The subject token is invalid, expired or revoked.")
        parent, user = self._parent(provider, claims)
        aud = claims.get("aud")
        if client.client_id not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidGrantError("The subject token was not issued to this client.")
        act = {"sub": client.client_id}
        if isinstance(claims.get("act"), dict):
            act["act"] = claims["act"]
        if actors(act) > MAX_ACTORS:
            raise InvalidGrantError("The subject token's delegation chain is too long.")
        scope = self._scope(audience, str(claims.get("scope", "")).split())
        self._check_level(provider, audience, parent, user)
        authorisation = self._check_organisation(provider, client, audience, parent, user, scope)
        return Exchange(audience, parent, user, scope, act, int(claims["exp"]), authorisation)

    def _audience(self, client: ClientInfo, data: dict[str, Any]) -> ClientInfo:
        """The one downstream service, named by ``audience`` and/or ``resource`` (its
        client id: a client whose id is a URN is addressed as RFC 8707 expects)."""
        targets = set(self.request.payload.datalist.get("resource", []))
        if data.get("audience"):
            targets.add(str(data["audience"]))
        if not targets:
            raise InvalidRequestError("Name the downstream service with 'audience' or 'resource'.")
        if len(targets) > 1:
            raise InvalidTargetError("Name one downstream service per exchange.")
        target = targets.pop()
        self._target = target[:100]
        audience = self.server.provider.clients.get(target)
        if target not in client.exchange_audiences or audience is None:
            raise InvalidTargetError("The client may not exchange tokens for this audience.")
        return audience

    def _parent(self, provider: OAuthRuntime, claims: dict[str, Any]) -> tuple[Grant, User]:
        grant_id = claims.get("gid")
        if not isinstance(grant_id, str):
            raise InvalidGrantError("Only tokens issued for a person can be exchanged.")
        parent = provider.tokens().grant(grant_id)
        if parent is None or parent.revoked_at is not None:
            raise InvalidGrantError("The subject token was revoked.")
        self._subject = f"user:{parent.user_public_id}"
        user = provider.accounts.account_service().get(parent.user_id)
        if user is None or user.status is not UserStatus.ACTIVE:
            raise InvalidGrantError("The account is no longer active.")
        return parent, user

    def _scope(self, audience: ClientInfo, held: list[str]) -> str:
        requested = (self.request.payload.scope or "").split()
        if not requested:
            kept = [s for s in held if s in audience.scopes and s not in NOT_EXCHANGED]
            if not kept:
                raise InvalidScopeError("The subject token has no scope the audience may have.")
            return " ".join(kept)
        if not set(requested) <= set(held):
            raise InvalidScopeError("The exchange asks for more scope than the subject token has.")
        if set(requested) & NOT_EXCHANGED:
            raise InvalidScopeError("Exchanged tokens never have openid or offline_access.")
        if not set(requested) <= audience.scopes:
            raise InvalidScopeError("The audience is not registered for these scopes.")
        return " ".join(dict.fromkeys(requested))

    def _check_level(
        self, provider: OAuthRuntime, audience: ClientInfo, parent: Grant, user: User
    ) -> None:
        """The new token keeps the subject token's ``acr``: the account must still
        have the level it stands for, and the level the audience requires."""
        token_level = AcrPolicy.from_settings(provider.core.settings).level_of(parent.acr or "")
        needed = max(audience.min_level, token_level or 0)
        if needed <= 1:
            return
        level = provider.accounts.realname_service().level(user)
        if token_level is not None and level < token_level:
            raise InvalidGrantError(
                "The account no longer has the real-name level the subject token was issued for."
            )
        if level < audience.min_level:
            raise InvalidTargetError("The audience requires a higher real-name level.")

    def _check_organisation(
        self,
        provider: OAuthRuntime,
        client: ClientInfo,
        audience: ClientInfo,
        parent: Grant,
        user: User,
        scope: str,
    ) -> Authorisation | None:
        """Acting for an organisation: the same authorisation, live now and covering
        the audience. A personal subject token stays personal (nothing here adds one)."""
        if parent.authorisation_id is None:
            if audience.require_org:
                raise InvalidTargetError(
                    "The downstream service serves organisations only, and the subject "
                    "token acts for none."
                )
            return None
        service = provider.accounts.authorisation_service(f"client:{client.client_id}")
        authorisation = service.live_authorisation(user, parent.authorisation_id)
        if authorisation is None:
            raise InvalidGrantError("The organisation authorisation is no longer live.")
        if not Scope.of(authorisation).permits(audience.client_id, scope.split()):
            raise InvalidTargetError(
                "The organisation authorisation does not cover this audience or scope."
            )
        return authorisation

    # -- audit

    def _refused(self, client: ClientInfo, error: OAuth2Error) -> None:
        session = db()
        session.rollback()
        self._audit(
            client, FAILURE, {"error": error.error, "reason": str(error.description or "")[:200]}
        )
        session.commit()

    def _audit(self, client: ClientInfo, outcome: str, details: dict[str, Any]) -> None:
        audit_log(f"client:{client.client_id}").record(
            AUDIT_EVENT,
            outcome,
            subject=self._subject,
            details={"client_id": client.client_id, "audience": self._target, **details},
        )
