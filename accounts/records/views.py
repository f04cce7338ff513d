"""The holder's page of service records: their records with the timelines, filtered by
status and service, and the rating of a completed one."""

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
from flask_babel import lazy_gettext as _l

from accounts.people.session import login_required
from accounts.records.container import Records
from accounts.records.forms import RATINGS, RateForm
from accounts.records.models import RecordStatus
from accounts.records.services import RecordError
from accounts.web import error_message, signed_in_user
from idp.core.runtime import db

bp = Blueprint("records", __name__, template_folder="../templates")

STATUS_LABELS = {
    RecordStatus.SUBMITTED: _l("Submitted"),
    RecordStatus.ACCEPTED: _l("Accepted"),
    RecordStatus.IN_PROGRESS: _l("In progress"),
    RecordStatus.MORE_INFO_NEEDED: _l("More information needed"),
    RecordStatus.COMPLETED: _l("Completed"),
    RecordStatus.REJECTED: _l("Rejected"),
}


@bp.get("/account/records")
@login_required
def mine() -> ResponseReturnValue:
    user = signed_in_user()
    service = Records.of().service()
    status = _status(request.args.get("status"))
    name = (request.args.get("service") or "")[:200] or None
    return _page(service.for_user(user.id, status=status, service=name), status, name)


def _page(
    records: object, status: RecordStatus | None, name: str | None, code: int = 200
) -> ResponseReturnValue:
    user = signed_in_user()
    return make_response(
        render_template(
            "records/mine.html",
            records=records,
            services=Records.of().service().services_of_user(user.id),
            selected_status=status,
            selected_service=name,
            labels=STATUS_LABELS,
            ratings=dict(RATINGS),
            form=RateForm(),
        ),
        code,
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
        service.rate(user.id, record_id[:64], int(form.satisfaction.data))
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
