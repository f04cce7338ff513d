"""The organisation picker: ``GET/POST /account/act-for``.

A signed-in person chooses whom they act for: one of the organisations their live
authorisations name (``AuthorisationService.live_for``), or themselves. The choice is
kept in the session principal (``set_acting_for``) and read by the authorization
endpoint for clients that ask for the scope ``enterprise`` or require an organisation
(``idp.oauth.acting``). It lives in ``idp.oauth`` because the authorization flow sends
the browser here (``?rid=``, the pending request) and takes it back.

The form is never trusted: the chosen authorisation is looked up again and must be the
user's and live (and, for a pending request, permit its client and scopes); anything
else is refused with a page and audited.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from accounts.organisations.authorisations import Scope
from accounts.people.models import User
from accounts.people.session import current_user, login_required
from idp.core.audit.services import FAILURE
from idp.core.principal import ActingFor
from idp.core.runtime import audit_log, db
from idp.core.sessions import current_principal, set_acting_for
from idp.core.web import error_response
from idp.oauth.acting import OrgAuthority, checked_scopes
from idp.oauth.authorize_request import Checked, InvalidAuthorizationRequest, check
from idp.oauth.pending import Pending
from idp.oauth.server import OAuthRuntime

bp = Blueprint("act_for", __name__, template_folder="templates")

SELF = "self"


def _request_for(rid: str) -> tuple[Pending, Checked] | Response:
    """The pending authorization request the picker serves, validated again."""
    provider = OAuthRuntime.of()
    pending = provider.pending().load(rid)
    if pending is None:
        return error_response(
            400,
            _(
                "This sign-in request has expired. Please return to the application and "
                "start again."
            ),
            title=_("The request has expired"),
        )
    try:
        checked = check(provider, pending.params)
    except InvalidAuthorizationRequest:
        provider.pending().drop(pending)
        return error_response(
            400,
            _("The application's sign-in request is no longer valid."),
            title=_("The request cannot be processed"),
        )
    return pending, checked


@bp.get("/account/act-for")
@login_required
def act_for() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    rid = request.args.get("rid", "")
    checked = None
    if rid:
        found = _request_for(rid)
        if isinstance(found, Response):
            return found
        _pending, checked = found
    authority = OrgAuthority.of()
    options = authority.options(
        user,
        checked.client if checked else None,
        checked.scopes if checked else (),
        checked.org_hint if checked else None,
    )
    if checked is not None:
        options = [option for option in options if option.permits]
        options.sort(key=lambda option: not option.hinted)
    principal = current_principal()
    acting = principal.acting_for if principal else None
    return make_response(
        render_template(
            "oauth/act_for.html",
            options=options,
            current=acting.authorisation if acting else None,
            client=checked.client if checked else None,
            rid=rid if checked else "",
            form=FlaskForm(),
        )
    )


@bp.post("/account/act-for")
@login_required
def choose() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    if not FlaskForm().validate_on_submit():
        abort(400)
    rid = request.form.get("rid", "")
    pending: Pending | None = None
    checked: Checked | None = None
    if rid:
        found = _request_for(rid)
        if isinstance(found, Response):
            return found
        pending, checked = found
    choice = request.form.get("authorisation", "")
    if choice == SELF:
        set_acting_for(None)
        if pending is None:
            flash(_("You now act for yourself."), "success")
            return redirect(url_for("act_for.act_for"))
        pending.org_declined = True
        pending.org_chosen = False
        return _resume(pending)
    authority = OrgAuthority.of()
    authorisation = authority.live_mine(user, choice)
    if authorisation is None or (
        checked is not None
        and not Scope.of(authorisation).permits(
            checked.client.client_id, checked_scopes(checked.scopes)
        )
    ):
        return _refused(user, choice)
    organisation = authority.organisation(authorisation)
    set_acting_for(ActingFor(organisation.public_id, authorisation.public_id))
    audit_log().record(
        "org.act_for",
        subject=organisation.subject,
        actor=user.subject,
        details={
            "authorisation": authorisation.public_id,
            "client_id": checked.client.client_id if checked else None,
        },
    )
    db().commit()
    if pending is None:
        flash(_("You now act for the organisation you chose."), "success")
        return redirect(url_for("act_for.act_for"))
    pending.org_chosen = True
    pending.org_declined = False
    return _resume(pending)


def _resume(pending: Pending) -> ResponseReturnValue:
    OAuthRuntime.of().pending().save(pending)
    return redirect(url_for("authorize.resume", rid=pending.rid))


def _refused(user: User, choice: str) -> ResponseReturnValue:
    """Not the user's, not live, or not for this service: refused, audited."""
    audit_log().record(
        "org.act_for",
        FAILURE,
        actor=user.subject,
        details={"authorisation": choice[:40], "reason": "not_live_or_not_permitted"},
    )
    db().commit()
    return error_response(
        400,
        _(
            "You cannot act for this organisation: the authorisation is not yours, has "
            "ended, or does not cover this service."
        ),
        title=_("Choose the organisation again"),
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
