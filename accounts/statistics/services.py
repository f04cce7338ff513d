"""The hall's statistics (issue 14 item 4, decision 46): by service and month, the
service records by status, the share completed online (网上办结率), the share of
completed records that needed at most two counter visits, the average counter visits,
the satisfaction rate (服务满意率), and the sign-ins by method and by real-name level.

Definitions (the page states them too):

* A record counts in the UTC month it was created (submitted), under its item code.
* Online completion rate: completed records done online / completed records.
* At most two visits: completed records with ``counter_visits <= 2`` / completed records.
* Average counter visits: the sum of ``counter_visits`` of completed records / completed
  records.
* Satisfaction rate: rated records with a rating of ``SATISFIED`` (4) or more (of 5) /
  rated records.
* A sign-in counts in the UTC month of its ``signin`` audit event, by the methods it used
  (``password``, ``password+totp``, ``certificate``...) and the account's real-name level
  at that moment; events from before these were recorded count as "not recorded" (None).

Every figure is counted by SQL (``GROUP BY`` the month, the item code and the status,
or the month, method and level), on SQLite and PostgreSQL alike; rates are exact
``Fraction`` values, None when there is nothing to divide by.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from accounts.records.models import RecordStatus, ServiceRecord
from accounts.statistics.errors import InvalidMonth, InvalidMonthRange, InvalidService
from idp.core.audit.models import AuditEvent
from idp.core.audit.services import SUCCESS

SATISFIED = 4  # a rating of 4 or 5 (of 5) is "satisfied"
MAX_VISITS = 2  # "at most two counter visits" (最多跑两次)
MAX_MONTHS = 60  # the longest range one query covers
DEFAULT_MONTHS = 12  # without a range: the last twelve months, this one included
MAX_SERVICE = 64  # an item code's length (ServiceRecord.item_code)
SIGNIN_EVENT = "signin"
STATUSES = tuple(RecordStatus)

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only


class utc_month(FunctionElement[str]):  # noqa: N801 - a SQL function, named as one
    """``YYYY-MM`` of a UTC timestamp column, rendered without parameters so the same
    expression can be selected and grouped by on PostgreSQL."""

    type = String()
    inherit_cache = True
    name = "utc_month"


@compiles(utc_month)
def _utc_month_sqlite(element: utc_month, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps UTC datetimes as ISO text without a zone (idp.core.db.UTCDateTime)
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)})"


@compiles(utc_month, "postgresql")
def _utc_month_postgresql(element: utc_month, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char(timezone('UTC', {compiler.process(element.clauses, **kw)}), 'YYYY-MM')"


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str, *, field: str) -> Month:
        """``YYYY-MM`` (years 2000-2999); ``InvalidMonth`` naming ``field`` otherwise."""
        found = _MONTH.fullmatch(text)
        if found is None:
            raise InvalidMonth(field)
        year, month = int(found[1]), int(found[2])
        if not (2000 <= year <= 2999 and 1 <= month <= 12):
            raise InvalidMonth(field)
        return cls(year, month)

    @classmethod
    def of(cls, moment: datetime) -> Month:
        utc = moment.astimezone(UTC)
        return cls(utc.year, utc.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def until(self, last: Month) -> Iterator[Month]:
        """This month and every one after it up to ``last``, included."""
        current = self
        while current <= last:
            yield current
            current = current.plus(1)


def months_between(first: Month, last: Month) -> int:
    """How many months ``first``..``last`` spans, both included."""
    return (last.year - first.year) * 12 + last.month - first.month + 1


@dataclass(frozen=True)
class StatisticsQuery:
    """What to count: the months ``first``..``last`` (UTC, both included) and, when
    given, one service (its item code; sign-ins are never by service)."""

    first: Month
    last: Month
    service: str | None = None

    @classmethod
    def parse(
        cls,
        first: str | None,
        last: str | None,
        service: str | None,
        *,
        now: datetime,
    ) -> StatisticsQuery:
        """From the query parameters (``from``, ``to``, ``service``; empty means not
        given): without ``to`` the month of ``now``, without ``from`` the
        ``DEFAULT_MONTHS`` months up to ``to``. Raises ``InvalidStatisticsQuery``."""
        end = Month.parse(last, field="to") if last else Month.of(now)
        start = Month.parse(first, field="from") if first else end.plus(1 - DEFAULT_MONTHS)
        if start > end or months_between(start, end) > MAX_MONTHS:
            raise InvalidMonthRange(months=MAX_MONTHS)
        return cls(start, end, _service(service))

    @property
    def months(self) -> list[Month]:
        return list(self.first.until(self.last))


def _service(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > MAX_SERVICE or any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise InvalidService()
    return value


def _rate(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


@dataclass
class RecordFigures:
    """The records of one service (or of all) in one month (or a whole range)."""

    by_status: dict[RecordStatus, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    completed_online: int = 0  # completed records done online
    at_most_two_visits: int = 0  # completed records with counter_visits <= 2
    counter_visits: int = 0  # the counter visits of completed records, summed
    rated: int = 0  # records with a rating
    satisfied: int = 0  # rated SATISFIED or more

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def completed(self) -> int:
        return self.by_status[RecordStatus.COMPLETED]

    @property
    def online_completion_rate(self) -> Fraction | None:
        return _rate(self.completed_online, self.completed)

    @property
    def at_most_two_visits_share(self) -> Fraction | None:
        return _rate(self.at_most_two_visits, self.completed)

    @property
    def average_counter_visits(self) -> Fraction | None:
        return _rate(self.counter_visits, self.completed)

    @property
    def satisfaction_rate(self) -> Fraction | None:
        return _rate(self.satisfied, self.rated)

    def add(self, other: RecordFigures) -> None:
        for status, count in other.by_status.items():
            self.by_status[status] += count
        self.completed_online += other.completed_online
        self.at_most_two_visits += other.at_most_two_visits
        self.counter_visits += other.counter_visits
        self.rated += other.rated
        self.satisfied += other.satisfied


@dataclass
class ServiceMonth:
    """One service's records in one month. ``service_name``: the name its records give
    (the last in sort order when a service system renamed it)."""

    item_code: str
    service_name: str
    month: Month
    figures: RecordFigures


@dataclass
class SignIns:
    """The sign-ins of one month: by method and by real-name level (None: not recorded,
    an event from before they were audited)."""

    month: Month
    by_method: dict[str | None, int] = field(default_factory=dict)
    by_level: dict[int | None, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_method.values())


@dataclass
class Statistics:
    query: StatisticsQuery
    services: list[ServiceMonth]  # by item code, then month; only those with records
    months: list[tuple[Month, RecordFigures]]  # every month of the range, all services
    signins: list[SignIns]  # every month of the range

    @property
    def overall(self) -> RecordFigures:
        """The whole range, all services (of the query)."""
        total = RecordFigures()
        for _, figures in self.months:
            total.add(figures)
        return total

    @property
    def methods(self) -> list[str | None]:
        found = {method for month in self.signins for method in month.by_method}
        return sorted(found, key=lambda method: "" if method is None else method)

    @property
    def levels(self) -> list[int | None]:
        found = {level for month in self.signins for level in month.by_level}
        return sorted(found, key=lambda level: -1 if level is None else level)


@dataclass(frozen=True)
class ServiceName:
    item_code: str
    service_name: str


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


class StatisticsService:
    """Counts the statistics of a query (read-only; no Flask)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def compute(self, query: StatisticsQuery) -> Statistics:
        services = self._records(query)
        totals = {month: RecordFigures() for month in query.months}
        for row in services:
            totals[row.month].add(row.figures)
        return Statistics(
            query=query,
            services=services,
            months=list(totals.items()),
            signins=self._signins(query),
        )

    def services(self, query: StatisticsQuery) -> list[ServiceName]:
        """The services with records in the query's months (for the filter's list)."""
        record = ServiceRecord
        rows = self._session.execute(
            select(record.item_code, func.max(record.service_name))
            .where(*self._in_range(record.created_at, query))
            .group_by(record.item_code)
            .order_by(record.item_code)
        )
        return [ServiceName(code, name) for code, name in rows]

    def _in_range(self, column: Any, query: StatisticsQuery) -> list[ColumnElement[bool]]:
        return [column >= query.first.start(), column < query.last.plus(1).start()]

    def _records(self, query: StatisticsQuery) -> list[ServiceMonth]:
        record = ServiceRecord
        month = utc_month(record.created_at)
        conditions = self._in_range(record.created_at, query)
        if query.service is not None:
            conditions.append(record.item_code == query.service)
        statement = (
            select(
                record.item_code,
                month,
                record.status,
                func.count(),
                func.max(record.service_name),
                _count_if(record.done_online.is_(True)),
                _count_if(record.counter_visits <= MAX_VISITS),
                func.coalesce(func.sum(record.counter_visits), 0),
                func.count(record.satisfaction),
                _count_if(and_(record.satisfaction.is_not(None), record.satisfaction >= SATISFIED)),
            )
            .where(*conditions)
            .group_by(record.item_code, month, record.status)
        )
        found: dict[tuple[str, Month], ServiceMonth] = {}
        for (
            code,
            bucket,
            status,
            count,
            name,
            online,
            few,
            visits,
            rated,
            satisfied,
        ) in self._session.execute(statement):
            key = (code, Month.parse(bucket, field="month"))
            row = found.get(key)
            if row is None:
                row = found[key] = ServiceMonth(code, name, key[1], RecordFigures())
            row.service_name = max(row.service_name, name)
            figures = row.figures
            figures.by_status[RecordStatus(status)] += int(count)
            if status == RecordStatus.COMPLETED:
                figures.completed_online += int(online)
                figures.at_most_two_visits += int(few)
                figures.counter_visits += int(visits)
            figures.rated += int(rated)
            figures.satisfied += int(satisfied)
        return [found[key] for key in sorted(found, key=lambda key: (key[0], key[1]))]

    def _signins(self, query: StatisticsQuery) -> list[SignIns]:
        event = AuditEvent
        month = utc_month(event.created_at)
        method = event.details["method"].as_string()
        level = event.details["level"].as_integer()
        statement = (
            select(month, method, level, func.count())
            .where(
                event.event == SIGNIN_EVENT,
                event.outcome == SUCCESS,
                *self._in_range(event.created_at, query),
            )
            .group_by(month, method, level)
        )
        found = {bucket: SignIns(bucket) for bucket in query.months}
        for bucket, used, at_level, count in self._session.execute(statement):
            figures = found[Month.parse(bucket, field="month")]
            name = str(used) if used else None
            figures.by_method[name] = figures.by_method.get(name, 0) + int(count)
            key = None if at_level is None else int(at_level)
            figures.by_level[key] = figures.by_level.get(key, 0) + int(count)
        return list(found.values())


def as_number(value: Fraction | None, places: int = 4) -> float | None:
    """A rate for JSON and CSV: a float rounded to ``places`` decimals, or None."""
    return None if value is None else round(float(value), places)
