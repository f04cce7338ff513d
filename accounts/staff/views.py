"""Pages for government staff: ``/staff/counter`` (real-name level 5 at a service
counter) and ``/staff/levels`` (lowering a citizen's level).

A staff page is for a signed-in account with the page's staff role, its own real-name
level 4 and a second factor in this session (``check_staff``); anyone else gets a 403
page that says why (``staff_refusal``, shared with ``/staff/clients`` in idp.oauth),
and a refused POST is audited. The pages are thin: the rules live in
``accounts.realname.counter`` and ``accounts.staff.levels``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import (
    Blueprint,
    Flask,
    Response,
    make_response,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]
from wtforms.validators import InputRequired, Length, Optional

from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.identifiers import mask
from accounts.people.models import User
from accounts.people.session import current_user, login_required
from accounts.realname.errors import InvalidDocument, InvalidName, InvalidReference, OwnAccount
from accounts.realname.services import VerificationMethod
from accounts.staff.errors import (
    InvalidKeptLevel,
    InvalidLowerReason,
    NotStaff,
    OwnLevel,
    StaffLevelTooLow,
    StaffNeedsRole,
    StaffNeedsSecondFactor,
)
from accounts.staff.levels import KEPT_LEVELS, MAX_REASON
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


# what each staff page says to an account that is not staff at all
_NOT_STAFF = {
    StaffRole.COUNTER_VERIFIER: _l(
        "This page is for government staff who verify people at a service counter. "
        "Your account is not registered as staff."
    ),
    StaffRole.LEVEL_ADMINISTRATOR: _l(
        "This page is for government staff who lower real-name levels. "
        "Your account is not registered as staff."
    ),
    StaffRole.CLIENT_ADMINISTRATOR: _l(
        "This page is for government staff who register services. "
        "Your account is not registered as staff."
    ),
    StaffRole.STATISTICS_VIEWER: _l(
        "This page is for government staff who read the hall's statistics. "
        "Your account is not registered as staff."
    ),
}


@dataclass(frozen=True)
class Refusal:
    """Why a signed-in account may not use a staff page: the 403 page, and the reason
    an audit event gives (``not_staff``, ``no_role``, ``staff_level_too_low``,
    ``no_second_factor``)."""

    response: Response
    reason: str


def staff_refusal(user: User, role: StaffRole) -> Refusal | None:
    """May this signed-in account use the staff page of ``role`` now (``check_staff``:
    staff, the role, their own level 4, a second factor in this session)? None if it
    may. Shared by every staff page (``/staff/clients`` lives in idp.oauth)."""
    title = _("Staff only")
    try:
        check_staff(
            user,
            role,
            amr=list(session.get("amr", [])),
            level_of=Accounts.of().realname_service().level,
        )
    except NotStaff:
        message, reason = str(_NOT_STAFF[role]), "not_staff"
    except StaffNeedsSecondFactor:
        reason = "no_second_factor"
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
    except StaffNeedsRole as exc:
        message, reason = error_message(exc), "no_role"
    except StaffLevelTooLow as exc:
        message, reason = error_message(exc), "staff_level_too_low"
    else:
        return None
    return Refusal(error_response(403, message, error="access_denied", title=title), reason)


def staff_post_limited(user: User) -> Response | None:
    """The 429 page once ``user`` has sent too many forms to the staff pages this hour
    (every POST counts, refused or not: a stolen session, or an account probing the
    pages, cannot hammer them or flood the audit log); None while within the limit.
    Shared by every staff page (``/staff/clients`` lives in idp.oauth)."""
    if request.method != "POST":
        return None
    rt = Runtime.of()
    limit = RateLimit(
        rt.store,
        "staff-post",
        limit=rt.settings.staff_posts_per_account_per_hour,
        window_seconds=3600,
    )
    try:
        limit.hit(user.public_id)
    except Throttled as exc:
        response = error_response(
            429,
            _(
                "You have sent many forms to the staff pages in the last hour. Try again "
                "in %(minutes)d minutes.",
                minutes=max(1, (exc.retry_after + 59) // 60),
            ),
            error="too_many_requests",
            title=_("Too many requests"),
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return None


def _named_citizen() -> User | None:
    """The account a refused staff form names, for its audit event (None: unknown)."""
    return Accounts.of().account_service().find_by_username(request.form.get("username", "")[:64])


@bp.route("/staff/counter", methods=["GET", "POST"])
@login_required
def counter() -> ResponseReturnValue:
    """Record an in-person check of a citizen's original identity document (level 5)."""
    staff = current_user()
    assert staff is not None  # login_required ran first
    limited = staff_post_limited(staff)
    if limited is not None:
        return limited
    refused = staff_refusal(staff, StaffRole.COUNTER_VERIFIER)
    if refused is not None:
        if request.method == "POST":  # an attempt, not a look: audited
            Accounts.of().realname_service().record_refusal(
                _named_citizen(),
                method=VerificationMethod.COUNTER,
                reason=refused.reason,
                actor=staff_actor(staff),
            )
        return refused.response
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


class LevelForm(FlaskForm):  # type: ignore[misc]
    username = StringField(
        _l("The citizen's username"), validators=[InputRequired(), Length(max=64)]
    )
    level = SelectField(
        _l("The highest level the account keeps"),
        choices=[SelectChoice(str(kept)) for kept in KEPT_LEVELS],  # read as int once valid
        validators=[InputRequired()],
    )
    reason = StringField(
        _l("Reason (the citizen sees it in their history)"),
        validators=[InputRequired(), Length(max=MAX_REASON)],
    )


@bp.route("/staff/levels", methods=["GET", "POST"])
@login_required
def levels() -> ResponseReturnValue:
    """Lower a citizen's real-name level: the verifications above the level kept end."""
    staff = current_user()
    assert staff is not None  # login_required ran first
    limited = staff_post_limited(staff)
    if limited is not None:
        return limited
    service = Accounts.of().level_service(actor=staff_actor(staff))
    refused = staff_refusal(staff, StaffRole.LEVEL_ADMINISTRATOR)
    if refused is not None:
        if request.method == "POST":  # an attempt, not a look: audited
            service.refuse(staff, _named_citizen(), refused.reason)
        return refused.response
    form = LevelForm()
    status = 200
    result: dict[str, str | int] | None = None
    if form.validate_on_submit():
        citizen = Accounts.of().account_service().find_by_username(form.username.data or "")
        if citizen is None:
            form.username.errors = [_("There is no account with this username.")]
        else:
            try:
                ended = service.lower(
                    staff, citizen, keep=int(form.level.data), reason=form.reason.data or ""
                )
            except (OwnLevel, InvalidKeptLevel) as exc:
                form.username.errors = [error_message(exc)]
            except InvalidLowerReason as exc:
                form.reason.errors = [error_message(exc)]
            except AccountError as exc:  # the role ended while the form was open
                return error_response(403, error_message(exc), error="access_denied")
            else:
                result = {
                    "username": citizen.username,
                    "ended": ended,
                    "level": Accounts.of().realname_service().level(citizen),
                }
                form = LevelForm(formdata=None)
        if result is None:
            status = 400
    elif form.errors:
        status = 400
    return make_response(
        render_template(
            "accounts/staff_levels.html",
            form=form,
            result=result,
            department=staff.staff_department,
            action=url_for("staff.levels"),
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
