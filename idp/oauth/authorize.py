"""The authorization endpoint: the interactive part of OpenID Connect.

``/authorize`` (GET or POST) validates the request with Authlib (client, exact
``redirect_uri``, ``response_type=code``, scopes, PKCE S256). Until the redirect URI is
known to be registered, errors are shown as a page, never redirected (RFC 6749
4.1.2.1). Then the OpenID Connect parameters are applied:

* ``prompt`` (none, login, consent, select_account), ``max_age``, ``id_token_hint``,
  ``acr_values`` and an essential ``acr`` claim decide whether the user must sign in
  (again, or with a second factor); with ``prompt=none`` the client gets
  ``login_required`` / ``consent_required`` / ... instead of a page.
* A real-name level that the client registered as its minimum, or asks for with an
  ``acr`` value for a level (``idp.oauth.assurance``), is checked after sign-in. Below
  it, the user is offered the way to raise it (``/account/realname``, which returns
  here) or to cancel; with ``prompt=none`` the client gets ``interaction_required``.
  Cancelling gives ``unmet_authentication_requirements`` when the level is required,
  and otherwise continues with the ``acr`` actually reached.
* ``login_hint`` fills in the username, ``ui_locales`` the page language.
* ``request`` / ``request_uri`` are not supported and are refused as specified.

A request that needs the user is kept in the store (``authz:<rid>``, 10 minutes)
while the user signs in, chooses an account or consents, and is validated again
when it resumes at ``/authorize/continue``.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidRequestError
from authlib.oidc.core.errors import (
    AccountSelectionRequiredError,
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from joserfc.errors import JoseError

from accounts.container import Accounts
from accounts.people.models import User
from accounts.people.session import current_user
from idp.core.runtime import Runtime, db
from idp.core.sessions import sign_out
from idp.core.web import error_response
from idp.oauth.assurance import AcrPolicy, LevelDemand
from idp.oauth.claims import (
    ClaimsRequestError,
    essential_acr_values,
    limit_to_scopes,
    parse_claims_request,
    scopes_for,
)
from idp.oauth.clients import ClientInfo
from idp.oauth.consent import ConsentService
from idp.oauth.server import OAuthRuntime
from idp.oauth.tokens import CodeRecord

bp = Blueprint("authorize", __name__, template_folder="templates")

PENDING_TTL = 600
PROMPTS = frozenset({"none", "login", "consent", "select_account"})


class RequestNotSupportedError(OAuth2Error):  # type: ignore[misc]
    error = "request_not_supported"


class RequestUriNotSupportedError(OAuth2Error):  # type: ignore[misc]
    error = "request_uri_not_supported"


class UnmetAuthenticationRequirementsError(OAuth2Error):  # type: ignore[misc]
    """OpenID Connect Core "Unmet Authentication Requirements" 1.0."""

    error = "unmet_authentication_requirements"


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


@dataclass
class Pending:
    """An authorization request waiting for the user."""

    params: dict[str, list[str]]
    created: float
    consented: bool = False
    account_chosen: bool = False
    # the user chose to go on without the real-name level the client prefers
    level_declined: bool = False
    rid: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def save(self) -> None:
        Runtime.of().store.set(f"authz:{self.rid}", json.dumps(asdict(self)).encode(), PENDING_TTL)

    @classmethod
    def load(cls, rid: str) -> Pending | None:
        if not rid or len(rid) > 64:
            return None
        raw = Runtime.of().store.get(f"authz:{rid}")
        return cls(**json.loads(raw)) if raw else None

    def drop(self) -> None:
        Runtime.of().store.delete(f"authz:{self.rid}")


@dataclass
class Checked:
    """A validated request and what it asks of the user."""

    oauth_request: ParamsRequest
    grant: Any
    client: ClientInfo
    redirect_uri: str
    prompts: frozenset[str]
    max_age: int | None
    claims: dict[str, Any] | None
    hint_subject: str | None
    acr_wanted: list[str]
    acr_essential: list[str] | None

    @property
    def scopes(self) -> list[str]:
        return str(self.oauth_request.scope or "").split()

    @property
    def requested_acr(self) -> list[str]:
        """The acr values asked for, in order of preference (essential ones win)."""
        return self.acr_essential or self.acr_wanted

    @property
    def consent_scopes(self) -> set[str]:
        """What the user consents to: the scopes, and those of individually asked claims."""
        return set(self.scopes) | scopes_for(self.claims)


class StopWith(Exception):
    """Ends the flow with this response (a page, a redirect, an error)."""

    def __init__(self, response: ResponseReturnValue) -> None:
        super().__init__("stop")
        self.response = response


# -- validation


def _check(params: dict[str, list[str]]) -> Checked:
    provider = OAuthRuntime.of()
    server = provider.server
    oauth_request = ParamsRequest(provider.endpoints.authorization, params)
    try:
        grant = server.get_consent_grant(request=oauth_request, end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            raise StopWith(server.handle_error_response(oauth_request, error)) from None
        raise StopWith(
            error_response(
                400,
                _(
                    "The application sent an invalid sign-in request (%(reason)s). Please "
                    "return to the application and try again.",
                    reason=error.description or error.error,
                ),
                error=error.error,
                title=_("The request cannot be processed"),
            )
        ) from None
    redirect_uri = grant.redirect_uri
    data = oauth_request.payload.data

    def fail(error: OAuth2Error) -> StopWith:
        error.redirect_uri = redirect_uri
        error.state = data.get("state")
        return StopWith(server.handle_error_response(oauth_request, error))

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
    try:
        claims = parse_claims_request(data.get("claims"))
    except ClaimsRequestError as exc:
        raise fail(InvalidRequestError(str(exc))) from None
    claims = limit_to_scopes(claims, grant.request.client.scopes)
    hint_subject = None
    if data.get("id_token_hint"):
        hint_subject = _hint_subject(data["id_token_hint"], grant.request.client)
        if hint_subject is None:
            raise fail(InvalidRequestError("'id_token_hint' is not an ID token from us."))
    return Checked(
        oauth_request=oauth_request,
        grant=grant,
        client=grant.request.client,
        redirect_uri=redirect_uri,
        prompts=prompts,
        max_age=max_age,
        claims=claims,
        hint_subject=hint_subject,
        acr_wanted=data.get("acr_values", "").split(),
        acr_essential=essential_acr_values(claims),
    )


def _hint_subject(id_token: str, client: ClientInfo) -> str | None:
    """The ``sub`` of an ID token we issued to this client (it may have expired)."""
    try:
        header, claims = OAuthRuntime.of().keys.verify(id_token)
    except (JoseError, ValueError):
        return None
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if header.get("typ") not in (None, "JWT") or client.client_id not in audiences:
        return None
    if claims.get("iss") != OAuthRuntime.of().issuer:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None


# -- the flow


def _now() -> float:
    return Runtime.of().clock.now().timestamp()


def _acr_policy() -> AcrPolicy:
    return AcrPolicy.from_settings(Runtime.of().settings)


def _needs_sign_in(checked: Checked, pending: Pending, user: User | None) -> bool:
    if user is None:
        return True
    auth_time = float(session.get("auth_time", 0))
    fresh = auth_time >= pending.created  # signed in for this very request
    if "login" in checked.prompts and not fresh:
        return True
    if checked.max_age is not None and _now() - auth_time > checked.max_age and not fresh:
        return True
    if checked.hint_subject is not None:
        subject = OAuthRuntime.of().tokens().subject(checked.client, user.public_id)
        if subject != checked.hint_subject:
            return True
    return _wants_second_factor(checked, user)


def _wants_second_factor(checked: Checked, user: User) -> bool:
    """A step-up is due: the client asks for the MFA level, the session has one factor
    and the account can give a second."""
    mfa = _acr_policy().mfa
    return mfa in checked.requested_acr and "otp" not in session.get("amr", []) and user.has_totp


def _send_to_sign_in(checked: Checked, pending: Pending, user: User | None) -> ResponseReturnValue:
    if "none" in checked.prompts:
        raise StopWith(_error_to_client(checked, LoginRequiredError()))
    pending.save()
    params = {
        "next": url_for("authorize.resume", rid=pending.rid),
        "client_id": checked.client.client_id,
    }
    data = checked.oauth_request.payload.data
    if data.get("login_hint"):
        params["login_hint"] = data["login_hint"]
    if data.get("ui_locales"):
        params["ui_locales"] = data["ui_locales"]
    if user is not None:
        params["reauth"] = "1"  # show the form although a session exists
    return redirect(url_for("login.login") + "?" + urlencode(params))


def _error_to_client(checked: Checked, error: OAuth2Error) -> Response:
    error.redirect_uri = checked.redirect_uri
    error.state = checked.oauth_request.payload.data.get("state")
    response: Response = OAuthRuntime.of().server.handle_error_response(
        checked.oauth_request, error
    )
    return response


def run(params: dict[str, list[str]], pending: Pending | None = None) -> ResponseReturnValue:
    try:
        checked = _check(params)
        pending = pending or Pending(params=params, created=_now())
        return _continue(checked, pending)
    except StopWith as stop:
        if pending is not None:
            pending.drop()
        return stop.response


def _continue(checked: Checked, pending: Pending) -> ResponseReturnValue:
    user = current_user()
    if _needs_sign_in(checked, pending, user):
        if user is not None and float(session.get("auth_time", 0)) >= pending.created:
            # signed in for this request, but not as the user the ID token hint names
            return _error_to_client(checked, LoginRequiredError())
        return _send_to_sign_in(checked, pending, user)
    assert user is not None
    amr = list(session.get("amr", []))
    policy = _acr_policy()
    asks_level = checked.client.min_level > 1 or any(
        policy.level_of(value) for value in checked.requested_acr
    )
    level = Accounts.of().realname_service().level(user) if asks_level else 1  # one query saved
    achieved = policy.achieved(checked.requested_acr, amr, level)
    if "select_account" in checked.prompts and not pending.account_chosen:
        if "none" in checked.prompts:
            raise StopWith(_error_to_client(checked, AccountSelectionRequiredError()))
        pending.save()
        return make_response(
            render_template(
                "oauth/select_account.html",
                user=user,
                client=checked.client,
                rid=pending.rid,
                form=FlaskForm(),
            )
        )
    demand = LevelDemand.of(
        policy,
        client_min_level=checked.client.min_level,
        essential=checked.acr_essential,
        preferred=checked.acr_wanted,
        amr=amr,
        level=level,
    )
    if demand.unmet(level) and (demand.required or not pending.level_declined):
        return _step_up(checked, pending, demand, level)
    if checked.acr_essential and achieved not in checked.acr_essential:
        return _unmet(checked)
    consents = ConsentService(db(), Runtime.of().clock)
    needs_consent = not checked.client.first_party and (
        ("consent" in checked.prompts and not pending.consented)
        or not (
            pending.consented
            or consents.covers(user.id, checked.client.client_id, checked.consent_scopes)
        )
    )
    if needs_consent:
        if "none" in checked.prompts:
            raise StopWith(_error_to_client(checked, ConsentRequiredError()))
        pending.save()
        return make_response(
            render_template(
                "oauth/consent.html",
                client=checked.client,
                scopes=checked.scopes,
                claims=sorted(
                    set((checked.claims or {}).get("userinfo", {}))
                    | set((checked.claims or {}).get("id_token", {}))
                ),
                rid=pending.rid,
                form=FlaskForm(),
                user=user,
            )
        )
    return _issue_code(checked, pending, user, achieved)


def _step_up(
    checked: Checked, pending: Pending, demand: LevelDemand, level: int
) -> ResponseReturnValue:
    """The account's real-name level is below what the client asks for."""
    if "none" in checked.prompts:
        raise StopWith(
            _error_to_client(
                checked,
                InteractionRequiredError(
                    f"The service requires real-name level {demand.level}; the user must "
                    "raise it interactively."
                ),
            )
        )
    if demand.required and pending.level_declined:
        raise StopWith(_unmet(checked, f"real-name level {demand.level} is required"))
    pending.save()
    return make_response(
        render_template(
            "oauth/step_up.html",
            client=checked.client,
            wanted=demand.level,
            level=level,
            required=demand.required,
            raise_url=url_for(
                "realname.realname",
                level=demand.level,
                next=url_for("authorize.resume", rid=pending.rid),
            ),
            rid=pending.rid,
            form=FlaskForm(),
        )
    )


