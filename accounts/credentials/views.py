"""Credential pages: authenticator app (TOTP) and recovery codes."""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
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
from accounts.credentials.errors import (
    InvalidOtp,
    NoPendingEnrollment,
    TotpAlreadyEnrolled,
)
from accounts.credentials.forms import PasswordConfirmForm, TotpConfirmForm
from accounts.people.session import recent_auth_required
from accounts.web import ActionForm, error_message, signed_in_user

bp = Blueprint("credentials", __name__, template_folder="../templates")


@bp.route("/account/totp", methods=["GET", "POST"])
@recent_auth_required()
def totp_setup() -> ResponseReturnValue:
    user = signed_in_user()
    service = Accounts.of().totp_service()
    if user.has_totp:
        flash(_("An authenticator app is already set up."), "info")
        return redirect(url_for("people.account"))
    form = TotpConfirmForm()
    if request.method == "GET" or not service.has_pending_enrollment(user):
        enrollment = service.begin_enrollment(user)
        return make_response(
            render_template("accounts/totp_setup.html", form=form, enrollment=enrollment)
        )
    try:
        enrollment = service.pending_enrollment(user)
    except NoPendingEnrollment:
        return redirect(url_for("credentials.totp_setup"))
    if not form.validate_on_submit():
        return make_response(
            render_template("accounts/totp_setup.html", form=form, enrollment=enrollment), 400
        )
    try:
        codes = service.confirm_enrollment(user, form.otp.data or "")
    except (InvalidOtp, TotpAlreadyEnrolled, NoPendingEnrollment) as exc:
        form.otp.errors = [error_message(exc)]
        return make_response(
            render_template("accounts/totp_setup.html", form=form, enrollment=enrollment), 400
        )
    return make_response(
        render_template("accounts/recovery_codes.html", codes=codes, first_time=True)
    )


@bp.route("/account/totp/disable", methods=["GET", "POST"])
@recent_auth_required()
def totp_disable() -> ResponseReturnValue:
    user = signed_in_user()
    form = PasswordConfirmForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/totp_disable.html", form=form), status)
    if not Accounts.of().account_service().confirm_password(user, form.password.data or ""):
        form.password.errors = [_("Your current password is incorrect.")]
        return make_response(render_template("accounts/totp_disable.html", form=form), 401)
    Accounts.of().totp_service().disable(user)
    flash(_("The authenticator app has been removed from your account."), "success")
    return redirect(url_for("people.account"))


@bp.post("/account/recovery-codes")
@recent_auth_required(back="people.account")
def recovery_codes() -> ResponseReturnValue:
    user = signed_in_user()
    form = ActionForm()
    if not form.validate_on_submit() or not user.has_totp:
        return redirect(url_for("people.account"))
    codes = Accounts.of().totp_service().regenerate_recovery_codes(user)
    return make_response(
        render_template("accounts/recovery_codes.html", codes=codes, first_time=False)
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
