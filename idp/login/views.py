"""Sign-in pages: ``/login`` (the password form, and links to the other first
factors registered), ``/login/otp`` (the code form of a pending second factor),
``/logout``, ``/account/reauth`` (the password again before a sensitive change) and the
pages of a held sign-in (``/login/deletion``: cancel a scheduled deletion;
``/login/new-password``: the new password a "This wasn't me" report asked for). They
hand the forms to the registered methods (``idp.core.signin``) and what those proved to
the flow (``idp.login.flow``)."""

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
from wtforms import Field

from accounts.container import Accounts
from accounts.credentials.errors import WeakPassword
from accounts.credentials.signin import PASSWORD
from accounts.people.models import User
from accounts.people.session import current_user
from accounts.web import error_message
from idp.core.navigation import safe_next
from idp.core.runtime import audit_log, db
from idp.core.sessions import confirm_recent_auth, sign_out
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
from idp.login.forms import (
    HeldDeletionForm,
    LoginForm,
    LogoutForm,
    NewPasswordForm,
    OtpForm,
    ReauthForm,
)

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


def _second_factor(user: User) -> FormSignInMethod | None:
    """The second factor a password sign-in of ``user`` would be asked for."""
    password = Proof(
        method=PASSWORD, uid=user.id, sub=user.public_id, subject=user.subject, amr=("pwd",)
    )
    method = SignInMethods.of().second_factor_for(password)
    return method if isinstance(method, FormSignInMethod) else None


@bp.route("/account/reauth", methods=["GET", "POST"])
def reauth() -> ResponseReturnValue:
    """The password again before a sensitive change (``recent_auth_required``), and the
    one-time code too when the account has a second factor (a stolen session and a
    guessed or phished password must not be enough to turn that factor off); an account
    without a password signs in again instead (any method)."""
    next_url = safe_next(request.values.get("next"))
    user = current_user()
    if user is None:
        return redirect(url_for("login.login", next=next_url))
    form = ReauthForm()
    second = _second_factor(user)
    context = {
        "form": form,
        "next_url": next_url,
        "has_password": user.password_hash is not None,
        "second_factor": second is not None,
        "sign_in_again": url_for("login.login", reauth="1", next=next_url),
    }
    valid = form.validate_on_submit()
    if valid and second is not None and not (form.otp.data or "").strip():
        form.otp.errors = [_("Enter the one-time code.")]
        valid = False
    if user.password_hash is None or not valid:
        status = 400 if form.errors else 200
        return make_response(render_template("login/reauth.html", **context), status)
    fields = {"username": user.username, "password": form.password.data or ""}
    failed: Field = form.password  # the field the failing step asked for
    try:
        proof = SignInMethods.of().form(PASSWORD).verify(fields, _sign_in_request())
        if proof.uid != user.id:  # a username changed meanwhile: never another account's
            sign_out()
            return redirect(url_for("login.login"))
        if second is not None:
            failed = form.otp
            second.verify({"otp": form.otp.data or ""}, _sign_in_request(first=proof))
    except Throttled as exc:
        return _throttled("login/reauth.html", exc, **context)
    except StoreUnavailable as exc:
        return _unavailable("login/reauth.html", exc, **context)
    except SignInFailed as exc:
        wrong = _("The password is incorrect.") if failed is form.password else _(exc.message)
        failed.errors = [wrong]
        return make_response(render_template("login/reauth.html", **context), 401)
    confirm_recent_auth()
    amr = ["pwd", *sorted(second.amr)] if second is not None else ["pwd"]
    audit_log().record("signin.reauth", subject=user.subject, details={"amr": amr})
    db().commit()
    return redirect(next_url)


def _held_user() -> tuple[tuple[list[Proof], str] | None, User | None]:
    held = _flow().held()
    if held is None:
        return None, None
    return held, Accounts.of().account_service().get(held[0][0].uid)


@bp.route("/login/deletion", methods=["GET", "POST"])
def held_deletion() -> ResponseReturnValue:
    """A sign-in to an account whose deletion is scheduled: cancel it, or leave."""
    held, user = _held_user()
    if held is None or user is None or user.deletion_due_at is None:
        _flow().drop_held()
        return redirect(url_for("login.login"))
    form = HeldDeletionForm()
    if not form.validate_on_submit():
        return make_response(
            render_template("login/held_deletion.html", form=form, due=user.deletion_due_at)
        )
    if request.form.get("decision") == "cancel":
        Accounts.of().account_service().cancel_deletion(user)
        flash(_("The deletion of your account has been cancelled."), "success")
        return _flow().release()
    _flow().drop_held()
    flash(
        _(
            "You have not been signed in. Your account will be deleted on %(date)s.",
            date=user.deletion_due_at.strftime("%Y-%m-%d"),
        ),
        "info",
    )
    return redirect(url_for("login.login"))


@bp.route("/login/new-password", methods=["GET", "POST"])
def held_password() -> ResponseReturnValue:
    """A sign-in after "This wasn't me": a new password before the session starts."""
    held, user = _held_user()
    if held is None or user is None or not user.password_reset_required:
        _flow().drop_held()
        return redirect(url_for("login.login"))
    form = NewPasswordForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("login/new_password.html", form=form), status)
    try:
        Accounts.of().account_service().reset_password(user, form.password.data or "")
    except WeakPassword as exc:
        form.password.errors = [error_message(exc)]
        return make_response(render_template("login/new_password.html", form=form), 400)
    flash(_("Your new password has been saved."), "success")
    return _flow().release()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
