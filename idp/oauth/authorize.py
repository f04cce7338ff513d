"""The authorization endpoint: the interactive part of OpenID Connect.

``/authorize`` (GET or POST) validates the request (``idp.oauth.authorize_request``):
until the redirect URI is known to be registered, errors are shown as a page, never
redirected (RFC 6749 4.1.2.1); after, they go back to the client with ``state`` and
``iss``. Then ``idp.oauth.decision`` says what the request needs next, from the request,
what the user already did for it and the session:

* sign in (again, or with a second factor): the browser goes to ``/login`` with
  ``next`` back here; ``login_hint`` fills in the username, ``ui_locales`` the page
  language; with ``prompt=none`` the client gets ``login_required``;
* choose an account (``prompt=select_account``);
* raise the real-name level that the client registered as its minimum, or asks for
  with an ``acr`` value for a level (``idp.oauth.assurance``): the user is offered the
  way (``/account/realname``, which returns here) or to go on without it; with
  ``prompt=none`` the client gets ``interaction_required``; going on gives
  ``unmet_authentication_requirements`` when the level is required, and otherwise the
  ``acr`` actually reached;
* choose the organisation to act for (scope ``enterprise``, or a client that requires
  one) unless the session already acts under an authorisation that permits the client
  and scopes: the browser goes to the picker (``/account/act-for?rid=...``,
  ``idp.oauth.act_for``), which returns here; with ``prompt=none`` the client gets
  ``interaction_required``;
* consent (third-party clients);
* or the code, which records the organisation authorisation, if any.

A request that needs the user is kept in the store (``idp.oauth.pending``, 10
minutes) while the user signs in, chooses an account or consents, and is validated
again when it resumes at ``/authorize/continue``.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError
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

from accounts.people.models import User
from accounts.people.session import current_user
from idp.core.principal import Principal
from idp.core.runtime import db
from idp.core.sessions import RP_SUBJECTS, current_principal, sign_out
from idp.core.signin import Proof, SignInMethods
from idp.core.web import error_response
from idp.oauth.acting import ENTERPRISE_SCOPE, OrgAuthority
from idp.oauth.assurance import AcrPolicy
from idp.oauth.authorize_request import Checked, InvalidAuthorizationRequest, check
from idp.oauth.decision import (
    ACCESS_DENIED,
    ACCOUNT_SELECTION_REQUIRED,
    CONSENT_REQUIRED,
    INTERACTION_REQUIRED,
    LOGIN_REQUIRED,
    UNMET_AUTHENTICATION_REQUIREMENTS,
    Ask,
    ChooseOrganisation,
    Consent,
    Decision,
    Issue,
    Refuse,
    SelectAccount,
    SignedIn,
    SignIn,
    StepUp,
    decide,
    needs_consent_lookup,
    needs_level,
)
from idp.oauth.pending import Pending
from idp.oauth.server import OAuthRuntime
from idp.oauth.tokens import CodeRecord

bp = Blueprint("authorize", __name__, template_folder="templates")


class UnmetAuthenticationRequirementsError(OAuth2Error):  # type: ignore[misc]
    """OpenID Connect Core "Unmet Authentication Requirements" 1.0."""

    error = "unmet_authentication_requirements"


REFUSALS: dict[str, type[OAuth2Error]] = {
    LOGIN_REQUIRED: LoginRequiredError,
    ACCOUNT_SELECTION_REQUIRED: AccountSelectionRequiredError,
    INTERACTION_REQUIRED: InteractionRequiredError,
    CONSENT_REQUIRED: ConsentRequiredError,
    UNMET_AUTHENTICATION_REQUIREMENTS: UnmetAuthenticationRequirementsError,
    ACCESS_DENIED: AccessDeniedError,
}


# -- the flow


def run(params: dict[str, list[str]], pending: Pending | None = None) -> ResponseReturnValue:
    """Validate the request, decide, and carry the decision out."""
    provider = OAuthRuntime.of()
    try:
        checked = check(provider, params)
    except InvalidAuthorizationRequest as invalid:
        if pending is not None:
            provider.pending().drop(pending)
        return _rejected(provider, invalid)
    now = provider.core.clock.now().timestamp()
    pending = pending or Pending(params=params, created=now)
    user = current_user()
    ask = checked.ask
    progress = pending.progress
    policy = AcrPolicy.from_settings(provider.core.settings)
    signed_in = None
    if user is not None:
        signed_in = _signed_in(provider, checked, ask, pending, user, policy)
    decision = decide(ask, progress, signed_in, policy=policy, now=now)
    return _carry_out(provider, checked, pending, user, decision)


def _signed_in(
    provider: OAuthRuntime,
    checked: Checked,
    ask: Ask,
    pending: Pending,
    user: User,
    policy: AcrPolicy,
) -> SignedIn:
    """The session's sign-in, and the facts the decision reads (each looked up only
    when the decision will read it)."""
    progress = pending.progress
    level = provider.accounts.realname_service().level(user) if needs_level(ask, policy) else 1
    covers = needs_consent_lookup(ask, progress) and provider.consents().covers(
        user.id, checked.client.client_id, checked.consent_scopes
    )
    principal = _principal()
    authorisation = None
    if ask.wants_org:
        authorisation = _acting_under(provider, checked, pending, user, principal)
    subject = None
    if ask.hint_subject is not None:
        public_id = _subject_id(principal, authorisation) or user.public_id
        subject = provider.tokens().subject(checked.client, public_id)
    return SignedIn(
        auth_time=principal.auth_time,
        amr=principal.amr,
        # read only when the client asks for the MFA level
        has_second_factor=policy.mfa in ask.requested_acr and _can_give_second_factor(user),
        subject=subject,
        level=level,
        consent_covers=covers,
        authorisation=authorisation,
    )


def _acting_under(
    provider: OAuthRuntime, checked: Checked, pending: Pending, user: User, principal: Principal
) -> str | None:
    """The session's organisation authorisation, if it is the user's, live, permits
    this client and scopes, and (until the user chose for this request) is for the
    organisation ``org_hint`` names."""
    acting = principal.acting_for
    if acting is None:
        return None
    authority = OrgAuthority.of(provider.accounts)
    authorisation = authority.permitted(
        user.id, acting.authorisation, checked.client.client_id, checked.scopes
    )
    if authorisation is None:
        return None
    if authority.organisation(authorisation).public_id != acting.organisation:
        return None
    hint = checked.org_hint
    if hint and not pending.org_chosen and not authority.matches_hint(authorisation, hint):
        return None
    return authorisation.public_id


def _subject_id(principal: Principal, authorisation: str | None) -> str | None:
    """The organisation's public id when the request acts for the organisation the
    sign-in proved (an enterprise certificate alone): the tokens' subject; else None
    (the account's)."""
    acting = principal.acting_for
    if acting is None or not acting.as_subject or authorisation != acting.authorisation:
        return None
    return acting.organisation


def _principal() -> Principal:
    """The session's sign-in; only called once ``current_user()`` found the account,
    which it found through this principal."""
    principal = current_principal()
    assert principal is not None
    return principal


def _can_give_second_factor(user: User) -> bool:
    """Whether a registered second factor (today TOTP) applies to the account."""
    account = Proof(method="", uid=user.id, sub=user.public_id, subject=user.subject, amr=())
    return SignInMethods.of().second_factor_for(account) is not None


def _carry_out(
    provider: OAuthRuntime,
    checked: Checked,
    pending: Pending,
    user: User | None,
    decision: Decision,
) -> ResponseReturnValue:
    if isinstance(decision, Issue):
        assert user is not None
        return _issue_code(provider, checked, pending, user, decision)
    if isinstance(decision, Refuse):
        provider.pending().drop(pending)
        error = REFUSALS[decision.error](decision.description)
        return _error_to_client(provider, checked, error)
    provider.pending().save(pending)
    if isinstance(decision, SignIn):
        return _send_to_sign_in(checked, pending, reauth=decision.reauth)
    assert user is not None
    if isinstance(decision, ChooseOrganisation):
        return redirect(url_for("act_for.act_for", rid=pending.rid))
    if isinstance(decision, SelectAccount):
        page = render_template(
            "oauth/select_account.html",
            user=user,
            client=checked.client,
            rid=pending.rid,
            form=FlaskForm(),
        )
    elif isinstance(decision, StepUp):
        page = render_template(
            "oauth/step_up.html",
            client=checked.client,
            wanted=decision.wanted,
            level=decision.current,
            required=decision.required,
            raise_url=url_for(
                "realname.realname",
                level=decision.wanted,
                next=url_for("authorize.resume", rid=pending.rid),
            ),
            rid=pending.rid,
            form=FlaskForm(),
        )
    else:
        assert isinstance(decision, Consent)
        page = render_template(
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
    return make_response(page)


def _send_to_sign_in(checked: Checked, pending: Pending, *, reauth: bool) -> ResponseReturnValue:
    params = {
        "next": url_for("authorize.resume", rid=pending.rid),
        "client_id": checked.client.client_id,
    }
    if checked.data.get("login_hint"):
        params["login_hint"] = checked.data["login_hint"]
    if checked.data.get("ui_locales"):
        params["ui_locales"] = checked.data["ui_locales"]
    if reauth:
        params["reauth"] = "1"  # show the form although a session exists
    return redirect(url_for("login.login") + "?" + urlencode(params))


def _rejected(provider: OAuthRuntime, invalid: InvalidAuthorizationRequest) -> Response:
    error = invalid.error
    if error.redirect_uri:
        response: Response = provider.server.handle_error_response(invalid.oauth_request, error)
        return response
    return error_response(
        400,
        _(
            "The application sent an invalid sign-in request (%(reason)s). Please "
            "return to the application and try again.",
            reason=error.description or error.error,
        ),
        error=error.error,
        title=_("The request cannot be processed"),
    )


def _error_to_client(provider: OAuthRuntime, checked: Checked, error: OAuth2Error) -> Response:
    response: Response = provider.server.handle_error_response(
        checked.oauth_request, checked.error(error)
    )
    return response


def _issue_code(
    provider: OAuthRuntime, checked: Checked, pending: Pending, user: User, decision: Issue
) -> Response:
    data = checked.data
    principal = _principal()
    scopes = checked.scopes
    if decision.authorisation is None:
        # for themselves: no organisation context, whatever the client asked
        scopes = [scope for scope in scopes if scope != ENTERPRISE_SCOPE]
    record = CodeRecord(
        client_id=checked.client.client_id,
        redirect_uri=checked.redirect_uri,
        scope=" ".join(scopes),
        user_id=user.id,
        user_public_id=user.public_id,
        code_challenge=data["code_challenge"],
        code_challenge_method=data["code_challenge_method"],
        auth_time=principal.auth_time,
        amr=list(principal.amr),
        acr=decision.acr,
        sid=principal.sid,
        nonce=data.get("nonce") if "openid" in checked.scopes else None,
        claims=checked.claims,
        grant_id=uuid.uuid4().hex,
        authorisation_id=decision.authorisation,
        subject_id=_subject_id(principal, decision.authorisation),
    )
    checked.oauth_request.code_record = record
    response: Response = provider.server.create_authorization_response(
        request=checked.oauth_request, grant_user=user, grant=checked.grant
    )
    relying_parties = list(session.get("rps", []))
    if checked.client.client_id not in relying_parties:
        session["rps"] = [*relying_parties, checked.client.client_id]
    # back-channel logout names the subject this service was last given (``enqueue_logouts``)
    subjects = dict(session.get(RP_SUBJECTS, {}))
    if record.subject_id is not None:
        subjects[checked.client.client_id] = record.subject_id
    else:
        subjects.pop(checked.client.client_id, None)
    if subjects or RP_SUBJECTS in session:
        session[RP_SUBJECTS] = subjects
    provider.pending().drop(pending)
    return response


# -- routes


def _load_pending(rid: str) -> Pending | None:
    return OAuthRuntime.of().pending().load(rid)


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> ResponseReturnValue:
    source = request.form if request.method == "POST" else request.args
    return run(source.to_dict(flat=False))


@bp.get("/authorize/continue")
def resume() -> ResponseReturnValue:
    pending = _load_pending(request.args.get("rid", ""))
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
    pending = _load_pending(request.form.get("rid", ""))
    user = current_user()
    if pending is None or user is None:
        abort(400)
    provider = OAuthRuntime.of()
    try:
        checked = check(provider, pending.params)
    except InvalidAuthorizationRequest as invalid:
        provider.pending().drop(pending)
        return _rejected(provider, invalid)
    if request.form.get("consent") != "approve":
        provider.pending().drop(pending)
        return _error_to_client(provider, checked, AccessDeniedError("The user declined."))
    provider.consents().record(user.id, checked.client.client_id, checked.consent_scopes)
    db().commit()
    pending.consented = True
    return run(pending.params, pending)


@bp.post("/authorize/level")
def decline_level() -> ResponseReturnValue:
    """The user does not raise the level now: the client learns the level was not
    reached (an error when it is required, the acr actually reached otherwise)."""
    pending = _load_pending(request.form.get("rid", ""))
    if pending is None or current_user() is None:
        abort(400)
    pending.level_declined = True
    return run(pending.params, pending)


@bp.post("/authorize/account")
def choose_account() -> ResponseReturnValue:
    pending = _load_pending(request.form.get("rid", ""))
    if pending is None or current_user() is None:
        abort(400)
    if request.form.get("account") == "other":
        sign_out()
        OAuthRuntime.of().pending().save(pending)
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
