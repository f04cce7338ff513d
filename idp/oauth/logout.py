"""Logout: RP-initiated (OpenID Connect RP-Initiated Logout 1.0) and back-channel
(OpenID Connect Back-Channel Logout 1.0).

``/session/end`` accepts ``id_token_hint`` and/or ``client_id``, a registered
``post_logout_redirect_uri`` and ``state``. An unregistered redirect URI, or an ID token
we did not issue, gets an error page, never a redirect (no open redirector). With a
hint that matches the session the user is signed out at once; otherwise they confirm.

Whenever a signed-in session ends (here, at ``/logout``, or when another user signs in
on the browser), every service that received tokens in it and registered a
``backchannel_logout_uri`` is owed a logout token. Notices are written to the database
with the logout and delivered by the provider's ``BackchannelDeliverer``
(``idp.oauth.backchannel``), a background thread in every worker.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from authlib.common.urls import add_params_to_uri
from flask import (
    Blueprint,
    Flask,
    Response,
    make_response,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from joserfc.errors import JoseError

from accounts.people.session import current_user
from idp.core.runtime import Runtime, audit_log, db
from idp.core.sessions import RP_SUBJECTS, session_ended, sign_out
from idp.core.signin import SignInMethods
from idp.core.web import error_response
from idp.oauth.clients import ClientInfo
from idp.oauth.models import LogoutDelivery
from idp.oauth.server import OAuthRuntime

bp = Blueprint("oauth_logout", __name__, template_folder="templates")

CONFIRM_TTL = 600


# -- RP-initiated logout


def _hint_claims(id_token: str) -> dict[str, Any] | None:
    """Claims of an ID token we issued (expired ones are fine for a logout hint)."""
    provider = OAuthRuntime.of()
    try:
        header, claims = provider.keys.verify(id_token)
    except (JoseError, ValueError):
        return None
    if header.get("typ") not in (None, "JWT") or claims.get("iss") != provider.issuer:
        return None
    return dict(claims)


def _bad_request(message: str) -> Response:
    return error_response(400, message, title=_("The sign-out request cannot be processed"))


@bp.route("/session/end", methods=["GET", "POST"])
def end_session() -> ResponseReturnValue:
    params = request.form if request.method == "POST" else request.args
    hint = params.get("id_token_hint")
    client_id = params.get("client_id")
    redirect_uri = params.get("post_logout_redirect_uri")
    claims = None
    if hint:
        claims = _hint_claims(hint)
        if claims is None:
            return _bad_request(_("The application sent an ID token this service did not issue."))
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if client_id and client_id not in audiences:
            return _bad_request(_("The application's identifier does not match the ID token."))
        client_id = client_id or (audiences[0] if len(audiences) == 1 else None)
    client: ClientInfo | None = OAuthRuntime.of().clients.get(client_id) if client_id else None
    if client_id and client is None:
        return _bad_request(_("The application is not known to this service."))
    if redirect_uri:
        if client is None or redirect_uri not in client.post_logout_redirect_uris:
            return _bad_request(
                _("The address to return to is not registered for this application.")
            )
        if params.get("state"):
            redirect_uri = add_params_to_uri(redirect_uri, [("state", params["state"])])
    user = current_user()
    if user is None:
        return _finish(redirect_uri)
    # only an ID token of this very session signs out without asking (RP-Initiated
    # Logout 1.0 section 2): an old hint may have leaked through URLs and logs
    matches = claims is not None and claims.get("sid") == session.get("sid")
    if matches:
        return _log_out(redirect_uri, client)
    lid = secrets.token_urlsafe(24)
    Runtime.of().store.set(
        f"logout:{lid}",
        json.dumps({"redirect": redirect_uri, "client": client_id}).encode(),
        CONFIRM_TTL,
    )
    return make_response(
        render_template(
            "oauth/logout_confirm.html",
            lid=lid,
            form=FlaskForm(),
            service_name=client.name if client else None,
        )
    )


@bp.post("/session/end/confirm")
def confirm() -> ResponseReturnValue:
    form = FlaskForm()
    if not form.validate_on_submit():
        return _bad_request(_("This form has expired. Please sign out again."))
    raw = Runtime.of().store.take(f"logout:{request.form.get('lid', '')[:64]}")
    pending = json.loads(raw) if raw else {}
    client = OAuthRuntime.of().clients.get(pending.get("client")) if pending.get("client") else None
    if request.form.get("logout") != "yes":
        # not signed out: the service's post-logout address would say otherwise
        return redirect("/account")
    return _log_out(pending.get("redirect"), client)


def _log_out(redirect_uri: str | None, client: ClientInfo | None) -> ResponseReturnValue:
    user = current_user()
    if user is not None:
        audit_log().record(
            "signout",
            subject=user.subject,
            details={"initiated_by": client.client_id if client else "user"},
        )
        db().commit()
    # signed in through an upstream: on to its sign-out next (single logout)
    upstream = SignInMethods.of().sign_out_redirect(redirect_uri)
    sign_out()
    return redirect(upstream) if upstream else _finish(redirect_uri)


def _finish(redirect_uri: str | None) -> ResponseReturnValue:
    if redirect_uri:
        return redirect(redirect_uri)
    return make_response(render_template("oauth/logged_out.html"))


# -- back-channel logout: owing notices


def enqueue_logouts(sender: Flask, data: dict[str, Any], **_: Any) -> None:
    """Record a logout notice for every service of the ending session that wants one."""
    if not data.get("rps") or not data.get("sub"):
        return
    provider = OAuthRuntime.of(sender)
    now = provider.core.clock.now()
    owed = 0
    for client_id in data["rps"]:
        client = provider.clients.get(client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        db().add(
            LogoutDelivery(
                client_id=client.client_id,
                uri=client.backchannel_logout_uri,
                subject=provider.tokens().subject(client, _subject_id(data, client_id)),
                sid=data.get("sid"),
                created_at=now,
                next_attempt_at=now,
            )
        )
        owed += 1
    if owed:
        db().commit()
        provider.backchannel.wake()


def _subject_id(data: dict[str, Any], client_id: str) -> str:
    """The public id the service's ``sub`` derives from: the account's, or the
    organisation's when the session gave it the organisation as the subject."""
    subjects = data.get(RP_SUBJECTS)
    if isinstance(subjects, dict) and isinstance(subjects.get(client_id), str):
        return str(subjects[client_id])
    return str(data["sub"])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(end_session)
    session_ended.connect(enqueue_logouts, sender=app, weak=False)
