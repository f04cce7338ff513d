"""``idp stats``: the hall's statistics (decision 46) for a month range, as the JSON of
``/staff/statistics.json`` or a line per month for all services."""

from __future__ import annotations

from fractions import Fraction

import click

from accounts.statistics.errors import InvalidStatisticsQuery
from accounts.statistics.export import to_json
from accounts.statistics.services import StatisticsQuery, StatisticsService
from idp.core.cli_support import EXIT_USAGE, echo_json, fail, with_app
from idp.core.runtime import Runtime, db


def _shown(value: Fraction | None) -> str:
    return "-" if value is None else f"{float(value):.4f}"


@click.command("stats")
@click.option("--from", "first", metavar="YYYY-MM", help="First month (UTC).")
@click.option("--to", "last", metavar="YYYY-MM", help="Last month (UTC); default this month.")
@click.option("--service", metavar="ITEM_CODE", help="One service (records only).")
@click.option("--json", "as_json", is_flag=True, help="The JSON of /staff/statistics.json.")
@with_app
def stats(first: str | None, last: str | None, service: str | None, as_json: bool) -> None:
    """The hall's statistics: records by status, online completion, counter visits,
    satisfaction by service and month, and sign-ins by method and level."""
    try:
        query = StatisticsQuery.parse(first, last, service, now=Runtime.of().clock.now())
    except InvalidStatisticsQuery as exc:
        text = exc.message % exc.params if exc.params else exc.message
        fail(f"--{exc.field}: {text}", EXIT_USAGE)
    figures = StatisticsService(db()).compute(query)
    if as_json:
        echo_json(to_json(figures))
        return
    click.echo(
        "month\trecords\tcompleted\tonline_rate\tat_most_two_visits\t"
        "average_visits\tsatisfaction\tsignins"
    )
    for (month, row), signins in zip(figures.months, figures.signins, strict=True):
        click.echo(
            f"{month}\t{row.total}\t{row.completed}\t{_shown(row.online_completion_rate)}\t"
            f"{_shown(row.at_most_two_visits_share)}\t{_shown(row.average_counter_visits)}\t"
            f"{_shown(row.satisfaction_rate)}\t{signins.total}"
        )


COMMANDS = (stats,)
