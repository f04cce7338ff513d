"""Sign-in pages: ``/login`` (password), ``/login/otp`` (second factor), ``/logout``."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    Flask,
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response as BaseResponse

from accounts.container import Accounts
from accounts.credentials.errors import InvalidCredentials, InvalidOtp
from idp.core.navigation import safe_next
from idp.core.runtime import Runtime, audit_log, db
from idp.core.store import StoreUnavailable
from idp.core.throttle import Throttle, Throttled
from idp.core.web import RETRY_AFTER_SECONDS
from idp.login.auth import (
    begin_second_factor,
    complete_sign_in,
    current_user,
    pending_second_factor,
    sign_out,
)
from idp.login.forms import LoginForm, LogoutForm, OtpForm
from idp.login.services import SignInService

bp = Blueprint("login", __name__, template_folder="templates")
log = logging.getLogger(__name__)

DEVICE_COOKIE = "idp_device"
DEVICE_COOKIE_DAYS = 180


def sign_in_service() -> SignInService:
    rt = Runtime.of()
    return SignInService(
        db(),
        Accounts.of().account_service(),
        Accounts.of().hasher,
        Accounts.of().totp_service(),
        Throttle(rt.store, rt.clock, rt.settings, rt.keys.secrets, scope="pwd"),
        Throttle(rt.store, rt.clock, rt.settings, rt.keys.secrets, scope="otp"),
        audit_log(),
    )


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _wait_message(exc: Throttled) -> str:
    minutes = (exc.retry_after + 59) // 60
    if exc.retry_after < 60:
        return str(
            ngettext(
                "Too many attempts. Try again in %(num)d second.",
                "Too many attempts. Try again in %(num)d seconds.",
                exc.retry_after,
            )
        )
    return str(
        ngettext(
            "Too many attempts. Try again in %(num)d minute.",
            "Too many attempts. Try again in %(num)d minutes.",
            minutes,
        )
    )


def _throttled(template: str, exc: Throttled, **context: object) -> Response:
    response = make_response(render_template(template, error=_wait_message(exc), **context), 429)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _unavailable(template: str, exc: StoreUnavailable, **context: object) -> Response:
    """The sign-in fails closed: without the store the attempt cannot be throttled (nor
    counted), so it is refused, whatever the password."""
    log.error("sign-in refused, the throttle cannot be checked: %s", exc)
    message = _(
        "Signing in is not possible at the moment because sign-in attempts cannot be "
        "checked. Please try again in a few minutes."
    )
    response = make_response(render_template(template, error=message, **context), 503)
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("people.account"))


def _service_name() -> str | None:
    """The service the user is signing in to, when an authorization request sent them."""
    client_id = request.values.get("client_id")
    if not client_id:
        return None
    from idp.oauth.authorize import client_display_name

    return client_display_name(client_id)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    next_url = safe_next(request.values.get("next"))
    reauth = request.values.get("reauth") == "1"
    if request.method == "GET" and current_user() is not None and not reauth:
        return redirect(next_url)
    form = LoginForm()
    if request.method == "GET" and request.args.get("login_hint"):
        form.username.data = request.args["login_hint"][:64]
    context = {
        "form": form,
        "next_url": next_url,
        "reauth": reauth,
        "client_id": request.values.get("client_id", ""),
        "service_name": _service_name(),
    }
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("login/login.html", **context), status)
    service = sign_in_service()
    try:
        result = service.check_password(
            form.username.data or "",
            form.password.data or "",
            client_ip=_client_ip(),
            device_cookie=request.cookies.get(DEVICE_COOKIE),
        )
    except Throttled as exc:
        return _throttled("login/login.html", exc, **context)
    except StoreUnavailable as exc:
        return _unavailable("login/login.html", exc, **context)
    except InvalidCredentials as exc:
        return make_response(
            render_template("login/login.html", error=_(exc.message), **context), 401
        )
    if result.needs_otp:
        begin_second_factor(
            result.user,
            account_key=result.account_key,
            device_id=result.device_id,
            next_url=next_url,
        )
        return redirect(url_for("login.otp"))
    complete_sign_in(result.user, ["pwd"])
    service.record_success(result.user, ["pwd"])
    response = redirect(next_url)
    _remember_device(response, result.account_key, result.device_id)
    return response


@bp.route("/login/otp", methods=["GET", "POST"])
def otp() -> ResponseReturnValue:
    pending = pending_second_factor()
    if pending is None:
        flash(_("Please sign in again."), "info")
        return redirect(url_for("login.login"))
    user = Accounts.of().account_service().get(int(pending["uid"]))
    if user is None:
        sign_out()
        return redirect(url_for("login.login"))
    form = OtpForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("login/otp.html", form=form), status)
    service = sign_in_service()
    try:
        service.check_otp(
            user, form.otp.data or "", client_ip=_client_ip(), device_id=pending.get("dev")
        )
    except Throttled as exc:
        return _throttled("login/otp.html", exc, form=form)
    except StoreUnavailable as exc:
        return _unavailable("login/otp.html", exc, form=form)
    except InvalidOtp as exc:
        return make_response(
            render_template("login/otp.html", form=form, error=_(exc.message)), 401
        )
    amr = ["pwd", "otp", "mfa"]
    complete_sign_in(user, amr)
    service.record_success(user, amr)
    response = redirect(safe_next(pending.get("next")))
    _remember_device(response, str(pending.get("key")), pending.get("dev"))
    return response


def _remember_device(response: BaseResponse, account_key: str, device_id: str | None) -> None:
    """Give this browser a device cookie (OWASP): it is exempt from the account's back-off."""
    if device_id is not None:
        return
    rt = Runtime.of()
    cookie = Throttle(rt.store, rt.clock, rt.settings, rt.keys.secrets).issue_device_cookie(
        account_key
    )
    response.set_cookie(
        DEVICE_COOKIE,
        cookie,
        max_age=DEVICE_COOKIE_DAYS * 24 * 3600,
        httponly=True,
        secure=rt.settings.is_https,
        samesite="Lax",
        path="/login",
    )


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> ResponseReturnValue:
    form = LogoutForm()
    if request.method == "POST" and form.validate_on_submit():
        user = current_user()
        if user is not None:
            audit_log().record("signout", subject=user.subject)
            db().commit()
        sign_out()
        flash(_("You have signed out."), "info")
        return redirect(url_for("login.login"))
    if current_user() is None:
        return redirect(url_for("login.login"))
    return make_response(render_template("login/logout.html", form=form))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
