"""Every endpoint the fuzz drives, by family (test_coverage.py checks that this table
names every rule of the app's URL map, so a new endpoint cannot be forgotten)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    TOKEN = "token"  # /token, /introspect, /revoke: JSON always (the lean layer)
    USERINFO = "userinfo"  # JSON always, RFC 6750 errors
    AUTHORIZE = "authorize"  # error page, or an error redirect to a registered URI
    PAGE = "page"  # HTML pages (JSON errors only when asked for)
    PUBLIC = "public"  # discovery, JWKS, operations endpoints, static files
    SCIM = "scim"  # SCIM 2.0: application/scim+json errors (RFC 7644 3.12)


@dataclass(frozen=True)
class Target:
    rule: str
    methods: tuple[str, ...]
    kind: Kind
    names: tuple[str, ...] = ()
    path: str | None = None  # when the rule has a variable part
    path_suffixes: bool = False

    @property
    def url(self) -> str:
        return self.path or self.rule


AUTHZ = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "claims",
    "id_token_hint",
    "acr_values",
    "login_hint",
    "ui_locales",
    "response_mode",
    "request",
    "request_uri",
    "org_hint",
)
STATISTICS = ("from", "to", "service")
TOKEN = (
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "resource",
)
TOKEN_QUERY = ("token", "token_type_hint", "client_id", "client_secret")
FORM = ("csrf_token", "next", "rid")
ACCOUNT = (*FORM, "display_name", "email", "current_password", "password", "password_confirm")
CERTIFICATE = (*FORM, "challenge", "certificate", "signature")
REALNAME = (*FORM, "level", "id_number", "name", "phone", "otp", "photo", "action")
AGENT = (*FORM, "by", "invitee", "scope", "clients", "scopes", "starts_on", "ends_on")
ORG_ID = "00000000-0000-0000-0000-000000000000"
SCIM_BASE = "/scim/v2"
SCIM_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SCIM_QUERY = ("filter", "sortBy", "sortOrder", "startIndex", "count", "attributes")
RECORD_QUERY = ("status", "service", "item_code", "external_id", "offset", "limit")

TARGETS: dict[str, list[Target]] = {
    "machine": [
        Target("/token", ("POST",), Kind.TOKEN, TOKEN),
        Target("/introspect", ("POST",), Kind.TOKEN, TOKEN_QUERY),
        Target("/revoke", ("POST",), Kind.TOKEN, TOKEN_QUERY),
        Target("/security-events", ("POST",), Kind.PUBLIC),
    ],
    "userinfo": [
        Target("/userinfo", ("GET", "POST"), Kind.USERINFO, ("access_token",)),
    ],
    "authorize": [
        Target("/authorize", ("GET", "POST"), Kind.AUTHORIZE, AUTHZ),
        Target("/authorize/continue", ("GET",), Kind.AUTHORIZE, ("rid",)),
        Target("/authorize/consent", ("POST",), Kind.AUTHORIZE, (*FORM, "consent")),
        Target("/authorize/level", ("POST",), Kind.AUTHORIZE, FORM),
        Target("/authorize/account", ("POST",), Kind.AUTHORIZE, (*FORM, "account")),
    ],
    "sign_in": [
        Target("/", ("GET",), Kind.PAGE),
        Target(
            "/login",
            ("GET", "POST"),
            Kind.PAGE,
            (*FORM, "username", "password", "client_id", "login_hint", "ui_locales", "reauth"),
        ),
        Target("/login/otp", ("GET", "POST"), Kind.PAGE, (*FORM, "otp")),
        Target("/logout", ("GET", "POST"), Kind.PAGE, FORM),
        Target("/login/deletion", ("GET", "POST"), Kind.PAGE, (*FORM, "decision")),
        Target("/login/new-password", ("GET", "POST"), Kind.PAGE, ACCOUNT),
        Target(
            "/register",
            ("GET", "POST"),
            Kind.PAGE,
            (*FORM, "username", "password", "password_confirm", "phone"),
        ),
        Target("/locale", ("GET",), Kind.PAGE, ("lang", "next")),
        Target("/display", ("GET",), Kind.PAGE, ("mode", "next")),
        Target(
            "/session/end",
            ("GET", "POST"),
            Kind.PAGE,
            ("id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales"),
        ),
        Target("/session/end/confirm", ("POST",), Kind.PAGE, (*FORM, "lid", "logout")),
    ],
    "account": [
        Target("/account", ("GET",), Kind.PAGE),
        Target("/account/password", ("GET", "POST"), Kind.PAGE, ACCOUNT),
        Target("/account/profile", ("GET", "POST"), Kind.PAGE, ACCOUNT),
        Target("/account/recovery-codes", ("POST",), Kind.PAGE, ACCOUNT),
        Target("/account/totp", ("GET", "POST"), Kind.PAGE, (*FORM, "otp")),
        Target("/account/totp/disable", ("GET", "POST"), Kind.PAGE, (*FORM, "password")),
        Target("/account/services", ("GET",), Kind.PAGE),
        Target("/account/reauth", ("GET", "POST"), Kind.PAGE, (*FORM, "password")),
        Target("/account/sessions", ("GET",), Kind.PAGE),
        Target("/account/sessions/end", ("POST",), Kind.PAGE, (*FORM, "session")),
        Target("/account/sessions/end-others", ("POST",), Kind.PAGE, FORM),
        Target("/account/sessions/end-all", ("POST",), Kind.PAGE, FORM),
        Target("/account/activity", ("GET",), Kind.PAGE, ("before",)),
        Target("/account/activity/not-me", ("POST",), Kind.PAGE, (*FORM, "event")),
        Target("/account/delete", ("GET", "POST"), Kind.PAGE, (*FORM, "confirm")),
        Target("/account/services/revoke", ("POST",), Kind.PAGE, (*FORM, "client_id")),
        Target("/account/act-for", ("GET", "POST"), Kind.PAGE, (*FORM, "authorisation")),
        Target("/account/realname", ("GET", "POST"), Kind.PAGE, REALNAME),
        Target("/account/realname/phone", ("GET", "POST"), Kind.PAGE, REALNAME),
        Target("/account/realname/phone/code", ("GET", "POST"), Kind.PAGE, REALNAME),
        Target("/account/realname/face", ("GET", "POST"), Kind.PAGE, REALNAME),
        Target("/login/certificate", ("GET", "POST"), Kind.PAGE, CERTIFICATE),
        Target("/login/certificate/tls", ("GET",), Kind.PAGE, ("next",)),
        Target(
            "/login/certificate/new", ("GET", "POST"), Kind.PAGE, (*FORM, "username", "password")
        ),
        Target("/login/certificate/bind", ("GET", "POST"), Kind.PAGE, FORM),
        Target("/account/certificates", ("GET",), Kind.PAGE),
        Target(
            "/federation/<name>/login", ("GET",), Kind.PAGE, ("next",), path="/federation/x/login"
        ),
        Target(
            "/federation/<name>/callback",
            ("GET",),
            Kind.PAGE,
            ("state", "code", "iss", "error"),
            path="/federation/x/callback",
        ),
        Target(
            "/federation/<name>/logged-out",
            ("GET",),
            Kind.PAGE,
            ("state",),
            path="/federation/x/logged-out",
        ),
        Target(
            "/federation/<name>/backchannel-logout",
            ("POST",),
            Kind.PUBLIC,
            ("logout_token",),
            path="/federation/x/backchannel-logout",
        ),
        Target("/federation/new", ("GET", "POST"), Kind.PAGE, FORM),
        Target("/federation/link", ("GET", "POST"), Kind.PAGE, FORM),
        Target("/account/federation", ("GET",), Kind.PAGE),
        Target(
            "/account/federation/<int:link_id>/unlink",
            ("POST",),
            Kind.PAGE,
            FORM,
            path="/account/federation/1/unlink",
        ),
        Target(
            "/account/certificates/<int:binding_id>/unbind",
            ("POST",),
            Kind.PAGE,
            FORM,
            path="/account/certificates/1/unbind",
        ),
        Target("/staff/counter", ("GET", "POST"), Kind.PAGE, (*REALNAME, "username")),
        Target("/staff/levels", ("GET", "POST"), Kind.PAGE, (*FORM, "username", "level", "reason")),
        Target(
            "/staff/clients",
            ("GET", "POST"),
            Kind.PAGE,
            (
                *FORM,
                "client_id",
                "name",
                "redirect_uris",
                "scope",
                "min_level",
                "first_party",
                "require_org",
            ),
        ),
        Target(
            "/staff/clients/<string:client_id>",
            ("GET", "POST"),
            Kind.PAGE,
            (*FORM, "name", "redirect_uris", "scope", "min_level", "first_party", "require_org"),
            path="/staff/clients/tax-portal",
        ),
        Target(
            "/staff/clients/<string:client_id>/delete",
            ("POST",),
            Kind.PAGE,
            FORM,
            path="/staff/clients/tax-portal/delete",
        ),
        Target(
            "/staff/clients/<string:client_id>/secret",
            ("POST",),
            Kind.PAGE,
            FORM,
            path="/staff/clients/tax-portal/secret",
        ),
        Target("/staff/statistics", ("GET",), Kind.PAGE, STATISTICS),
        Target("/staff/statistics.json", ("GET",), Kind.PAGE, STATISTICS),
        Target("/staff/statistics.csv", ("GET",), Kind.PAGE, (*STATISTICS, "table")),
        Target("/account/organisations", ("GET", "POST"), Kind.PAGE, (*FORM, "uscc", "name")),
        Target(
            "/account/organisations/<string:authorisation_id>/confirm",
            ("POST",),
            Kind.PAGE,
            FORM,
            path=f"/account/organisations/{ORG_ID}/confirm",
        ),
        Target(
            "/account/organisations/<string:authorisation_id>/renounce",
            ("POST",),
            Kind.PAGE,
            FORM,
            path=f"/account/organisations/{ORG_ID}/renounce",
        ),
        Target("/org/<string:org_id>", ("GET",), Kind.PAGE, ("page",), path=f"/org/{ORG_ID}"),
        Target(
            "/org/<string:org_id>/agents", ("POST",), Kind.PAGE, AGENT, path=f"/org/{ORG_ID}/agents"
        ),
        Target(
            "/org/<string:org_id>/authorisations/<string:authorisation_id>/revoke",
            ("POST",),
            Kind.PAGE,
            FORM,
            path=f"/org/{ORG_ID}/authorisations/{ORG_ID}/revoke",
        ),
    ],
    "scim": [
        *(
            Target(SCIM_BASE + rule, SCIM_METHODS, Kind.SCIM, SCIM_QUERY, path=path)
            for rule, path in (
                ("/ServiceProviderConfig", None),
                ("/Schemas", None),
                ("/Schemas/<path:schema_id>", SCIM_BASE + "/Schemas/urn:x"),
                ("/ResourceTypes", None),
                ("/ResourceTypes/<string:name>", SCIM_BASE + "/ResourceTypes/User"),
                ("/Users", None),
                ("/Users/.search", None),
                ("/.search", None),
                ("/Users/<string:user_id>", SCIM_BASE + "/Users/" + ORG_ID),
                ("/Me", None),
                ("/", None),
            )
        ),
        Target("/scim/", SCIM_METHODS, Kind.SCIM),
        Target(
            "/scim/<path:rest>",
            SCIM_METHODS,
            Kind.SCIM,
            path="/scim/v1/",
            path_suffixes=True,
        ),
        Target(
            SCIM_BASE + "/<path:rest>",
            SCIM_METHODS,
            Kind.SCIM,
            SCIM_QUERY,
            path=SCIM_BASE + "/",
            path_suffixes=True,
        ),
    ],
    "records": [
        # JSON always, with RFC 6749 characters in the description (the USERINFO checks)
        Target("/api/v1/records", ("GET", "POST"), Kind.USERINFO, RECORD_QUERY),
        Target(
            "/api/v1/records/<record_id>",
            ("GET", "PATCH"),
            Kind.USERINFO,
            path=f"/api/v1/records/{ORG_ID}",
        ),
        Target("/api/v1/openapi.json", ("GET",), Kind.PUBLIC),
        Target("/account/records", ("GET",), Kind.PAGE, ("status", "service")),
        Target(
            "/org/<string:org_id>/records",
            ("GET",),
            Kind.PAGE,
            ("status", "service"),
            path=f"/org/{ORG_ID}/records",
        ),
        Target(
            "/account/records/<record_id>/rate",
            ("POST",),
            Kind.PAGE,
            (*FORM, "satisfaction"),
            path=f"/account/records/{ORG_ID}/rate",
        ),
    ],
    "public": [
        Target("/.well-known/openid-configuration", ("GET",), Kind.PUBLIC),
        Target("/.well-known/oauth-authorization-server", ("GET",), Kind.PUBLIC),
        Target("/jwks.json", ("GET",), Kind.PUBLIC),
        Target("/pki/bridge.crl", ("GET",), Kind.PUBLIC),
        Target("/healthz", ("GET",), Kind.PUBLIC),
        Target("/readyz", ("GET",), Kind.PUBLIC),
        Target("/metrics", ("GET",), Kind.PUBLIC),
        Target(
            "/static/<path:filename>",
            ("GET",),
            Kind.PUBLIC,
            path="/static/",
            path_suffixes=True,
        ),
    ],
}

ALL_TARGETS = [target for family in TARGETS.values() for target in family]
