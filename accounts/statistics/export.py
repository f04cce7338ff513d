"""The statistics as JSON and as CSV (no Flask: the views pass translated labels in).

CSV is UTF-8 with a byte order mark, so Excel opens Chinese text as such, and a cell
that a spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``, a tab or a
carriage return first: a service name comes from a service system) is prefixed with
``'`` (OWASP's advice against CSV injection)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from accounts.errors import N_
from accounts.statistics.services import (
    STATUSES,
    RecordFigures,
    SignIns,
    Statistics,
    as_number,
)

BOM = "\ufeff"
NOT_RECORDED = "not_recorded"  # the JSON key of sign-ins without a method or level
_FORMULA = ("=", "+", "-", "@", "\t", "\r")

# the services table: (JSON/CSV key, column heading msgid)
SERVICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("month", N_("Month")),
    ("item_code", N_("Item code")),
    ("service_name", N_("Service")),
    ("records_submitted", N_("Submitted")),
    ("records_accepted", N_("Accepted")),
    ("records_in_progress", N_("In progress")),
    ("records_more_info_needed", N_("More information needed")),
    ("records_completed", N_("Completed")),
    ("records_rejected", N_("Rejected")),
    ("records_total", N_("Records")),
    ("completed_online", N_("Completed online")),
    ("online_completion_rate", N_("Online completion rate")),
    ("at_most_two_visits", N_("Completed with at most two counter visits")),
    ("at_most_two_visits_share", N_("Share with at most two counter visits")),
    ("counter_visits", N_("Counter visits of completed records")),
    ("average_counter_visits", N_("Average counter visits")),
    ("rated", N_("Rated records")),
    ("satisfied", N_("Satisfied (rated 4 or 5)")),
    ("satisfaction_rate", N_("Satisfaction rate")),
)
SIGNIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("month", N_("Month")),
    ("breakdown", N_("Breakdown")),
    ("value", N_("Method or level")),
    ("signins", N_("Sign-ins")),
)


def figures_json(figures: RecordFigures) -> dict[str, Any]:
    return {
        "records": {
            **{status.value: figures.by_status[status] for status in STATUSES},
            "total": figures.total,
        },
        "completed": figures.completed,
        "completed_online": figures.completed_online,
        "online_completion_rate": as_number(figures.online_completion_rate),
        "at_most_two_visits": figures.at_most_two_visits,
        "at_most_two_visits_share": as_number(figures.at_most_two_visits_share),
        "counter_visits": figures.counter_visits,
        "average_counter_visits": as_number(figures.average_counter_visits),
        "rated": figures.rated,
        "satisfied": figures.satisfied,
        "satisfaction_rate": as_number(figures.satisfaction_rate),
    }


def _key(value: object) -> str:
    return NOT_RECORDED if value is None else str(value)


def signins_json(month: SignIns) -> dict[str, Any]:
    return {
        "month": str(month.month),
        "total": month.total,
        "by_method": {_key(method): count for method, count in sorted_items(month.by_method)},
        "by_level": {_key(level): count for level, count in sorted_items(month.by_level)},
    }


def sorted_items(counts: dict[Any, int]) -> list[tuple[Any, int]]:
    """Not recorded (None) first, then by value."""
    return sorted(counts.items(), key=lambda item: (item[0] is not None, item[0] or 0))


def to_json(stats: Statistics) -> dict[str, Any]:
    query = stats.query
    return {
        "from": str(query.first),
        "to": str(query.last),
        "service": query.service,
        "definitions": {
            "month": "UTC month a record was created, or of the sign-in",
            "online_completion_rate": "completed online / completed",
            "at_most_two_visits_share": "completed with counter_visits <= 2 / completed",
            "average_counter_visits": "counter visits of completed records / completed",
            "satisfaction_rate": "rated 4 or 5 (of 5) / rated",
        },
        "services": [
            {
                "item_code": row.item_code,
                "service_name": row.service_name,
                "month": str(row.month),
                **figures_json(row.figures),
            }
            for row in stats.services
        ],
        "months": [
            {"month": str(month), **figures_json(figures)} for month, figures in stats.months
        ],
        "total": figures_json(stats.overall),
        "signins": [signins_json(month) for month in stats.signins],
    }


def _service_row(month: str, code: str, name: str, figures: RecordFigures) -> list[object]:
    return [
        month,
        code,
        name,
        *(figures.by_status[status] for status in STATUSES),
        figures.total,
        figures.completed_online,
        as_number(figures.online_completion_rate),
        figures.at_most_two_visits,
        as_number(figures.at_most_two_visits_share),
        figures.counter_visits,
        as_number(figures.average_counter_visits),
        figures.rated,
        figures.satisfied,
        as_number(figures.satisfaction_rate),
    ]


def services_rows(stats: Statistics, *, all_services: str) -> list[list[object]]:
    """One row per service and month, then one per month for all services (named
    ``all_services``, no item code)."""
    rows = [
        _service_row(str(row.month), row.item_code, row.service_name, row.figures)
        for row in stats.services
    ]
    rows.extend(
        _service_row(str(month), "", all_services, figures) for month, figures in stats.months
    )
    return rows


def signins_rows(stats: Statistics, *, method: str, level: str, label: Any) -> list[list[object]]:
    """Per month: a row per method, then a row per level; ``label(kind, value)`` names
    a method or level as the page does."""
    rows: list[list[object]] = []
    for month in stats.signins:
        for value, count in sorted_items(month.by_method):
            rows.append([str(month.month), method, label("method", value), count])
        for value, count in sorted_items(month.by_level):
            rows.append([str(month.month), level, label("level", value), count])
    return rows


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA):
        return "'" + text
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The CSV document: BOM, header, rows (CRLF line ends, as RFC 4180 says)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_cell(name) for name in header])
    writer.writerows([_cell(value) for value in row] for row in rows)
    return BOM + out.getvalue()
