"""Account pages: register, the account page, profile, password."""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from accounts.container import Accounts
from accounts.credentials.errors import (
    InvalidCredentials,
    WeakPassword,
)
from accounts.identifiers import mask
from accounts.people.errors import InvalidPhone, InvalidUsername, UsernameTaken
from accounts.people.forms import PasswordChangeForm, ProfileForm, RegisterForm
from accounts.people.session import login_required, recent_auth_required
from accounts.realname.views import level_name
from accounts.web import ActionForm, error_message, signed_in_user
from idp.core.navigation import safe_next
from idp.core.runtime import Runtime
from idp.core.sessions import complete_sign_in, end_other_sessions, user_sessions
from idp.core.throttle import RateLimit, Throttled

bp = Blueprint("people", __name__, template_folder="../templates")


@bp.route("/register", methods=["GET", "POST"])
def register() -> ResponseReturnValue:
    settings = Runtime.of().settings
    if not settings.registration_enabled:
        abort(404)
    form = RegisterForm()
    next_url = safe_next(request.values.get("next"))
    context = {"form": form, "next_url": next_url}
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/register.html", **context), status)
    rt = Runtime.of()
    try:
        RateLimit(
            rt.store, "register", limit=settings.registrations_per_ip_per_hour, window_seconds=3600
        ).hit(request.remote_addr or "unknown")
    except Throttled:
        return make_response(
            render_template(
                "accounts/register.html",
                error=_("Too many registrations from your network. Try again later."),
                **context,
            ),
            429,
        )
    status = 400
    try:
        user = (
            Accounts.of()
            .account_service()
            .register(
                form.username.data or "", form.password.data or "", phone=form.phone.data or None
            )
        )
    except UsernameTaken as exc:
        form.username.errors = [error_message(exc)]
        status = 409
    except InvalidUsername as exc:
        form.username.errors = [error_message(exc)]
    except WeakPassword as exc:
        form.password.errors = [error_message(exc)]
    except InvalidPhone as exc:
        form.phone.errors = [error_message(exc)]
    else:
        complete_sign_in(user.id, user.public_id, ["pwd"])
        flash(_("Your account has been created."), "success")
        return redirect(next_url)
    return make_response(render_template("accounts/register.html", **context), status)


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    user = signed_in_user()
    phone = Accounts.of().account_service().phone_of(user)
    totp = Accounts.of().totp_service()
    level = Accounts.of().realname_service().level(user)
    return make_response(
        render_template(
            "accounts/account.html",
            user=user,
            phone=mask(phone) if phone else None,
            recovery_left=totp.remaining_recovery_codes(user) if user.has_totp else 0,
            level=level,
            level_label=level_name(level),
            session_count=len(user_sessions(user.id)),
            form=ActionForm(),
        )
    )


@bp.route("/account/profile", methods=["GET", "POST"])
@login_required
def profile() -> ResponseReturnValue:
    user = signed_in_user()
    form = ProfileForm(obj=user)
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/profile.html", form=form), status)
    Accounts.of().account_service().update_profile(
        user, display_name=form.display_name.data, email=form.email.data
    )
    flash(_("Your profile has been saved."), "success")
    return redirect(url_for("people.account"))


@bp.route("/account/password", methods=["GET", "POST"])
@recent_auth_required()
def password_change() -> ResponseReturnValue:
    user = signed_in_user()
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/password.html", form=form), status)
    try:
        Accounts.of().account_service().change_password(
            user, form.current_password.data or "", form.password.data or ""
        )
    except InvalidCredentials as exc:
        form.current_password.errors = [error_message(exc)]
    except WeakPassword as exc:
        form.password.errors = [error_message(exc)]
    else:
        # other browsers are signed out (and their services told); this one continues
        # under a fresh session
        end_other_sessions(user.id)
        complete_sign_in(user.id, user.public_id, list(session.get("amr", ["pwd"])))
        flash(_("Your password has been changed. Other devices have been signed out."), "success")
        return redirect(url_for("people.account"))
    return make_response(render_template("accounts/password.html", form=form), 400)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
