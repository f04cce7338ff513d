"""Sign-in pages: ``/login`` (the password form, and links to the other first
factors registered), ``/login/otp`` (the code form of a pending second factor),
``/logout``. They hand the forms to the registered methods (``idp.core.signin``) and
what those proved to the flow (``idp.login.flow``)."""

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

from accounts.container import Accounts
from accounts.credentials.signin import PASSWORD
from accounts.people.session import current_user
from idp.core.navigation import safe_next
from idp.core.runtime import audit_log, db
from idp.core.sessions import sign_out
from idp.core.signin import (
    FormSignInMethod,
    Proof,
    SignInFailed,
    SignInMethods,
    SignInRequest,
)
from idp.core.store import StoreUnavailable
from idp.core.throttle import Throttled
from idp.core.web import RETRY_AFTER_SECONDS
from idp.login.flow import LoginFlow
from idp.login.forms import LoginForm, LogoutForm, OtpForm

bp = Blueprint("login", __name__, template_folder="templates")
log = logging.getLogger(__name__)


def _flow() -> LoginFlow:
    flow = SignInMethods.of().flow
    assert isinstance(flow, LoginFlow)
    return flow


def _sign_in_request(first: Proof | None = None) -> SignInRequest:
    return SignInRequest(request.remote_addr or "unknown", request.cookies, first)


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
    return SignInMethods.of().service_name(client_id)


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
        "other_methods": SignInMethods.of().links(next_url),
    }
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("login/login.html", **context), status)
    fields = {"username": form.username.data or "", "password": form.password.data or ""}
    try:
        proof = SignInMethods.of().form(PASSWORD).verify(fields, _sign_in_request())
    except Throttled as exc:
        return _throttled("login/login.html", exc, **context)
    except StoreUnavailable as exc:
        return _unavailable("login/login.html", exc, **context)
    except SignInFailed as exc:
        return make_response(
            render_template("login/login.html", error=_(exc.message), **context), 401
        )
    return _flow().proved(proof, next_url)


@bp.route("/login/otp", methods=["GET", "POST"])
def otp() -> ResponseReturnValue:
    """The code form of a pending second factor (field ``otp``)."""
    flow = _flow()
    pending = flow.pending()
    method = None if pending is None else SignInMethods.of().get(pending.second)
    if pending is None or not isinstance(method, FormSignInMethod):
        flash(_("Please sign in again."), "info")
        return redirect(url_for("login.login"))
    if Accounts.of().account_service().get(pending.first.uid) is None:
        sign_out()
        return redirect(url_for("login.login"))
    form = OtpForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("login/otp.html", form=form), status)
    try:
        proof = method.verify({"otp": form.otp.data or ""}, _sign_in_request(first=pending.first))
    except Throttled as exc:
        return _throttled("login/otp.html", exc, form=form)
    except StoreUnavailable as exc:
        return _unavailable("login/otp.html", exc, form=form)
    except SignInFailed as exc:
        return make_response(
            render_template("login/otp.html", form=form, error=_(exc.message)), 401
        )
    return flow.second_factor_proved(pending, proof)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> ResponseReturnValue:
    form = LogoutForm()
    if request.method == "POST" and form.validate_on_submit():
        user = current_user()
        if user is not None:
            audit_log().record("signout", subject=user.subject)
            db().commit()
        # signed in through an upstream: on to its sign-out next (single logout)
        upstream = SignInMethods.of().sign_out_redirect(url_for("login.login"))
        sign_out()
        flash(_("You have signed out."), "info")
        return redirect(upstream or url_for("login.login"))
    if current_user() is None:
        return redirect(url_for("login.login"))
    return make_response(render_template("login/logout.html", form=form))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