def _unmet(checked: Checked, reason: str | None = None) -> Response:
    return _error_to_client(
        checked,
        UnmetAuthenticationRequirementsError(
            "The sign-in cannot reach the authentication level the client requires"
            + (f" ({reason})." if reason else ".")
        ),
    )


def _issue_code(checked: Checked, pending: Pending, user: User, acr: str) -> Response:
    data = checked.oauth_request.payload.data
    record = CodeRecord(
        client_id=checked.client.client_id,
        redirect_uri=checked.redirect_uri,
        scope=" ".join(checked.scopes),
        user_id=user.id,
        user_public_id=user.public_id,
        code_challenge=data["code_challenge"],
        code_challenge_method=data["code_challenge_method"],
        auth_time=float(session["auth_time"]),
        amr=list(session.get("amr", [])),
        acr=acr,
        sid=session.get("sid"),
        nonce=data.get("nonce") if "openid" in checked.scopes else None,
        claims=checked.claims,
        grant_id=uuid.uuid4().hex,
    )
    checked.oauth_request.code_record = record
    response: Response = OAuthRuntime.of().server.create_authorization_response(
        request=checked.oauth_request, grant_user=user, grant=checked.grant
    )
    relying_parties = list(session.get("rps", []))
    if checked.client.client_id not in relying_parties:
        session["rps"] = [*relying_parties, checked.client.client_id]
    pending.drop()
    return response


