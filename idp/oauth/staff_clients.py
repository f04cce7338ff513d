"""``/staff/clients``: a member of staff registers a service (an OAuth client) (issue 12).

What ``idp clients create`` does for the operator, a department's client administrator
does on a page: the page needs the ``client_administrator`` role, the staff member's own
level 4 and a second factor in the session (``accounts.staff``'s ``check_staff``, through
its shared ``staff_refusal``), and registers a confidential client whose secret is shown
once, in that response only (HTML is never cached). The page offers the fields a
department decides (id, name, redirect URIs, scope, minimum level, first-party,
organisations only); the rest keeps the CLI's defaults, and ``ClientRegistry`` checks
everything as it does for the CLI, its refusals shown on the page. The registration is
audited as ``client.create`` with the staff member as the actor (the CLI's actor is
``cli``); a refused attempt as ``client.create`` with outcome failure. It lives here,
not in accounts, because accounts may not import idp.oauth.
"""

from __future__ import annotations

import unicodedata
from typing import Any

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
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from accounts.people.models import User
from accounts.people.session import current_user, login_required
from accounts.staff.services import StaffRole, staff_actor
from accounts.staff.views import staff_post_limited, staff_refusal
from accounts.web import ActionForm
from idp.core.audit.services import FAILURE
from idp.core.runtime import audit_log, db
from idp.core.web import error_response
from idp.oauth.clients import DEFAULT_SCOPE, ClientError, ClientInfo, Registration
from idp.oauth.server import OAuthRuntime

bp = Blueprint("staff_clients", __name__, template_folder="templates")

EVENT = "client.create"
UPDATE_EVENT = "client.update"
DELETE_EVENT = "client.delete"
ROTATE_EVENT = "client.rotate_secret"
MAX_CLIENT_ID = 100
MAX_REDIRECT_URIS = 10
MAX_URI = 500


def _one_line(_form: FlaskForm, field: Any) -> None:
    """No control characters (line breaks, tabs): the name is shown on consent pages."""
    if any(unicodedata.category(ch).startswith("C") for ch in field.data or ""):
        raise ValidationError(_("Use one line without control characters."))


