"""The holder's page of service records: their records with the timelines, filtered by
status and service, and the rating of a completed one; an organisation's records,
read-only, for those who act for it (``/org/<id>/records``)."""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
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
from accounts.people.session import login_required
from accounts.records.container import Records
from accounts.records.forms import RATINGS, RateForm
from accounts.records.labels import STATUS_LABELS
from accounts.records.models import RecordStatus
from accounts.records.services import RecordError, RecordNotFound
from accounts.web import error_message, signed_in_user
from idp.core.runtime import db

PUBLIC_ID = re.compile(r"[0-9a-f-]{36}")  # what reaches the database from a path

bp = Blueprint("records", __name__, template_folder="../templates")


@bp.get("/account/records")
@login_required
def mine() -> ResponseReturnValue:
    user = signed_in_user()
    service = Records.of().service()
    status, name = _filters()
    return _page(
        records=service.for_user(user.id, status=status, service=name),
        services=service.services_of_user(user.id),
        selected_status=status,
        selected_service=name,
        organisation=None,
        action=url_for("records.mine"),
    )


@bp.get("/org/<string:org_id>/records")
@login_required
def organisation(org_id: str) -> ResponseReturnValue:
    """The organisation's records, read-only, for whoever acts for it now (a live
    authorisation); anyone else gets "not found", as for an unknown organisation."""
    user = signed_in_user()
    accounts = Accounts.of()
    found = accounts.organisation_service().get(org_id) if PUBLIC_ID.fullmatch(org_id) else None
    live = found is not None and any(
        row.organisation_id == found.id for row in accounts.authorisation_service().live_for(user)
    )
    if found is None or not live:
        abort(404)
    service = Records.of().service()
    status, name = _filters()
    return _page(
        records=service.for_organisation(found.id, status=status, service=name),
        services=service.services_of_organisation(found.id),
        selected_status=status,
        selected_service=name,
        organisation=accounts.organisation_service().name_of(found),
        action=url_for("records.organisation", org_id=found.public_id),
    )


def _filters() -> tuple[RecordStatus | None, str | None]:
    return _status(request.args.get("status")), (request.args.get("service") or "")[:200] or None


def _page(**context: Any) -> ResponseReturnValue:
    return make_response(
        render_template(
            "records/mine.html",
            labels=STATUS_LABELS,
            ratings=dict(RATINGS),
            form=RateForm(),
            **context,
        )
    )


@bp.post("/account/records/<record_id>/rate")
@login_required
def rate(record_id: str) -> ResponseReturnValue:
    user = signed_in_user()
    form = RateForm()
    service = Records.of().service(user.subject)
    if not form.validate_on_submit():
        flash(_("Choose how satisfied you are before sending the rating."), "error")
        return redirect(url_for("records.mine"))
    try:
        if not PUBLIC_ID.fullmatch(record_id):
            raise RecordNotFound()
        service.rate(user.id, record_id, int(form.satisfaction.data))
    except RecordError as exc:
        flash(error_message(exc), "error")
        return redirect(url_for("records.mine"))
    db().commit()
    flash(_("Thank you: your rating has been saved."), "success")
    return redirect(url_for("records.mine"))


def _status(value: str | None) -> RecordStatus | None:
    try:
        return RecordStatus(value) if value else None
    except ValueError:
        return None


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