# -- routes


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> ResponseReturnValue:
    source = request.form if request.method == "POST" else request.args
    return run(source.to_dict(flat=False))


@bp.get("/authorize/continue")
def resume() -> ResponseReturnValue:
    pending = Pending.load(request.args.get("rid", ""))
    if pending is None:
        return error_response(
            400,
            _(
                "This sign-in request has expired. Please return to the application and "
                "start again."
            ),
            title=_("The request has expired"),
        )
    return run(pending.params, pending)


@bp.post("/authorize/consent")
def consent() -> ResponseReturnValue:
    pending = Pending.load(request.form.get("rid", ""))
    user = current_user()
    if pending is None or user is None:
        abort(400)
    try:
        checked = _check(pending.params)
    except StopWith as stop:
        pending.drop()
        return stop.response
    if request.form.get("consent") != "approve":
        pending.drop()
        return _error_to_client(checked, AccessDeniedError("The user declined."))
    ConsentService(db(), Runtime.of().clock).record(
        user.id, checked.client.client_id, checked.consent_scopes
    )
    db().commit()
    pending.consented = True
    return run(pending.params, pending)


@bp.post("/authorize/level")
def decline_level() -> ResponseReturnValue:
    """The user does not raise the level now: the client learns the level was not
    reached (an error when it is required, the acr actually reached otherwise)."""
    pending = Pending.load(request.form.get("rid", ""))
    if pending is None or current_user() is None:
        abort(400)
    pending.level_declined = True
    return run(pending.params, pending)


@bp.post("/authorize/account")
def choose_account() -> ResponseReturnValue:
    pending = Pending.load(request.form.get("rid", ""))
    if pending is None or current_user() is None:
        abort(400)
    if request.form.get("account") == "other":
        sign_out()
        pending.save()
        return redirect(url_for("login.login", next=url_for("authorize.resume", rid=pending.rid)))
    pending.account_chosen = True
    return run(pending.params, pending)


def client_display_name(client_id: str | None) -> str | None:
    """For the sign-in page: the name of the service the user is signing in to."""
    client = OAuthRuntime.of().clients.get(client_id)
    return client.name if client else None


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(authorize)
