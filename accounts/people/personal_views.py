"""The personal page's security sections: the account's sessions (sign one out, or
every other, or all), its activity history with "This wasn't me", and deletion with a
grace period. Every action is a POST with the CSRF token; nothing needs JavaScript.

Ending sessions goes through ``idp.core.sessions`` (``end_session``,
``end_other_sessions``, ``sign_out``), which sends ``session_ended`` so the services
of each ended session get their back-channel logout.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import (
    Blueprint,
    Flask,
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

from accounts.container import Accounts
from accounts.people.activity import ActivityService, reportable
from accounts.people.forms import DeleteAccountForm
from accounts.people.session import current_user, login_required, recent_auth_required
from accounts.web import ActionForm, signed_in_user
from idp.core.runtime import Runtime, audit_log, db
from idp.core.sessions import (
    end_other_sessions,
    end_session,
    sign_out,
    user_sessions,
)

bp = Blueprint("personal", __name__, template_folder="../templates")
MAX_HANDLE = 64
MAX_SEQ = 2**62


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _sessions_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    user = signed_in_user()
    return make_response(
        render_template(
            "accounts/sessions.html",
            sessions=user_sessions(user.id),
            when=_when,
            form=ActionForm(),
            error=error,
        ),
        status,
    )


@bp.get("/account/sessions")
@login_required
def sessions() -> ResponseReturnValue:
    return _sessions_page()


@bp.post("/account/sessions/end")
@login_required
def end_one() -> ResponseReturnValue:
    user = signed_in_user()
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect(url_for("personal.sessions"))
    handle = request.form.get("session", "")[:MAX_HANDLE]
    if not handle or not end_session(user.id, handle):
        # another user's session, one already ended, or garbage: the same answer
        return _sessions_page(_("That session has already ended or is not yours."), 404)
    audit_log().record("session.end", subject=user.subject)
    db().commit()
    if current_user() is None:  # it was this session
        flash(_("You have signed out."), "info")
        return redirect(url_for("login.login"))
    flash(_("The session has been signed out. Its services have been told."), "success")
    return redirect(url_for("personal.sessions"))


@bp.post("/account/sessions/end-others")
@login_required
def end_others() -> ResponseReturnValue:
    user = signed_in_user()
    if not ActionForm().validate_on_submit():
        return redirect(url_for("personal.sessions"))
    ended = end_other_sessions(user.id)
    audit_log().record("session.end_others", subject=user.subject, details={"ended": ended})
    db().commit()
    flash(_("You have been signed out everywhere else."), "success")
    return redirect(url_for("personal.sessions"))


@bp.post("/account/sessions/end-all")
@login_required
def end_all() -> ResponseReturnValue:
    user = signed_in_user()
    if not ActionForm().validate_on_submit():
        return redirect(url_for("personal.sessions"))
    ended = end_other_sessions(user.id)
    audit_log().record("session.end_all", subject=user.subject, details={"ended": ended + 1})
    db().commit()
    sign_out()
    flash(_("You have been signed out everywhere, including here."), "info")
    return redirect(url_for("login.login"))


def _activity() -> ActivityService:
    return Accounts.of().activity_service()


def _sequence(raw: str | None) -> int | None:
    """A sequence number from the query or form (None when absent); garbage is a 400."""
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_SEQ:
        abort(400)
    return int(raw)


@bp.get("/account/activity")
@login_required
def activity() -> ResponseReturnValue:
    user = signed_in_user()
    page = _activity().page(user, before=_sequence(request.args.get("before")))
    return make_response(
        render_template(
            "accounts/activity.html",
            page=page,
            form=ActionForm(),
            first=request.args.get("before") is None,
        )
    )


@bp.post("/account/activity/not-me")
@login_required
def not_me() -> ResponseReturnValue:
    """ "This wasn't me": every session ends (this one too), the grants are withdrawn
    and the next sign-in chooses a new password."""
    user = signed_in_user()
    if not ActionForm().validate_on_submit():
        return redirect(url_for("personal.activity"))
    seq = _sequence(request.form.get("event"))
    event = None if seq is None else _activity().event(user, seq)
    if event is None or not reportable(event, user):
        abort(404)
    new_password = Accounts.of().account_service().report_not_me(user, event=event.seq)
    ended = end_other_sessions(user.id)
    sign_out()
    return make_response(
        render_template("accounts/not_me_done.html", ended=ended + 1, new_password=new_password)
    )


@bp.route("/account/delete", methods=["GET", "POST"])
@recent_auth_required()
def delete() -> ResponseReturnValue:
    user = signed_in_user()
    grace = Runtime.of().settings.account_deletion_grace_days
    form = DeleteAccountForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(
            render_template("accounts/delete.html", form=form, grace_days=grace), status
        )
    Accounts.of().account_service().schedule_deletion(user, grace_days=grace)
    due = user.deletion_due_at
    end_other_sessions(user.id)
    sign_out()
    return make_response(render_template("accounts/delete_scheduled.html", due=due))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
