"""The hall's statistics for staff with the ``statistics_viewer`` role:
``/staff/statistics`` (a table per measure, each with a bar chart drawn as SVG and the
chart's numbers as a table beside it), ``/staff/statistics.json`` and
``/staff/statistics.csv`` (``table=services`` or ``signins``).

The same ``staff_refusal`` as every staff page (the role, the staff member's own level 4,
a second factor in this session); a query the service refuses is a 400 that names the
parameter (JSON at the JSON endpoint)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import format_decimal, format_percent
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from accounts.people.session import login_required
from accounts.records.models import RecordStatus
from accounts.staff.services import StaffRole
from accounts.staff.views import staff_refusal
from accounts.statistics.charts import Bar, bar_chart
from accounts.statistics.errors import InvalidStatisticsQuery
from accounts.statistics.export import (
    SERVICE_COLUMNS,
    SIGNIN_COLUMNS,
    csv_text,
    services_rows,
    signins_rows,
    sorted_items,
    to_json,
)
from accounts.statistics.services import (
    MAX_MONTHS,
    SATISFIED,
    STATUSES,
    Statistics,
    StatisticsQuery,
    StatisticsService,
)
from accounts.web import error_message, signed_in_user
from idp.core.runtime import Runtime, db
from idp.core.web import error_response, register_json_blueprint

bp = Blueprint("statistics", __name__, template_folder="../templates")
api = Blueprint("statistics_api", __name__)

STATUS_LABELS = {
    RecordStatus.SUBMITTED: _l("Submitted"),
    RecordStatus.ACCEPTED: _l("Accepted"),
    RecordStatus.IN_PROGRESS: _l("In progress"),
    RecordStatus.MORE_INFO_NEEDED: _l("More information needed"),
    RecordStatus.COMPLETED: _l("Completed"),
    RecordStatus.REJECTED: _l("Rejected"),
}
# the parts of a sign-in's methods ("password+totp"); another method shows its name
METHOD_LABELS = {
    "password": _l("Password"),
    "totp": _l("Authenticator app"),
    "certificate": _l("Digital certificate"),
    "federation": _l("Provincial hall account"),
}
TABLES = ("services", "signins")


def service() -> StatisticsService:
    return StatisticsService(db())


def _refused() -> Response | None:
    refused = staff_refusal(signed_in_user(), StaffRole.STATISTICS_VIEWER)
    return None if refused is None else refused.response


def _query() -> StatisticsQuery:
    args = request.args
    return StatisticsQuery.parse(
        args.get("from"), args.get("to"), args.get("service"), now=Runtime.of().clock.now()
    )


def _bad_query(exc: InvalidStatisticsQuery, *, as_json: bool) -> Response:
    if as_json:
        response = jsonify(
            error="invalid_request",
            error_description=exc.message % exc.params if exc.params else exc.message,
            field=exc.field,
        )
        response.status_code = 400
        return response
    return error_response(400, error_message(exc), title=_("Statistics"))


def method_label(method: str | None) -> str:
    if method is None:
        return str(_("Not recorded"))
    return " + ".join(str(METHOD_LABELS.get(part, part)) for part in method.split("+"))


def level_label(level: int | None) -> str:
    return str(_("Not recorded") if level is None else _("Level %(level)d", level=level))


def percent(value: Fraction | None) -> str:
    return "—" if value is None else str(format_percent(float(value), "#,##0.0%"))


def decimal(value: Fraction | None) -> str:
    return "—" if value is None else str(format_decimal(float(value), "#,##0.00"))


@dataclass(frozen=True)
class Chart:
    """A chart and the table of its numbers: (label, shown value) rows."""

    svg: Any
    caption: str
    heading: str
    rows: list[tuple[str, str]]


def _chart(
    chart_id: str,
    title: str,
    description: str,
    heading: str,
    points: Sequence[tuple[str, float, str]],
    *,
    maximum: float = 0,
) -> Chart:
    bars = [Bar(label, value, text) for label, value, text in points]
    svg = bar_chart(chart_id, title, description, bars, maximum=maximum)
    return Chart(svg, title, heading, [(label, text) for label, _value, text in points])


def _rate_points(
    stats: Statistics, rate: Callable[[Any], Fraction | None], shown: Callable[..., str]
) -> list[tuple[str, float, str]]:
    points = []
    for month, figures in stats.months:
        value = rate(figures)
        points.append((str(month), 0.0 if value is None else float(value), shown(value)))
    return points


def _charts(stats: Statistics) -> dict[str, Chart]:
    month = _("Month")
    totals = [(str(m), float(f.total), str(f.total)) for m, f in stats.months]
    methods: dict[str | None, int] = {}
    levels: dict[int | None, int] = {}
    for figures in stats.signins:
        for key, count in figures.by_method.items():
            methods[key] = methods.get(key, 0) + count
        for level, count in figures.by_level.items():
            levels[level] = levels.get(level, 0) + count
    return {
        "records": _chart(
            "chart-records",
            _("Records by month"),
            _("Records created each month, all statuses."),
            month,
            totals,
        ),
        "online": _chart(
            "chart-online",
            _("Online completion rate by month"),
            _("Completed records done online, as a share of completed records."),
            month,
            _rate_points(stats, lambda f: f.online_completion_rate, percent),
            maximum=1,
        ),
        "visits": _chart(
            "chart-visits",
            _("Share with at most two counter visits by month"),
            _("Completed records that needed at most two counter visits."),
            month,
            _rate_points(stats, lambda f: f.at_most_two_visits_share, percent),
            maximum=1,
        ),
        "average": _chart(
            "chart-average",
            _("Average counter visits by month"),
            _("Counter visits per completed record."),
            month,
            _rate_points(stats, lambda f: f.average_counter_visits, decimal),
        ),
        "satisfaction": _chart(
            "chart-satisfaction",
            _("Satisfaction rate by month"),
            _(
                "Records rated %(satisfied)d or 5, as a share of rated records.",
                satisfied=SATISFIED,
            ),
            month,
            _rate_points(stats, lambda f: f.satisfaction_rate, percent),
            maximum=1,
        ),
        "methods": _chart(
            "chart-methods",
            _("Sign-ins by method"),
            _("Sign-ins in the months shown, by the methods used."),
            _("Method"),
            [(method_label(k), float(v), str(v)) for k, v in sorted_items(methods)],
        ),
        "levels": _chart(
            "chart-levels",
            _("Sign-ins by real-name level"),
            _("Sign-ins in the months shown, by the account's real-name level at sign-in."),
            _("Real-name level"),
            [(level_label(k), float(v), str(v)) for k, v in sorted_items(levels)],
        ),
    }


@bp.get("/staff/statistics")
@login_required
def page() -> ResponseReturnValue:
    refused = _refused()
    if refused is not None:
        return refused
    try:
        query = _query()
    except InvalidStatisticsQuery as exc:
        return _bad_query(exc, as_json=False)
    stats = service().compute(query)
    args = {"from": str(query.first), "to": str(query.last)}
    if query.service is not None:
        args["service"] = query.service
    return make_response(
        render_template(
            "statistics/statistics.html",
            stats=stats,
            query=query,
            services=service().services(query),
            charts=_charts(stats),
            statuses=[(status, STATUS_LABELS[status]) for status in STATUSES],
            methods=[(m, method_label(m)) for m in stats.methods],
            levels=[(level, level_label(level)) for level in stats.levels],
            percent=percent,
            decimal=decimal,
            args=args,
            satisfied=SATISFIED,
            max_months=MAX_MONTHS,
        )
    )


@api.get("/staff/statistics.json")
@login_required
def as_json() -> ResponseReturnValue:
    refused = _refused()
    if refused is not None:
        return refused
    try:
        query = _query()
    except InvalidStatisticsQuery as exc:
        return _bad_query(exc, as_json=True)
    return jsonify(to_json(service().compute(query)))


@bp.get("/staff/statistics.csv")
@login_required
def as_csv() -> ResponseReturnValue:
    refused = _refused()
    if refused is not None:
        return refused
    table = request.args.get("table") or "services"
    if table not in TABLES:
        return error_response(400, _("The table is services or signins."), title=_("Statistics"))
    try:
        query = _query()
    except InvalidStatisticsQuery as exc:
        return _bad_query(exc, as_json=False)
    stats = service().compute(query)
    if table == "services":
        header = [_(label) for _key, label in SERVICE_COLUMNS]
        rows = services_rows(stats, all_services=_("All services"))
    else:
        header = [_(label) for _key, label in SIGNIN_COLUMNS]
        rows = signins_rows(
            stats,
            method=_("Method"),
            level=_("Real-name level"),
            label=lambda kind, value: (
                method_label(value) if kind == "method" else level_label(value)
            ),
        )
    response = Response(csv_text(header, rows), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    name = f"statistics-{table}-{query.first}-{query.last}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(api)
    register_json_blueprint(app, api)
