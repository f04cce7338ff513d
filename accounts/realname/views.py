"""Pages that raise the real-name level: ``/account/realname`` (the level, its
history, the ways to raise it, and level 3 through the registry), level 2 (a
self-declared identity and a code sent to the phone) and level 4 (a face check against
the registry photo)."""

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

from accounts.adapters.face import MAX_IMAGE_BYTES
from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.people.errors import InvalidPhone
from accounts.people.session import login_required, recent_auth_required
from accounts.realname.errors import (
    InvalidDocument,
    InvalidName,
    RegistryDown,
    VerificationConflict,
)
from accounts.realname.face import (
    FaceDown,
    FaceMismatch,
    InvalidImage,
    NeedsConfirmedIdentity,
    TooManyFaceChecks,
)
from accounts.realname.forms import FacePhotoForm, PhoneCheckForm, PhoneCodeForm, RealNameForm
from accounts.realname.models import VerificationMethod
from accounts.realname.phone import (
    DEFAULT_MESSAGE,
    CodeExpired,
    SmsDown,
    TooManyCodes,
    TooManyWrongCodes,
    WrongCode,
)
from accounts.web import error_message, signed_in_user
from idp.core.navigation import safe_next
from idp.core.runtime import Runtime
from idp.core.throttle import RateLimit, Throttled
from idp.core.web import allow_large_body

bp = Blueprint("realname", __name__, template_folder="../templates")