def redirect_uris(text: str) -> list[str]:
    """One URI a line, blank lines ignored, each once."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def _redirect_uri_lines(_form: FlaskForm, field: Any) -> None:
    uris = redirect_uris(field.data or "")
    if not uris:
        raise ValidationError(_("Enter at least one redirect URI."))
    if len(uris) > MAX_REDIRECT_URIS:
        raise ValidationError(_("Enter at most %(count)d redirect URIs.", count=MAX_REDIRECT_URIS))
    if any(len(uri) > MAX_URI for uri in uris):
        raise ValidationError(_("A redirect URI has at most %(count)d characters.", count=MAX_URI))


class EditForm(FlaskForm):  # type: ignore[misc]
    """What a client administrator may change after registration (everything the
    registration form asks for but the client id)."""

    name = StringField(
        _l("Name shown to people (optional: the client id)"),
        validators=[Optional(), Length(max=200), _one_line],
    )
    # none only for a service without the authorization code grant (the registry says)
    redirect_uris = TextAreaField(
        _l("Redirect URIs, one a line"),
        validators=[Optional(), Length(max=6000), _redirect_uri_lines],
    )
    scope = StringField(
        _l("Scopes the service may ask for"),
        default=DEFAULT_SCOPE,
        validators=[InputRequired(), Length(max=500)],
    )
    min_level = SelectField(
        _l("Lowest real-name level of its users"),
        choices=[SelectChoice(str(level)) for level in range(1, 6)],  # read as int once valid
        validators=[InputRequired()],
    )
    first_party = BooleanField(_l("Run by the city: no consent page"))
    require_org = BooleanField(_l("For organisations only: users must act for one"))


class ClientForm(EditForm):
    client_id = StringField(
        _l("Client id"),
        validators=[InputRequired(), Length(max=100)],
    )
    redirect_uris = TextAreaField(
        _l("Redirect URIs, one a line"),
        validators=[InputRequired(), Length(max=6000), _redirect_uri_lines],
    )


@bp.route("/staff/clients", methods=["GET", "POST"])
@login_required
def clients() -> ResponseReturnValue:
    """List the registered services and register a new one (its secret shown once)."""
    staff = current_user()
    assert staff is not None  # login_required ran first
    limited = staff_post_limited(staff)
    if limited is not None:
        return limited
    refused = staff_refusal(staff, StaffRole.CLIENT_ADMINISTRATOR)
    if refused is not None:
        if request.method == "POST":  # an attempt, not a look: audited
            _refuse(staff, refused.reason)
        return refused.response
    form = ClientForm()
    status = 200
    error: str | None = None
    created: dict[str, str | None] | None = None
    if form.validate_on_submit():
        registration = Registration(
            client_id=(form.client_id.data or "").strip(),
            name=(form.name.data or "").strip() or None,
            redirect_uris=redirect_uris(form.redirect_uris.data or ""),
            scope=form.scope.data or "",
            first_party=bool(form.first_party.data),
            min_level=int(form.min_level.data),
            require_org=bool(form.require_org.data),
        )
        try:
            client, secret = OAuthRuntime.of().clients.create(db(), registration)
        except ClientError as exc:  # the registry's checks, as for the CLI
            db().rollback()
            error = _("The service was not registered: %(reason)s.", reason=_reason(exc))
            status = 400
        else:
            audit_log(staff_actor(staff)).record(
                EVENT,
                subject=f"client:{client.client_id}",
                details={"department": staff.staff_department},
            )
            db().commit()
            created = {"client_id": client.client_id, "secret": secret}
            form = ClientForm(formdata=None)
    elif form.errors:
        status = 400
    registered = OAuthRuntime.of().clients.all(db())
    return make_response(
        render_template(
            "oauth/staff_clients.html",
            form=form,
            error=error,
            created=created,
            clients=registered,
            department=staff.staff_department,
            action=url_for("staff_clients.clients"),
        ),
        status,
    )


def _reason(error: ClientError) -> str:
    """The registry's refusal in the page's language (the CLI shows it in English)."""
    return str(_(error.message, **error.params))


def _refuse(staff: User, reason: str, event: str = EVENT, client_id: str | None = None) -> None:
    # the URL's id, when it could be a client id (the audit subject holds 128 characters)
    named = client_id is not None and len(client_id) <= MAX_CLIENT_ID
    subject = f"client:{client_id}" if named else None
    audit_log(staff_actor(staff)).record(
        event, FAILURE, subject=subject, details={"reason": reason}
    )
    db().commit()


def _administrator(event: str, client_id: str) -> tuple[User, Response | None]:
    """The signed-in staff member, and the 403 page if they may not administer clients
    now (a POST refused is audited as ``event`` with outcome failure)."""
    staff = current_user()
    assert staff is not None  # login_required ran first
    limited = staff_post_limited(staff)
    if limited is not None:
        return staff, limited
    refused = staff_refusal(staff, StaffRole.CLIENT_ADMINISTRATOR)
    if refused is None:
        return staff, None
    if request.method == "POST":  # an attempt, not a look: audited
        _refuse(staff, refused.reason, event, client_id)
    return staff, refused.response


def _no_such_client() -> Response:
    return error_response(404, _("There is no such service."), error="not_found")


def _edit_page(
    client: ClientInfo,
    form: EditForm,
    department: str | None,
    *,
    status: int = 200,
    error: str | None = None,
    secret: str | None = None,
) -> Response:
    return make_response(
        render_template(
            "oauth/staff_client_edit.html",
            client=client,
            form=form,
            error=error,
            secret=secret,
            department=department,
            action=url_for("staff_clients.edit", client_id=client.client_id),
            actions=ActionForm(),
        ),
        status,
    )


def _filled(client: ClientInfo) -> EditForm:
    """The edit form showing the client as registered."""
    form = EditForm(formdata=None)
    form.name.data = client.name
    form.redirect_uris.data = "\n".join(client.redirect_uris)
    form.scope.data = " ".join(sorted(client.scopes))
    form.min_level.data = str(client.min_level)
    form.first_party.data = client.first_party
    form.require_org.data = client.require_org
    return form


@bp.route("/staff/clients/<string:client_id>", methods=["GET", "POST"])
@login_required
def edit(client_id: str) -> ResponseReturnValue:
    """Change what the registration form set (the client id stays)."""
    staff, refused = _administrator(UPDATE_EVENT, client_id)
    if refused is not None:
        return refused
    registry = OAuthRuntime.of().clients
    client = registry.find(db(), client_id)
    if client is None:
        return _no_such_client()
    if request.method == "GET":
        return _edit_page(client, _filled(client), staff.staff_department)
    form = EditForm()
    if not form.validate_on_submit():
        return _edit_page(client, form, staff.staff_department, status=400)
    try:
        updated = registry.update(
            db(),
            client_id,
            name=(form.name.data or "").strip() or client.client_id,
            redirect_uris=redirect_uris(form.redirect_uris.data or ""),
            scope=form.scope.data or "",
            min_level=int(form.min_level.data),
            first_party=bool(form.first_party.data),
            require_org=bool(form.require_org.data),
        )
    except ClientError as exc:  # the registry's checks, as for the CLI
        db().rollback()
        error = _("The service was not changed: %(reason)s.", reason=_reason(exc))
        return _edit_page(client, form, staff.staff_department, status=400, error=error)
    changed = sorted(
        key
        for key, before in (
            ("name", client.name),
            ("redirect_uris", client.redirect_uris),
            ("scope", client.scopes),
            ("min_level", client.min_level),
            ("first_party", client.first_party),
            ("require_org", client.require_org),
        )
        if getattr(updated, "scopes" if key == "scope" else key) != before
    )
    audit_log(staff_actor(staff)).record(
        UPDATE_EVENT,
        subject=f"client:{client_id}",
        details={"department": staff.staff_department, "changed": changed},
    )
    db().commit()
    flash(_("The service %(client_id)s was changed.", client_id=client_id), "success")
    return redirect(url_for("staff_clients.edit", client_id=client_id))


@bp.route("/staff/clients/<string:client_id>/delete", methods=["POST"])
@login_required
def delete(client_id: str) -> ResponseReturnValue:
    """Remove a service and everything issued to it."""
    staff, refused = _administrator(DELETE_EVENT, client_id)
    if refused is not None:
        return refused
    if not ActionForm().validate_on_submit():
        return error_response(400, _("The form has expired. Please try again."))
    if not OAuthRuntime.of().clients.delete(db(), client_id):
        return _no_such_client()
    audit_log(staff_actor(staff)).record(
        DELETE_EVENT,
        subject=f"client:{client_id}",
        details={"department": staff.staff_department},
    )
    db().commit()
    flash(_("The service %(client_id)s was removed.", client_id=client_id), "success")
    return redirect(url_for("staff_clients.clients"))


@bp.route("/staff/clients/<string:client_id>/secret", methods=["POST"])
@login_required
def rotate_secret(client_id: str) -> ResponseReturnValue:
    """Give the service a new secret, shown in this response only; the old one stops
    working at once (every worker forgets it within the client cache time)."""
    staff, refused = _administrator(ROTATE_EVENT, client_id)
    if refused is not None:
        return refused
    if not ActionForm().validate_on_submit():
        return error_response(400, _("The form has expired. Please try again."))
    registry = OAuthRuntime.of().clients
    client = registry.find(db(), client_id)
    if client is None:
        return _no_such_client()
    try:
        secret = registry.rotate_secret(db(), client_id)
    except ClientError as exc:  # a public or private_key_jwt client has no secret
        db().rollback()
        error = _("The secret was not changed: %(reason)s.", reason=_reason(exc))
        return _edit_page(client, _filled(client), staff.staff_department, status=400, error=error)
    audit_log(staff_actor(staff)).record(
        ROTATE_EVENT,
        subject=f"client:{client_id}",
        details={"department": staff.staff_department},
    )
    db().commit()
    return _edit_page(client, _filled(client), staff.staff_department, secret=secret)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
