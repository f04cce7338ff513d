"""Pages that raise the real-name level: level 2 (self-declared identity and a code sent
to the phone) and level 4 (a face check against the registry photo). Level 3 is the
form on ``/account/realname`` (views.py).

Every page takes a ``next`` parameter (a local path, ``safe_next``) through its forms
and goes there after a successful verification: that is how a service's step-up
returns to the authorization request.
"""

from __future__ import annotations

from flask import Flask, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from accounts import deps
from accounts.errors import AccountError, InvalidPhone
from accounts.face import MAX_IMAGE_BYTES
from accounts.face_check import (
    FaceCheckService,
    FaceDown,
    FaceMismatch,
    InvalidImage,
    NeedsConfirmedIdentity,
    TooManyFaceChecks,
)
from accounts.forms import FacePhotoForm, PhoneCheckForm, PhoneCodeForm
from accounts.phone_check import (
    DEFAULT_MESSAGE,
    CodeExpired,
    PhoneCheckLimits,
    PhoneCheckService,
    SmsDown,
    TooManyCodes,
    TooManyWrongCodes,
    VerificationConflict,
    WrongCode,
)
from accounts.realname import InvalidDocument, InvalidName
from accounts.views import _me, _message, bp
from idp.core.navigation import safe_next
from idp.core.runtime import audit_log, db, runtime
from idp.core.web import allow_large_body
from idp.login.auth import login_required

# the photo, the CSRF token, `next` and the multipart framing
FACE_BODY_LIMIT = MAX_IMAGE_BYTES + 64 * 1024


def phone_check_service() -> PhoneCheckService:
    rt = runtime()
    settings = rt.settings
    return PhoneCheckService(
        db(),
        rt.keys.cipher,
        rt.keys.secrets,
        rt.store,
        audit_log(),
        rt.clock,
        deps.sms_gateway(),
        PhoneCheckLimits(
            code_lifetime_seconds=settings.sms_code_lifetime_seconds,
            codes_per_phone_per_hour=settings.sms_codes_per_phone_per_hour,
            codes_per_account_per_day=settings.sms_codes_per_account_per_day,
            level_valid_days=settings.sms_level_valid_days,
        ),
    )


def face_check_service() -> FaceCheckService:
    rt = runtime()
    return FaceCheckService(
        db(),
        deps.realname_service(),
        rt.store,
        audit_log(),
        rt.clock,
        deps.face_verifier(),
        checks_per_day=rt.settings.face_checks_per_account_per_day,
        level_valid_days=rt.settings.face_level_valid_days,
    )


def next_param() -> str:
    """The ``next`` the request carries, if it is a local path; else ""."""
    return safe_next(request.values.get("next"), default="")


def done(next_url: str) -> ResponseReturnValue:
    return redirect(next_url or url_for("accounts.realname"))


# -- level 2 ---------------------------------------------------------------------------


@bp.route("/account/realname/phone", methods=["GET", "POST"])
@login_required
def realname_phone() -> ResponseReturnValue:
    """Declare name, document number and mobile number; a code is texted to the phone."""
    user = _me()
    form = PhoneCheckForm()
    next_url = next_param()
    status = 200
    if form.validate_on_submit():
        try:
            pending = phone_check_service().send_code(
                user,
                form.name.data or "",
                form.id_number.data or "",
                form.phone.data or "",
                message=_(DEFAULT_MESSAGE),
            )
        except InvalidDocument as exc:
            form.id_number.errors = [_message(exc)]
            status = 400
        except InvalidName as exc:
            form.name.errors = [_message(exc)]
            status = 400
        except InvalidPhone:
            form.phone.errors = [_("Enter an 11-digit mainland mobile number.")]
            status = 400
        except TooManyCodes as exc:
            flash(_message(exc), "error")
            status = 429
        except SmsDown as exc:
            flash(_message(exc), "error")
            status = 503
        except AccountError as exc:  # a confirmed identity cannot be replaced
            flash(_message(exc), "error")
            status = 400
        else:
            flash(_("A code has been sent to %(phone)s.", phone=pending.masked_phone), "success")
            return redirect(url_for("accounts.realname_phone_code", next=next_url or None))
    elif form.errors:
        status = 400
    return make_response(
        render_template("accounts/realname_phone.html", form=form, next_url=next_url), status
    )


@bp.route("/account/realname/phone/code", methods=["GET", "POST"])
@login_required
def realname_phone_code() -> ResponseReturnValue:
    """Enter the code (field ``otp``): level 2 once it matches."""
    user = _me()
    service = phone_check_service()
    form = PhoneCodeForm()
    next_url = next_param()
    status = 200
    if form.validate_on_submit():
        try:
            service.confirm(user, form.otp.data or "")
        except WrongCode as exc:
            form.otp.errors = [_message(exc)]
            status = 400
        except (CodeExpired, TooManyWrongCodes) as exc:
            flash(_message(exc), "error")
            status = 400
        except VerificationConflict as exc:
            flash(_message(exc), "error")
            status = 409
        except AccountError as exc:  # number verified for another account, ...
            flash(_message(exc), "error")
            status = 400
        else:
            if deps.realname_service().level(user) > 2:
                flash(_("Your mobile number has been confirmed."), "success")
            else:
                flash(_("Your mobile number has been confirmed: real-name level 2."), "success")
            return done(next_url)
    elif form.errors:
        status = 400
    pending = service.pending(user)
    if pending is None and status == 200:
        flash(_("Ask for a code first."), "info")
        return redirect(url_for("accounts.realname_phone", next=next_url or None))
    return make_response(
        render_template(
            "accounts/realname_phone_code.html", form=form, pending=pending, next_url=next_url
        ),
        status,
    )


# -- level 4 ---------------------------------------------------------------------------


@bp.route("/account/realname/face", methods=["GET", "POST"])
@login_required
def realname_face() -> ResponseReturnValue:
    """Upload a photo (field ``photo``) to compare with the registry photo."""
    user = _me()
    service = face_check_service()
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
            form.photo.errors = [_message(exc)]
            status = 400
        except TooManyFaceChecks as exc:
            flash(_message(exc), "error")
            status = 429
        except FaceDown as exc:
            flash(_message(exc), "error")
            status = 503
        except (FaceMismatch, NeedsConfirmedIdentity) as exc:
            flash(_message(exc), "error")
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
    allow_large_body(app, "accounts.realname_face", FACE_BODY_LIMIT)
