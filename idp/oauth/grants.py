"""Authlib grant types, extended: PKCE S256 for every client, codes that are consumed
atomically, JWT access tokens, ID tokens and refresh-token rotation. A grant made while
the person acts for an organisation is refused (code and refresh) once its
authorisation no longer holds, and a client that requires an organisation never gets
a personal-only token (``idp.oauth.acting``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, ClassVar

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7636 import CodeChallenge

from idp.core.runtime import db
from idp.oauth.acting import OrgAuthority
from idp.oauth.assurance import AcrPolicy, user_claims
from idp.oauth.claims import release, requested_names, scopes_for
from idp.oauth.clients import ClientInfo
from idp.oauth.server import IdpAuthorizationServer, OAuthRuntime
from idp.oauth.tokens import (
    CodeRecord,
    GrantData,
    IssuedRefresh,
    RefreshTokenReused,
    constant_time_equal,
    pkce_s256,
)

log = logging.getLogger(__name__)

ALL_AUTH_METHODS: list[str] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# Scopes about a person: never granted to a client acting for itself.
USER_SCOPES = frozenset({"openid", "profile", "email", "phone", "offline_access"})
_PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # fullmatch: "$" would allow a final newline


def _user_tokens(
    provider: OAuthRuntime,
    client: ClientInfo,
    grant: Any,
    scope: str,
    *,
    nonce: str | None,
    refresh_token: str | None,
    org: OrgClaims | None = None,
) -> dict[str, Any]:
    """The token response for a user: access token, and ID token for ``openid``; with
    ``org`` (acting for an organisation), both carry ``org`` and ``act``."""
    tokens = provider.tokens()
    subject = tokens.subject(client, grant.subject_public_id)
    # the organisation as the subject: no person acts, nothing personal is released
    as_organisation = grant.subject_id is not None
    org_claims = {}
    if org is not None:
        org_claims = org(None if as_organisation else subject)
    access_token, expires_in = tokens.access_token(
        client, scope, subject=subject, grant=grant, extra=org_claims
    )
    response: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }
    if refresh_token:
        response["refresh_token"] = refresh_token
    if "openid" in scope.split():
        wanted = requested_names(grant.claims, "id_token")
        extra = {}
        if wanted and not as_organisation:  # read only when the client asked for claims
            user = provider.accounts.account_service().get(grant.user_id)
            if user is not None:
                extra = release(
                    user_claims(user, client, grant.claims, "id_token"),
                    (),
                    wanted,
                    allowed_scopes=client.scopes,
                )
        response["id_token"] = tokens.id_token(
            client,
            subject,
            grant,
            nonce=nonce,
            access_token=access_token,
            extra={**extra, **org_claims},
        )
    return response


# the person's sub (None: the organisation is the subject) -> ``org`` and ``act``
OrgClaims = Callable[[str | None], dict[str, Any]]


class PersonalTokenRefused(InvalidGrantError):  # type: ignore[misc]
    """A client that requires an organisation context asked for a personal grant."""

    def __init__(self) -> None:
        super().__init__(
            "This service serves organisations only: sign in again and choose the "
            "organisation you act for."
        )


def _org_claims(
    provider: OAuthRuntime,
    client: ClientInfo,
    grant_id: str | None,
    user_id: int,
    authorisation_id: str | None,
    scope: str,
    where: str,
) -> OrgClaims | None:
    """For a grant acting for an organisation, the claims to add, once the
    authorisation was asked again (else ``InvalidGrantError``, audited, and the grant
    revoked); None for a personal grant, which a ``require_org`` client never gets."""
    if authorisation_id is None:
        if client.require_org:
            raise PersonalTokenRefused()
        return None
    authority = OrgAuthority.of(provider.accounts)
    authorisation = authority.permitted(user_id, authorisation_id, client.client_id, scope.split())
    if authorisation is None:
        authority.end_grant(provider.tokens(), grant_id, authorisation_id, client.client_id, where)
        raise InvalidGrantError(
            "The organisation authorisation this sign-in acts under has ended, or does not "
            "cover this service."
        )
    return lambda subject: authority.claims(authorisation, subject)


def _consent_still_given(provider: OAuthRuntime, client: ClientInfo, record: CodeRecord) -> bool:
    """A code issued before the user withdrew the client's access is worthless."""
    scopes = set(record.scope.split()) | scopes_for(record.claims)
    return provider.consents().covers(record.user_id, client.client_id, scopes)


