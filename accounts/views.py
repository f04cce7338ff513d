"""Account pages: register, the account page, authenticator app, recovery codes, password."""

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

from accounts.deps import account_service, realname_service, totp_service
from accounts.errors import (
    AccountError,
    InvalidCredentials,
    InvalidOtp,
    InvalidPhone,
    InvalidUsername,
    NoPendingEnrollment,
    TotpAlreadyEnrolled,
    UsernameTaken,
    WeakPassword,
)
from accounts.forms import (
    ActionForm,
    PasswordChangeForm,
    PasswordConfirmForm,
    ProfileForm,
    RealNameForm,
    RegisterForm,
    TotpConfirmForm,
)
from accounts.identifiers import mask
from accounts.models import User, VerificationMethod
from accounts.realname import InvalidDocument, InvalidName, RegistryDown
from idp.core.navigation import safe_next
from idp.core.runtime import runtime
from idp.login.auth import complete_sign_in, current_user, end_other_sessions, login_required
from idp.login.throttle import RateLimit, Throttled

bp = Blueprint("accounts", __name__, template_folder="templates")


def _message(error: AccountError) -> str:
    return str(_(error.message, **error.params))


def _me() -> User:
    user = current_user()
    assert user is not None  # login_required ran first
    return user


@bp.route("/register", methods=["GET", "POST"])
def register() -> ResponseReturnValue:
    settings = runtime().settings
    if not settings.registration_enabled:
        abort(404)
    form = RegisterForm()
    next_url = safe_next(request.values.get("next"))
    context = {"form": form, "next_url": next_url}
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/register.html", **context), status)
    rt = runtime()
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
        user = account_service().register(
            form.username.data or "", form.password.data or "", phone=form.phone.data or None
        )
    except UsernameTaken as exc:
        form.username.errors = [_message(exc)]
        status = 409
    except InvalidUsername as exc:
        form.username.errors = [_message(exc)]
    except WeakPassword as exc:
        form.password.errors = [_message(exc)]
    except InvalidPhone as exc:
        form.phone.errors = [_message(exc)]
    else:
        complete_sign_in(user, ["pwd"])
        flash(_("Your account has been created."), "success")
        return redirect(next_url)
    return make_response(render_template("accounts/register.html", **context), status)


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    user = _me()
    phone = account_service().phone_of(user)
    totp = totp_service()
    return make_response(
        render_template(
            "accounts/account.html",
            user=user,
            phone=mask(phone) if phone else None,
            recovery_left=totp.remaining_recovery_codes(user) if user.has_totp else 0,
            level=realname_service().level(user),
            form=ActionForm(),
        )
    )


@bp.route("/account/totp", methods=["GET", "POST"])
@login_required
def totp_setup() -> ResponseReturnValue:
    user = _me()
    service = totp_service()
    if user.has_totp:
        flash(_("An authenticator app is already set up."), "info")
        return redirect(url_for("accounts.account"))
    form = TotpConfirmForm()
    if request.method == "GET" or user.totp is None:
        enrollment = service.begin_enrollment(user)
        return make_response(
            render_template("accounts/totp_setup.html", form=form, enrollment=enrollment)
        )
    try:
        enrollment = service.pending_enrollment(user)
    except NoPendingEnrollment:
        return redirect(url_for("accounts.totp_setup"))
    if not form.validate_on_submit():
        return make_response(
            render_template("accounts/totp_setup.html", form=form, enrollment=enrollment), 400
        )
    try:
        codes = service.confirm_enrollment(user, form.otp.data or "")
    except (InvalidOtp, TotpAlreadyEnrolled, NoPendingEnrollment) as exc:
        form.otp.errors = [_message(exc)]
        return make_response(
            render_template("accounts/totp_setup.html", form=form, enrollment=enrollment), 400
        )
    return make_response(
        render_template("accounts/recovery_codes.html", codes=codes, first_time=True)
    )


@bp.route("/account/totp/disable", methods=["GET", "POST"])
@login_required
def totp_disable() -> ResponseReturnValue:
    user = _me()
    form = PasswordConfirmForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/totp_disable.html", form=form), status)
    if not account_service().confirm_password(user, form.password.data or ""):
        form.password.errors = [_("Your current password is incorrect.")]
        return make_response(render_template("accounts/totp_disable.html", form=form), 401)
    totp_service().disable(user)
    flash(_("The authenticator app has been removed from your account."), "success")
    return redirect(url_for("accounts.account"))


