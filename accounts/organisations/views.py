"""Organisation pages: ``/account/organisations`` (the user's authorisations and
invitations, and claiming an organisation as its legal representative) and the
enterprise page ``/org/<public id>`` (企业专属网页, first version: profile, members and
agents, adding and revoking agents, certificates, activity history).

The enterprise page exists only for people with a live authorisation for the
organisation: anyone else gets 404, as for an organisation that does not exist, so the
page does not confirm which organisations are known. Agents see it; only the legal
representative and administrators get the forms (and the service refuses the others
anyway). The rules live in ``AuthorisationService``; these views map its errors to
messages and statuses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
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
from accounts.errors import AccountError
from accounts.identifiers import mask
from accounts.organisations import labels
from accounts.organisations.authorisations import (
    AuthorisationNotFound,
    AuthorisationService,
    ClaimNeedsLevel,
    NotAdministrator,
    NotRepresentative,
    Scope,
)
from accounts.organisations.certificates import certificates_of
from accounts.organisations.forms import AgentForm, ClaimForm, split_names
from accounts.organisations.history import OrganisationHistory
from accounts.organisations.models import Authorisation, Organisation, Role
from accounts.organisations.services import (
    InvalidOrganisationName,
    InvalidUscc,
    OrganisationRegistryDown,
)
from accounts.people.models import User
from accounts.people.session import login_required
from accounts.realname.errors import InvalidDocument
from accounts.web import ActionForm, error_message, signed_in_user
from idp.core.runtime import Runtime, db

bp = Blueprint("organisations", __name__, template_folder="../templates")

ADMIN_ROLES = (Role.LEGAL_REPRESENTATIVE, Role.ADMINISTRATOR)


# -- the user's organisations ------------------------------------------------------------


@bp.route("/account/organisations", methods=["GET", "POST"])
@login_required
def mine() -> ResponseReturnValue:
    """Live authorisations (renounce), pending invitations (confirm), and the claim form."""
    user = signed_in_user()
    form = ClaimForm()
    status = 200
    if form.validate_on_submit():
        try:
            authorisation = _service().claim(user, form.uscc.data or "", form.name.data or "")
        except InvalidUscc as exc:
            form.uscc.errors = [error_message(exc)]
            status = 400
        except InvalidOrganisationName as exc:
            form.name.errors = [error_message(exc)]
            status = 400
        except (ClaimNeedsLevel, NotRepresentative) as exc:
            flash(error_message(exc), "error")
            status = 403
        except OrganisationRegistryDown as exc:
            flash(error_message(exc), "error")
            status = 503
        except AccountError as exc:  # unknown code, name mismatch
            flash(error_message(exc), "error")
            status = 400
        else:
            flash(_("You are now the organisation's legal representative."), "success")
            organisation = _organisation_of(authorisation)
            return redirect(url_for("organisations.enterprise", org_id=organisation.public_id))
    elif form.errors:
        status = 400
    return _mine_page(user, form, status)


@bp.post("/account/organisations/<string:authorisation_id>/confirm")
@login_required
def confirm(authorisation_id: str) -> ResponseReturnValue:
    user = signed_in_user()
    if not ActionForm().validate_on_submit():
        return _mine_page(
            user, ClaimForm(formdata=None), 400, _("The form has expired. Try again.")
        )
    try:
        authorisation = _service().confirm(user, authorisation_id)
    except AuthorisationNotFound as exc:
        return _mine_page(user, ClaimForm(formdata=None), 404, error_message(exc))
    flash(_("You now act for %(name)s.", name=_name_of(_organisation_of(authorisation))), "success")
    return redirect(url_for("organisations.mine"))


@bp.post("/account/organisations/<string:authorisation_id>/renounce")
@login_required
def renounce(authorisation_id: str) -> ResponseReturnValue:
    user = signed_in_user()
    if not ActionForm().validate_on_submit():
        return _mine_page(
            user, ClaimForm(formdata=None), 400, _("The form has expired. Try again.")
        )
    try:
        _service().renounce(user, authorisation_id)
    except AuthorisationNotFound as exc:
        return _mine_page(user, ClaimForm(formdata=None), 404, error_message(exc))
    except AccountError as exc:  # ended already
        return _mine_page(user, ClaimForm(formdata=None), 400, error_message(exc))
    flash(_("You have given up the authorisation."), "success")
    return redirect(url_for("organisations.mine"))


def _mine_page(
    user: User, form: ClaimForm, status: int, error: str | None = None
) -> ResponseReturnValue:
    service = _service()
    live = service.live_for(user)
    invitations = service.invitations_for(user)
    organisations = {row.organisation_id: _organisation_of(row) for row in [*live, *invitations]}
    return make_response(
        render_template(
            "organisations/mine.html",
            form=form,
            action=ActionForm(),
            live=live,
            invitations=invitations,
            organisations={key: _profile(org) for key, org in organisations.items()},
            error=error,
            labels=labels,
        ),
        status,
    )


# -- the enterprise page -----------------------------------------------------------------


@bp.get("/org/<string:org_id>")
@login_required
def enterprise(org_id: str) -> ResponseReturnValue:
    user = signed_in_user()
    organisation, mine = _membership(user, org_id)
    return _enterprise_page(organisation, mine, AgentForm(formdata=None), 200)


@bp.post("/org/<string:org_id>/agents")
@login_required
def add_agent(org_id: str) -> ResponseReturnValue:
    user = signed_in_user()
    organisation, mine = _membership(user, org_id)
    form = AgentForm()
    if not _administers(mine):
        return _enterprise_page(
            organisation,
            mine,
            AgentForm(formdata=None),
            403,
            error_message(NotAdministrator()),
        )
    if not form.validate_on_submit():
        return _enterprise_page(organisation, mine, form, 400)
    invitee: dict[str, Any] = {}
    by_username = form.by.data == "username"
    if by_username:
        # None as well as an account: the answer must not tell which (issue 12)
        invitee["user"] = (
            Accounts.of().account_service().find_by_username((form.invitee.data or "").strip())
        )
    else:
        invitee["number"] = form.invitee.data or ""
    role = Role(form.role.data or "agent")
    starts_at, ends_at = _start(form.starts_on.data), _end(form.ends_on.data)
    try:
        everything = form.scope.data == "all"
        scope = Scope(
            all_services=everything,
            clients=() if everything else tuple(split_names(form.clients.data)),
            scopes=tuple(split_names(form.scopes.data)),
        )
        if by_username and invitee["user"] is None:
            _service().invite_nobody(
                user, organisation, role=role, scope=scope, starts_at=starts_at, ends_at=ends_at
            )
        else:
            _service().invite(
                user,
                organisation,
                role=role,
                scope=scope,
                starts_at=starts_at,
                ends_at=ends_at,
                **invitee,
            )
    except InvalidDocument as exc:
        form.invitee.errors = [error_message(exc)]
        return _enterprise_page(organisation, mine, form, 400)
    except NotAdministrator as exc:  # lost the role meanwhile
        return _enterprise_page(organisation, mine, form, 403, error_message(exc))
    except AccountError as exc:  # invalid scope or dates
        return _enterprise_page(organisation, mine, form, 400, error_message(exc))
    if by_username:
        flash(
            _(
                "If an account with this username exists, it has been invited. The "
                "authorisation starts once its holder confirms it."
            ),
            "success",
        )
    else:
        flash(
            _("The agent has been invited. The authorisation starts once they confirm it."),
            "success",
        )
    return redirect(url_for("organisations.enterprise", org_id=organisation.public_id))


@bp.post("/org/<string:org_id>/authorisations/<string:authorisation_id>/revoke")
@login_required
def revoke(org_id: str, authorisation_id: str) -> ResponseReturnValue:
    user = signed_in_user()
    organisation, mine = _membership(user, org_id)
    service = _service()
    target = service.get(authorisation_id)
    if target is None or target.organisation_id != organisation.id:
        abort(404)
    if not ActionForm().validate_on_submit():
        return _enterprise_page(
            organisation,
            mine,
            AgentForm(formdata=None),
            400,
            _("The form has expired. Try again."),
        )
    try:
        service.revoke(user, authorisation_id)
    except NotAdministrator as exc:
        return _enterprise_page(
            organisation, mine, AgentForm(formdata=None), 403, error_message(exc)
        )
    except AccountError as exc:  # the legal representative, ended already
        return _enterprise_page(
            organisation, mine, AgentForm(formdata=None), 400, error_message(exc)
        )
    flash(_("The authorisation has been revoked."), "success")
    return redirect(url_for("organisations.enterprise", org_id=organisation.public_id))


def _enterprise_page(
    organisation: Organisation,
    mine: list[Authorisation],
    form: AgentForm,
    status: int,
    error: str | None = None,
) -> ResponseReturnValue:
    service = _service()
    members = service.members(organisation)
    accounts = Accounts.of().account_service()
    holders: dict[int, str] = {}
    for row in members:
        if row.user_id is not None and row.user_id not in holders:
            holder = accounts.get(row.user_id)
            holders[row.user_id] = holder.username if holder is not None else ""
    page = OrganisationHistory(db()).page(organisation, members, _page_number())
    return make_response(
        render_template(
            "organisations/enterprise.html",
            organisation=_profile(organisation),
            members=members,
            holders=holders,
            live={row.public_id for row in members if service.is_live(row)},
            to_review=service.to_review(members),
            mine=mine,
            administers=_administers(mine),
            form=form,
            action=ActionForm(),
            certificates=certificates_of(current_app, organisation.id),
            history=page,
            error=error,
            labels=labels,
            now=Runtime.of().clock.now(),
        ),
        status,
    )


# -- helpers -----------------------------------------------------------------------------


def _service() -> AuthorisationService:
    return Accounts.of().authorisation_service()


def _membership(user: User, org_id: str) -> tuple[Organisation, list[Authorisation]]:
    """The organisation and ``user``'s live authorisations for it; 404 when there are
    none (or no such organisation: the two look the same)."""
    organisation = Accounts.of().organisation_service().get(org_id)
    if organisation is None:
        abort(404)
    mine = [row for row in _service().live_for(user) if row.organisation_id == organisation.id]
    if not mine:
        abort(404)
    return organisation, mine


def _administers(mine: list[Authorisation]) -> bool:
    return any(row.role in ADMIN_ROLES for row in mine)


def _organisation_of(authorisation: Authorisation) -> Organisation:
    organisation = db().get(Organisation, authorisation.organisation_id)
    assert organisation is not None  # a foreign key
    return organisation


def _name_of(organisation: Organisation) -> str:
    return Accounts.of().organisation_service().name_of(organisation)


def _profile(organisation: Organisation) -> dict[str, Any]:
    service = Accounts.of().organisation_service()
    return {
        "public_id": organisation.public_id,
        "name": service.name_of(organisation),
        "uscc": mask(service.uscc_of(organisation)),
        "kind": organisation.kind,
        "level": service.level(organisation),
    }


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 5 else 1


def _start(day: date | None) -> datetime | None:
    """From the start of ``day`` (UTC); today or earlier: from now."""
    if day is None:
        return None
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start if start > Runtime.of().clock.now() else None


def _end(day: date | None) -> datetime | None:
    """Until the end of ``day`` (UTC), inclusive."""
    return None if day is None else datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