class StrictPKCE(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client (RFC 9700 2.1.1), with S256 only: ``plain`` and a missing
    ``code_challenge_method`` (which means plain) are refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, _redirect_uri: str) -> None:
        payload = grant.request.payload
        challenge = payload.data.get("code_challenge")
        method = payload.data.get("code_challenge_method")
        for name in ("code_challenge", "code_challenge_method"):
            if len(payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Multiple '{name}' in request.")
        if not challenge:
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        if method != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        if not _PKCE_VALUE.fullmatch(challenge):
            raise InvalidRequestError("Invalid 'code_challenge'.")

    def validate_code_verifier(self, grant: Any, _result: Any) -> None:
        verifier = grant.request.form.get("code_verifier")
        if not verifier:
            raise InvalidRequestError("Missing 'code_verifier'.")
        if not _PKCE_VALUE.fullmatch(verifier):
            raise InvalidRequestError("Invalid 'code_verifier'.")
        record: CodeRecord = grant.request.authorization_code
        if not constant_time_equal(pkce_s256(verifier), record.code_challenge):
            raise InvalidGrantError("Code challenge failed.")


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    server: IdpAuthorizationServer

    def create_authorization_response(self, redirect_uri: str, grant_user: Any) -> Any:
        """Issue the code; the view put the sign-in context on the request."""
        if not grant_user:
            raise AccessDeniedError(redirect_uri=redirect_uri)
        request = self.request
        request.user = grant_user
        record: CodeRecord = request.code_record
        provider = self.server.provider
        code = provider.tokens().new_code(record)
        params = [("code", code)]
        if request.payload.state:
            params.append(("state", request.payload.state))
        params.append(("iss", provider.issuer))  # RFC 9207: against mix-up attacks
        return 302, "", [("Location", add_params_to_uri(redirect_uri, params))]

    def query_authorization_code(self, code: str, client: ClientInfo) -> CodeRecord | None:
        record = self.server.provider.tokens().take_code(code)
        if record is None or record.client_id != client.client_id:
            # unknown, expired, replayed, or another client's code: the code is gone now
            return None
        return record

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        """Nothing to do: ``take_code`` already consumed it."""

    def authenticate_user(self, authorization_code: CodeRecord) -> int | None:
        user_id = authorization_code.user_id
        active = self.server.provider.accounts.account_service().is_active(user_id)
        return user_id if active else None

    @hooked  # type: ignore[untyped-decorator]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        request = self.request
        client: ClientInfo = request.client
        record: CodeRecord = request.authorization_code
        user_id = self.authenticate_user(record)
        if user_id is None:
            raise InvalidGrantError("There is no active user for this code.")
        request.user = user_id
        provider = self.server.provider
        if not client.first_party and not _consent_still_given(provider, client, record):
            raise InvalidGrantError("The user withdrew the client's access.")
        org = _org_claims(
            provider, client, None, user_id, record.authorisation_id, record.scope, "token"
        )
        tokens = provider.tokens()
        grant = tokens.create_grant(record)
        if grant.revoked_at is not None:
            db().commit()
            raise InvalidGrantError("The code was used twice.")
        refresh = None
        if "offline_access" in record.scope.split() and client.check_grant_type("refresh_token"):
            refresh = tokens.new_refresh_token(grant)
        response = _user_tokens(
            provider,
            client,
            grant,
            record.scope,
            nonce=record.nonce,
            refresh_token=refresh,
            org=org,
        )
        db().commit()
        log.info(
            "tokens issued",
            extra={
                "grant_type": "authorization_code",
                "client_id": client.client_id,
                "grant": grant.id,
            },
        )
        return 200, response, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    server: IdpAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedRefresh | None:
        """The usable refresh token, already rotated on PostgreSQL. Authlib checks the
        client and the requested scope afterwards: the client is checked inside the
        statement, so only a request that narrows the scope (and may be refused for it)
        needs a transaction around the rotation; the common one commits at once."""
        client: ClientInfo = self.request.client
        narrows_scope = bool(self.request.payload.scope)
        tokens = self.server.provider.tokens()
        try:
            issued = tokens.use_refresh_token(
                refresh_token, client.client_id, own_transaction=not narrows_scope
            )
        except RefreshTokenReused:
            log.warning("refresh token reused: grant revoked")
            return None
        return issued

    def authenticate_user(self, refresh_token: IssuedRefresh) -> int:
        """The grant's user: a disabled account's grants are revoked, so a usable refresh
        token means an active user."""
        return refresh_token.grant.user_id

    def revoke_old_credential(self, refresh_token: IssuedRefresh) -> None:
        """Nothing to do: ``rotate`` marks the old token used."""

    @hooked  # type: ignore[untyped-decorator]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        request = self.request
        client: ClientInfo = request.client
        issued: IssuedRefresh = request.refresh_token
        request.user = self.authenticate_user(issued)
        scope = request.payload.scope or issued.grant.scope
        provider = self.server.provider
        tokens = provider.tokens()
        if not _level_still_held(provider, client, issued.grant):
            tokens.revoke_grant(issued.grant.id, "real-name level no longer held")
            db().commit()
            raise InvalidGrantError(
                "The account no longer has the real-name level this grant was issued for; "
                "sign the user in again."
            )
        grant = issued.grant
        org = _org_claims(
            provider, client, grant.id, grant.user_id, grant.authorisation_id, scope, "refresh"
        )
        try:
            refresh = tokens.rotate(issued)
        except RefreshTokenReused:
            raise InvalidGrantError("The refresh token was already used.") from None
        response = _user_tokens(
            provider, client, issued.grant, scope, nonce=None, refresh_token=refresh, org=org
        )
        db().commit()
        return 200, response, self.TOKEN_RESPONSE_HEADER


def _level_still_held(provider: OAuthRuntime, client: ClientInfo, grant: GrantData) -> bool:
    """A grant given for a real-name level (the client's minimum, or an acr value for a
    level) is not refreshed once the account's level fell below it (lowered by an
    administrator, or expired). Other grants cost no look-up."""
    policy = AcrPolicy.from_settings(provider.core.settings)
    needed = max(client.min_level, policy.level_of(grant.acr or "") or 0)
    if needed <= 1:
        return True
    accounts = provider.accounts
    user = accounts.account_service().get(grant.user_id)
    return user is not None and accounts.realname_service().level(user) >= needed


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS
    server: IdpAuthorizationServer

    @hooked  # type: ignore[untyped-decorator]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: ClientInfo = self.request.client
        allowed = {s for s in client.scopes if s not in USER_SCOPES}
        requested = (self.request.payload.scope or "").split()
        if requested and not set(requested) <= allowed:
            raise InvalidScopeError("The client may not ask for these scopes.")
        scope = " ".join(requested or sorted(allowed))
        access_token, expires_in = self.server.provider.tokens().access_token(
            client, scope, subject=client.client_id
        )
        response = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
        }
        return 200, response, self.TOKEN_RESPONSE_HEADER