@bp.post("/account/recovery-codes")
@login_required
def recovery_codes() -> ResponseReturnValue:
    user = _me()
    form = ActionForm()
    if not form.validate_on_submit() or not user.has_totp:
        return redirect(url_for("accounts.account"))
    codes = totp_service().regenerate_recovery_codes(user)
    return make_response(
        render_template("accounts/recovery_codes.html", codes=codes, first_time=False)
    )


@bp.route("/account/profile", methods=["GET", "POST"])
@login_required
def profile() -> ResponseReturnValue:
    user = _me()
    form = ProfileForm(obj=user)
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/profile.html", form=form), status)
    account_service().update_profile(
        user, display_name=form.display_name.data, email=form.email.data
    )
    flash(_("Your profile has been saved."), "success")
    return redirect(url_for("accounts.account"))


@bp.route("/account/realname", methods=["GET", "POST"])
@login_required
def realname() -> ResponseReturnValue:
    """The account's real-name level, its history, the ways to raise it, and level 3
    through the registry. ``next`` (a local path) is where to go after a verification;
    ``level`` is the level a service asked for (shown)."""
    user = _me()
    service = realname_service()
    form = RealNameForm()
    next_url = safe_next(request.values.get("next"), default="")
    status = 200
    if form.validate_on_submit():
        rt = runtime()
        try:
            RateLimit(
                rt.store,
                "registry-check",
                limit=rt.settings.registry_checks_per_account_per_day,
                window_seconds=24 * 3600,
            ).hit(user.public_id)
            service.verify_with_registry(user, form.name.data or "", form.id_number.data or "")
        except Throttled:
            flash(_("Too many verification attempts. Try again tomorrow."), "error")
            status = 429
        except InvalidDocument as exc:
            form.id_number.errors = [_message(exc)]
        except InvalidName as exc:
            form.name.errors = [_message(exc)]
        except RegistryDown as exc:
            flash(_message(exc), "error")
            status = 503
        except AccountError as exc:  # mismatch, number taken, already verified
            flash(_message(exc), "error")
        else:
            flash(_("Your identity has been verified: real-name level 3."), "success")
            return redirect(next_url or url_for("accounts.realname"))
        status = max(status, 400)
    elif form.errors:
        status = 400
    return make_response(
        render_template(
            "accounts/realname.html",
            form=form,
            status=service.status(user),
            now=runtime().clock.now(),
            level_name=level_name,
            method_name=method_name,
            next_url=next_url,
            wanted_level=wanted_level(request.values.get("level")),
        ),
        status,
    )


def wanted_level(raw: str | None) -> int | None:
    """The level a service asked for (``?level=``), when it is one of 2-5."""
    return int(raw) if raw in {"2", "3", "4", "5"} else None


def level_name(level: int) -> str:
    names = {
        1: _("Level 1: not verified"),
        2: _("Level 2: phone checked"),
        3: _("Level 3: matched with the population registry"),
        4: _("Level 4: face verified"),
        5: _("Level 5: verified in person or by certificate"),
    }
    return str(names.get(level, level))


def method_name(method: VerificationMethod) -> str:
    names = {
        VerificationMethod.SMS: _("Mobile phone"),
        VerificationMethod.REGISTRY: _("Population registry"),
        VerificationMethod.FACE: _("Face check"),
        VerificationMethod.COUNTER: _("Service counter"),
        VerificationMethod.CERTIFICATE: _("Digital certificate"),
    }
    return str(names[method])


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password_change() -> ResponseReturnValue:
    user = _me()
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("accounts/password.html", form=form), status)
    try:
        account_service().change_password(
            user, form.current_password.data or "", form.password.data or ""
        )
    except InvalidCredentials as exc:
        form.current_password.errors = [_message(exc)]
    except WeakPassword as exc:
        form.password.errors = [_message(exc)]
    else:
        # other browsers are signed out (and their services told); this one continues
        # under a fresh session
        end_other_sessions(user)
        complete_sign_in(user, list(session.get("amr", ["pwd"])))
        flash(_("Your password has been changed. Other devices have been signed out."), "success")
        return redirect(url_for("accounts.account"))
    return make_response(render_template("accounts/password.html", form=form), 400)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