@bp.route("/account/realname", methods=["GET", "POST"])
@login_required
def realname() -> ResponseReturnValue:
    """The account's real-name level, its history, the ways to raise it, and level 3
    through the registry. ``next`` (a local path) is where to go after a verification;
    ``level`` is the level a service asked for (shown)."""
    user = signed_in_user()
    service = Accounts.of().realname_service()
    form = RealNameForm()
    next_url = safe_next(request.values.get("next"), default="")
    status = 200
    if form.validate_on_submit():
        rt = Runtime.of()
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
            form.id_number.errors = [error_message(exc)]
        except InvalidName as exc:
            form.name.errors = [error_message(exc)]
        except RegistryDown as exc:
            flash(error_message(exc), "error")
            status = 503
        except AccountError as exc:  # mismatch, number taken, already verified
            flash(error_message(exc), "error")
        else:
            flash(_("Your identity has been verified: real-name level 3."), "success")
            return redirect(next_url or url_for("realname.realname"))
        status = max(status, 400)
    elif form.errors:
        status = 400
    return make_response(
        render_template(
            "accounts/realname.html",
            form=form,
            status=service.status(user),
            now=Runtime.of().clock.now(),
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
        VerificationMethod.FEDERATION: _("Another identity platform"),
    }
    return str(names[method])


# the photo, the CSRF token, `next` and the multipart framing
FACE_BODY_LIMIT = MAX_IMAGE_BYTES + 64 * 1024


def next_param() -> str:
    """The ``next`` the request carries, if it is a local path; else ""."""
    return safe_next(request.values.get("next"), default="")


def done(next_url: str) -> ResponseReturnValue:
    return redirect(next_url or url_for("realname.realname"))


@bp.route("/account/realname/phone", methods=["GET", "POST"])
@recent_auth_required()  # it sets the account's phone number: a sensitive change
def realname_phone() -> ResponseReturnValue:
    """Declare name, document number and mobile number; a code is texted to the phone."""
    user = signed_in_user()
    form = PhoneCheckForm()
    next_url = next_param()
    status = 200
    if form.validate_on_submit():
        try:
            pending = (
                Accounts.of()
                .phone_check_service()
                .send_code(
                    user,
                    form.name.data or "",
                    form.id_number.data or "",
                    form.phone.data or "",
                    message=_(DEFAULT_MESSAGE),
                )
            )
        except InvalidDocument as exc:
            form.id_number.errors = [error_message(exc)]
            status = 400
        except InvalidName as exc:
            form.name.errors = [error_message(exc)]
            status = 400
        except InvalidPhone:
            form.phone.errors = [_("Enter an 11-digit mainland mobile number.")]
            status = 400
        except TooManyCodes as exc:
            flash(error_message(exc), "error")
            status = 429
        except SmsDown as exc:
            flash(error_message(exc), "error")
            status = 503
        except AccountError as exc:  # a confirmed identity cannot be replaced
            flash(error_message(exc), "error")
            status = 400
        else:
            flash(_("A code has been sent to %(phone)s.", phone=pending.masked_phone), "success")
            return redirect(url_for("realname.realname_phone_code", next=next_url or None))
    elif form.errors:
        status = 400
    return make_response(
        render_template("accounts/realname_phone.html", form=form, next_url=next_url), status
    )


@bp.route("/account/realname/phone/code", methods=["GET", "POST"])
@login_required
def realname_phone_code() -> ResponseReturnValue:
    """Enter the code (field ``otp``): level 2 once it matches."""
    user = signed_in_user()
    service = Accounts.of().phone_check_service()
    form = PhoneCodeForm()
    next_url = next_param()
    status = 200
    if form.validate_on_submit():
        try:
            service.confirm(user, form.otp.data or "")
        except WrongCode as exc:
            form.otp.errors = [error_message(exc)]
            status = 400
        except (CodeExpired, TooManyWrongCodes) as exc:
            flash(error_message(exc), "error")
            status = 400
        except VerificationConflict as exc:
            flash(error_message(exc), "error")
            status = 409
        except AccountError as exc:  # number verified for another account, ...
            flash(error_message(exc), "error")
            status = 400
        else:
            if Accounts.of().realname_service().level(user) > 2:
                flash(_("Your mobile number has been confirmed."), "success")
            else:
                flash(_("Your mobile number has been confirmed: real-name level 2."), "success")
            return done(next_url)
    elif form.errors:
        status = 400
    pending = service.pending(user)
    if pending is None and status == 200:
        flash(_("Ask for a code first."), "info")
        return redirect(url_for("realname.realname_phone", next=next_url or None))
    return make_response(
        render_template(
            "accounts/realname_phone_code.html", form=form, pending=pending, next_url=next_url
        ),
        status,
    )


@bp.route("/account/realname/face", methods=["GET", "POST"])
@login_required
def realname_face() -> ResponseReturnValue:
    """Upload a photo (field ``photo``) to compare with the registry photo."""
    user = signed_in_user()
    service = Accounts.of().face_check_service()
    form = FacePhotoForm()
    next_url = next_param()
    context = {
        "form": form,
        "next_url": next_url,
        "max_megabytes": MAX_IMAGE_BYTES // (1024 * 1024),
    }
    if not service.eligible(user):
        status = 403 if request.method == "POST" else 200
        return make_response(
            render_template("accounts/realname_face.html", eligible=False, **context), status
        )
    status = 200
    if form.validate_on_submit():
        # one byte more than allowed is enough to know it is too large
        image = form.photo.data.read(MAX_IMAGE_BYTES + 1)
        try:
            service.verify(user, image)
        except InvalidImage as exc:
            form.photo.errors = [error_message(exc)]
            status = 400
        except TooManyFaceChecks as exc:
            flash(error_message(exc), "error")
            status = 429
        except FaceDown as exc:
            flash(error_message(exc), "error")
            status = 503
        except (FaceMismatch, NeedsConfirmedIdentity) as exc:
            flash(error_message(exc), "error")
            status = 400
        else:
            flash(_("Your face has been checked: real-name level 4."), "success")
            return done(next_url)
    elif form.errors:
        status = 400
    return make_response(
        render_template("accounts/realname_face.html", eligible=True, **context), status
    )


def init_app(app: Flask) -> None:
    """The photo upload may be larger than ``max_request_bytes``; no other page may."""
    app.register_blueprint(bp)
    allow_large_body(app, "realname.realname_face", FACE_BODY_LIMIT)
