"""The provider's non-interactive endpoints: userinfo, discovery and JWKS, and the
URL rules of token, introspection and revocation. They answer JSON (errors too) and
are exempt from CSRF checks (clients authenticate themselves).

``POST /token``, ``/introspect`` and ``/revoke`` never reach Flask: ``idp.oauth.lean``
answers them in front of it. Their rules stay in the URL map, without a view, because
Flask still answers the other methods at these paths (this blueprint's JSON 405;
OPTIONS), ``url_for`` builds their URLs and the fuzz finds its targets there."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request

from accounts.people.models import UserStatus
from idp.core.web import register_json_blueprint
from idp.oauth.acting import OrgAuthority
from idp.oauth.assurance import VERIFIED_CLAIM_NAMES, AcrPolicy, user_claims
from idp.oauth.claims import SUPPORTED_CLAIMS, release, requested_names
from idp.oauth.clients import STANDARD_SCOPES
from idp.oauth.exchange import TOKEN_EXCHANGE
from idp.oauth.server import JSON_HEADERS, OAuthRuntime

bp = Blueprint("oauth", __name__)

_DISCOVERY_CACHE = "discovery_json"

# answered by idp.oauth.lean (its ROUTES): rules without views
bp.add_url_rule("/token", "token", methods=["POST"])
bp.add_url_rule("/introspect", "introspect", methods=["POST"])
bp.add_url_rule("/revoke", "revoke", methods=["POST"])


def _bearer_error(status: int, error: str | None, description: str = "") -> Response:
    challenge = 'Bearer realm="userinfo"'
    body: dict[str, str] = {}
    if error:
        challenge += f', error="{error}"'
        if description:
            challenge += f', error_description="{description}"'
        body = {"error": error, "error_description": description}
    return Response(
        json.dumps(body),
        status=status,
        headers={**dict(JSON_HEADERS), "WWW-Authenticate": challenge},
    )


def _access_token_from_request() -> tuple[str | None, str | None]:
    """The bearer token (RFC 6750 2.1 header or 2.2 form body), or an error."""
    header = request.headers.get("Authorization", "")
    in_body = None
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        in_body = request.form.get("access_token")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, "invalid_request"
        if in_body:
            return None, "invalid_request"  # one method only (RFC 6750 2)
        return value.strip(), None
    if in_body:
        return in_body, None
    return None, None


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    token, problem = _access_token_from_request()
    if problem:
        return _bearer_error(400, problem, "send the token once, as a Bearer token")
    if token is None:
        return _bearer_error(401, None)
    provider = OAuthRuntime.of()
    claims = provider.verifier.claims(token)
    if claims is None:
        return _bearer_error(401, "invalid_token", "the access token is invalid or expired")
    if "openid" not in str(claims.get("scope", "")).split() or not claims.get("gid"):
        return _bearer_error(403, "insufficient_scope", "the token has no openid scope")
    grant = provider.tokens().grant(claims["gid"])
    if grant is None or grant.revoked_at is not None:
        return _bearer_error(401, "invalid_token", "the access token was revoked")
    accounts = provider.accounts.account_service()
    user = accounts.get(grant.user_id)
    if user is None or user.status is not UserStatus.ACTIVE:
        return _bearer_error(401, "invalid_token", "the account is no longer active")
    client = provider.clients.get(grant.client_id)
    if client is None:
        return _bearer_error(401, "invalid_token", "the client no longer exists")
    body: dict[str, Any] = {"sub": claims["sub"]}
    if grant.authorisation_id is not None:
        # acting for an organisation: asked again now (an ended authorisation ends the
        # grant), and described as it is now
        authority = OrgAuthority.of(provider.accounts)
        authorisation = authority.permitted(
            grant.user_id, grant.authorisation_id, client.client_id, grant.scope.split()
        )
        if authorisation is None:
            authority.end_grant(
                provider.tokens(), grant.id, grant.authorisation_id, client.client_id, "userinfo"
            )
            return _bearer_error(
                401, "invalid_token", "the organisation authorisation of the token has ended"
            )
        as_organisation = grant.subject_id is not None
        body.update(authority.claims(authorisation, None if as_organisation else claims["sub"]))
        if as_organisation:
            # the organisation is the subject: nothing of the key holder's account
            return Response(json.dumps(body, ensure_ascii=False), headers=JSON_HEADERS)
    body.update(
        release(
            user_claims(user, client, grant.claims, "userinfo"),
            str(claims.get("scope", "")).split(),
            requested_names(grant.claims, "userinfo"),
            allowed_scopes=client.scopes,
        )
    )
    return Response(json.dumps(body, ensure_ascii=False), headers=JSON_HEADERS)


def discovery_document() -> dict[str, Any]:
    provider = OAuthRuntime.of()
    settings = provider.core.settings
    endpoints = provider.endpoints
    client_auth = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
    signing = ["ES256", "RS256"]
    return {
        "issuer": endpoints.issuer,
        "authorization_endpoint": endpoints.authorization,
        "token_endpoint": endpoints.token,
        "userinfo_endpoint": endpoints.userinfo,
        "jwks_uri": endpoints.jwks,
        "end_session_endpoint": endpoints.end_session,
        "introspection_endpoint": endpoints.introspection,
        "revocation_endpoint": endpoints.revocation,
        "scopes_supported": list(STANDARD_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            TOKEN_EXCHANGE,
        ],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": signing,
        "token_endpoint_auth_methods_supported": client_auth,
        "token_endpoint_auth_signing_alg_values_supported": [
            "ES256",
            "ES384",
            "RS256",
            "PS256",
            "EdDSA",
        ],
        "introspection_endpoint_auth_methods_supported": client_auth[:3],
        "revocation_endpoint_auth_methods_supported": client_auth,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(SUPPORTED_CLAIMS),
        "claims_parameter_supported": True,
        "claim_types_supported": ["normal"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "acr_values_supported": AcrPolicy.from_settings(settings).supported(),
        "ui_locales_supported": ["zh-CN", "en"],
        "claims_locales_supported": ["zh-CN"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "access_token_signing_alg_values_supported": ["ES256"],
        "service_documentation": f"{endpoints.issuer}/.well-known/openid-configuration",
        # OpenID Connect for Identity Assurance 1.0 (scope realname)
        "verified_claims_supported": True,
        "trust_frameworks_supported": [settings.ida_trust_framework],
        "evidence_supported": ["electronic_record", "document", "electronic_signature"],
        "documents_supported": ["idcard", "residence_permit", "permanent_residence_permit"],
        "claims_in_verified_claims_supported": list(VERIFIED_CLAIM_NAMES),
    }


def _cached_json(response_key: str, build: Callable[[], Any], *, max_age: int) -> Response:
    cache = OAuthRuntime.of().json_cache
    cached = cache.get(response_key)
    if cached is None:
        cached = cache[response_key] = json.dumps(build(), separators=(",", ":")).encode()
    return Response(
        cached,
        mimetype="application/json",
        headers={"Cache-Control": f"public, max-age={max_age}", "Access-Control-Allow-Origin": "*"},
    )


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    return _cached_json(_DISCOVERY_CACHE, discovery_document, max_age=3600)


@bp.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server() -> Response:
    """RFC 8414: the same metadata."""
    return _cached_json(_DISCOVERY_CACHE, discovery_document, max_age=3600)


@bp.get("/jwks.json")
def jwks() -> Response:
    return Response(
        OAuthRuntime.of().keys.jwks_json(),
        mimetype="application/json",
        headers={"Cache-Control": "public, max-age=60", "Access-Control-Allow-Origin": "*"},
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    register_json_blueprint(app, bp)
    csrf = app.extensions["csrf"]
    csrf.exempt(bp)
