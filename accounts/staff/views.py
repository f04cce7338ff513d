"""Pages for government staff: ``/staff/counter``, real-name level 5 at a service counter.

Only a signed-in staff account (``staff_department`` set) whose session includes a
second factor (``otp`` in the session's ``amr``) may use them; anyone else gets a 403
page that says why. The page is thin: the rules live in ``accounts.counter``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, make_response, render_template, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField
from wtforms.validators import InputRequired, Length, Optional

from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.identifiers import mask
from accounts.people.models import User
from accounts.people.session import current_user, login_required
from accounts.realname.errors import InvalidDocument, InvalidName, InvalidReference, OwnAccount
from accounts.staff.errors import NotStaff, StaffNeedsSecondFactor
from accounts.staff.services import StaffRole, check_staff, staff_actor
from accounts.web import error_message
from idp.core.runtime import Runtime
from idp.core.throttle import RateLimit, Throttled
from idp.core.web import error_response

bp = Blueprint("staff", __name__, template_folder="../templates")


class CounterForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        _l("The citizen's username"), validators=[InputRequired(), Length(max=64)]
    )
    name = StringField(_l("Name on the document"), validators=[InputRequired(), Length(max=64)])
    id_number = StringField(
        _l("Identity document number"), validators=[InputRequired(), Length(max=32)]
    )
    reference = StringField(
        _l("Reference (ticket or serial number, optional)"),
        validators=[Optional(), Length(max=100)],
    )
    examined = BooleanField(
        _l(
            "I have examined the original identity document in person, and it shows this name "
            "and number."
        ),
        validators=[
            InputRequired(message=_l("Confirm that you examined the original document in person."))
        ],
    )


def _refusal(user: User) -> ResponseReturnValue | None:
    """Why this signed-in account may not use the counter page, as a 403 page; None if
    it may (``check_staff``: staff, the counter_verifier role, level 4, a second factor)."""
    title = _("Staff only")
    try:
        check_staff(
            user,
            StaffRole.COUNTER_VERIFIER,
            amr=list(session.get("amr", [])),
            level_of=Accounts.of().realname_service().level,
        )
    except NotStaff:
        return error_response(
            403,
            _(
                "This page is for government staff who verify people at a service counter. "
                "Your account is not registered as staff."
            ),
            error="access_denied",
            title=title,
        )
    except StaffNeedsSecondFactor:
        if user.has_totp:
            message = _(
                "Staff pages need a second factor: sign out, then sign in with your "
                "authenticator app."
            )
        else:
            message = _(
                "Staff pages need a second factor: set up an authenticator app on your "
                "account, then sign in with your authenticator app."
            )
        return error_response(403, message, error="access_denied", title=title)
    except AccountError as exc:  # the role, or the staff member's own level
        return error_response(403, _(exc.message, **exc.params), error="access_denied", title=title)
    return None


@bp.route("/staff/counter", methods=["GET", "POST"])
@login_required
def counter() -> ResponseReturnValue:
    """Record an in-person check of a citizen's original identity document (level 5)."""
    staff = current_user()
    assert staff is not None  # login_required ran first
    refused = _refusal(staff)
    if refused is not None:
        return refused
    form = CounterForm()
    status = 200
    result: dict[str, str] | None = None
    error: str | None = None
    if form.validate_on_submit():
        try:
            _counter_limit().hit(staff.public_id)
        except Throttled:
            return error_response(
                429,
                _(
                    "You have recorded many counter checks in the last hour. Try again "
                    "later, or ask an administrator if this is expected."
                ),
                error="too_many_requests",
                title=_("Too many counter checks"),
            )
        citizen = Accounts.of().account_service().find_by_username(form.username.data or "")
        if citizen is None:
            form.username.errors = [_("There is no account with this username.")]
        else:
            try:
                Accounts.of().counter_service(actor=staff_actor(staff)).verify_at_counter(
                    citizen,
                    form.name.data or "",
                    form.id_number.data or "",
                    staff=staff,
                    reference=form.reference.data or None,
                )
            except InvalidDocument as exc:
                form.id_number.errors = [error_message(exc)]
            except InvalidName as exc:
                form.name.errors = [error_message(exc)]
            except InvalidReference as exc:
                form.reference.errors = [error_message(exc)]
            except OwnAccount as exc:
                form.username.errors = [error_message(exc)]
            except NotStaff as exc:  # the role ended while the form was open
                return error_response(403, error_message(exc), error="access_denied")
            except AccountError as exc:  # the number is verified for another account
                error = error_message(exc)
                status = 409
            else:
                number = (form.id_number.data or "").strip().upper()
                result = {"username": citizen.username, "number": mask(number)}
                form = CounterForm(formdata=None)
        if result is None:
            status = max(status, 400)
    elif form.errors:
        status = 400
    return make_response(
        render_template(
            "accounts/staff_counter.html",
            form=form,
            result=result,
            error=error,
            department=staff.staff_department,
            action=url_for("staff.counter"),
        ),
        status,
    )


def _counter_limit() -> RateLimit:
    """A stolen staff session cannot mass-produce level 5 accounts: so many checks per
    member of staff per hour (each is audited too)."""
    rt = Runtime.of()
    return RateLimit(
        rt.store,
        "counter-check",
        limit=rt.settings.counter_checks_per_staff_per_hour,
        window_seconds=3600,
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
