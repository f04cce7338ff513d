"""Reading and validating an authorization request (``/authorize``).

Authlib validates the OAuth 2.0 part (client, exact ``redirect_uri``,
``response_type=code``, scopes, PKCE S256: ``grants.StrictPKCE``); then the OpenID
Connect parameters are read: ``prompt``, ``max_age``, ``claims``, ``id_token_hint``,
``acr_values`` (an essential ``acr`` claim too); ``request`` / ``request_uri`` are
refused as unsupported and only ``response_mode=query`` is served. ``org_hint`` (a
unified social credit code) preselects the organisation to act for
(``idp.oauth.acting``). The result,
``Checked``, says what the request asks of the user (``Checked.ask``, the input of
``idp.oauth.decision``). A request that fails raises ``InvalidAuthorizationRequest``;
the views show it as a page until the redirect URI is known to be registered
(RFC 6749 4.1.2.1) and send it back to the client after.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from joserfc.errors import JoseError

from idp.oauth.acr import AcrPolicy, ClientLevels
from idp.oauth.acting import normalised_hint, wants_org
from idp.oauth.claims import (
    ClaimsRequestError,
    essential_acr_values,
    limit_to_scopes,
    parse_claims_request,
    scopes_for,
)
from idp.oauth.clients import ClientInfo
from idp.oauth.decision import Ask
from idp.oauth.grants import AuthorizationCodeGrant
from idp.oauth.server import OAuthRuntime

PROMPTS = frozenset({"none", "login", "consent", "select_account"})


class RequestNotSupportedError(OAuth2Error):  # type: ignore[misc]
    error = "request_not_supported"


class RequestUriNotSupportedError(OAuth2Error):  # type: ignore[misc]
    error = "request_uri_not_supported"


class ParamsPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: dict[str, list[str]]) -> None:
        self._datalist = defaultdict(list, params)
        self._data = {key: values[0] for key, values in params.items() if values}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class ParamsRequest(OAuth2Request):  # type: ignore[misc]
    """An authorization request rebuilt from its parameters (as first received)."""

    def __init__(self, uri: str, params: dict[str, list[str]]) -> None:
        super().__init__("GET", uri, headers={})
        self.payload = ParamsPayload(params)

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        return {}


class InvalidAuthorizationRequest(Exception):
    """The request cannot be served. With ``error.redirect_uri`` set (the redirect URI
    is registered) the error goes back to the client; without, it is shown as a page."""

    def __init__(self, oauth_request: ParamsRequest, error: OAuth2Error) -> None:
        super().__init__(error.error)
        self.oauth_request = oauth_request
        self.error = error


@dataclass
class Checked:
    """A validated request and what it asks of the user."""

    oauth_request: ParamsRequest
    grant: AuthorizationCodeGrant
    client: ClientInfo
    redirect_uri: str
    prompts: frozenset[str]
    max_age: int | None
    claims: dict[str, Any] | None
    hint_subject: str | None
    acr_wanted: list[str]
    acr_essential: list[str] | None
    # ``org_hint``: the credit code of the organisation to preselect, normalised
    org_hint: str | None = None

    @property
    def data(self) -> dict[str, str]:
        """The request's parameters (the first value of each)."""
        data: dict[str, str] = self.oauth_request.payload.data
        return data

    @property
    def scopes(self) -> list[str]:
        return str(self.oauth_request.scope or "").split()

    @property
    def consent_scopes(self) -> set[str]:
        """What the user consents to: the scopes, and those of individually asked claims."""
        return set(self.scopes) | scopes_for(self.claims)

    @property
    def ask(self) -> Ask:
        return Ask(
            prompts=self.prompts,
            max_age=self.max_age,
            hint_subject=self.hint_subject,
            acr_values=tuple(self.acr_wanted),
            essential_acr=None if self.acr_essential is None else tuple(self.acr_essential),
            client_min_level=self.client.min_level,
            first_party=self.client.first_party,
            wants_org=wants_org(self.client, self.scopes),
            requires_org=self.client.require_org,
        )

    def error(self, error: OAuth2Error) -> OAuth2Error:
        """``error``, addressed to the client (its redirect URI, the request's state)."""
        error.redirect_uri = self.redirect_uri
        error.state = self.data.get("state")
        return error


def check(provider: OAuthRuntime, params: dict[str, list[str]]) -> Checked:
    """The validated request; raises ``InvalidAuthorizationRequest``."""
    oauth_request = ParamsRequest(provider.endpoints.authorization, params)
    try:
        grant: AuthorizationCodeGrant = provider.server.get_consent_grant(
            request=oauth_request, end_user=None
        )
    except OAuth2Error as error:
        raise InvalidAuthorizationRequest(oauth_request, error) from None
    redirect_uri: str = grant.redirect_uri
    data = oauth_request.payload.data

    def fail(error: OAuth2Error) -> InvalidAuthorizationRequest:
        error.redirect_uri = redirect_uri
        error.state = data.get("state")
        return InvalidAuthorizationRequest(oauth_request, error)

    if "request" in data:
        raise fail(RequestNotSupportedError("Request objects are not supported."))
    if "request_uri" in data:
        raise fail(RequestUriNotSupportedError("request_uri is not supported."))
    if data.get("response_mode", "query") != "query":
        raise fail(InvalidRequestError("Only response_mode=query is supported."))
    prompts = frozenset(data.get("prompt", "").split())
    if not prompts <= PROMPTS or ("none" in prompts and len(prompts) > 1):
        raise fail(InvalidRequestError("Invalid 'prompt' parameter."))
    max_age = None
    if "max_age" in data:
        try:
            max_age = int(data["max_age"])
        except ValueError:
            raise fail(InvalidRequestError("'max_age' must be a number of seconds.")) from None
        if max_age < 0:
            raise fail(InvalidRequestError("'max_age' must not be negative."))
    client: ClientInfo = grant.request.client
    try:
        claims = parse_claims_request(data.get("claims"))
    except ClaimsRequestError as exc:
        raise fail(InvalidRequestError(str(exc))) from None
    claims = limit_to_scopes(claims, client.scopes)
    hint_subject = None
    if data.get("id_token_hint"):
        hint_subject = _hint_subject(provider, data["id_token_hint"], client)
        if hint_subject is None:
            raise fail(InvalidRequestError("'id_token_hint' is not an ID token from us."))
    org_hint = None
    if "org_hint" in data:
        org_hint = normalised_hint(data["org_hint"])
        if org_hint is None:
            raise fail(InvalidRequestError("'org_hint' must be a unified social credit code."))
    levels = ClientLevels.of(AcrPolicy.from_settings(provider.core.settings), client)
    essential = essential_acr_values(claims)
    return Checked(
        oauth_request=oauth_request,
        grant=grant,
        client=client,
        redirect_uri=redirect_uri,
        prompts=prompts,
        max_age=max_age,
        claims=claims,
        hint_subject=hint_subject,
        # read in our vocabulary (a client with a level map asks in its own)
        acr_wanted=levels.from_client(data.get("acr_values", "").split()),
        acr_essential=None if essential is None else levels.from_client(essential),
        org_hint=org_hint,
    )


def _hint_subject(provider: OAuthRuntime, id_token: str, client: ClientInfo) -> str | None:
    """The ``sub`` of an ID token we issued to this client (it may have expired)."""
    try:
        header, claims = provider.keys.verify(id_token)
    except (JoseError, ValueError):
        return None
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if header.get("typ") not in (None, "JWT") or client.client_id not in audiences:
        return None
    if claims.get("iss") != provider.issuer:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None
