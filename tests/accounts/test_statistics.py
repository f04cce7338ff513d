"""The hall's statistics (issue 14 item 4, decision 46) on a seeded data set: every
figure against one computed by hand (the arithmetic in the comments), on both back
ends; the page's tables and accessible SVG charts, JSON, CSV; access from the
attacker's side; bad parameters."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from accounts.container import Accounts
from accounts.records.models import RecordStatus, ServiceRecord
from accounts.staff.services import StaffRole
from accounts.statistics.export import SERVICE_COLUMNS
from accounts.statistics.services import (
    STATUSES,
    Month,
    RecordFigures,
    StatisticsQuery,
    StatisticsService,
)
from idp.core.clock import FrozenClock
from idp.core.runtime import audit_log, db
from tests.accounts.test_counter import sign_in_with_otp
from tests.accounts.test_staff_levels import appoint_as
from tests.oauth_support import register
from tests.support import create_user, sign_in
from tests.support import text as body

S = RecordStatus
A, A_NAME = "DG-ITEM-001", "营业执照办理"
B, B_NAME = "DG-ITEM-002", "社保卡申领"
JAN, FEB = Month(2026, 1), Month(2026, 2)
RANGE = "from=2026-01&to=2026-02"
ZH = {"Accept-Language": "zh-CN"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (item code, created at (UTC), status, done online, counter visits, rating)
RECORDS: list[tuple[str, str, RecordStatus, bool, int, int | None]] = [
    # service A, January
    (A, "2026-01-01T00:00:00", S.COMPLETED, True, 0, 5),  # the month's first instant
    (A, "2026-01-31T20:00:00", S.COMPLETED, True, 1, 4),  # 1 February in Beijing: UTC counts
    (A, "2026-01-10T09:00:00", S.COMPLETED, False, 3, 2),
    (A, "2026-01-11T09:00:00", S.COMPLETED, False, 2, None),
    (A, "2026-01-12T09:00:00", S.IN_PROGRESS, False, 1, None),
    (A, "2026-01-13T09:00:00", S.REJECTED, False, 4, None),
    # service A, February
    (A, "2026-02-03T09:00:00", S.COMPLETED, True, 0, 3),
    (A, "2026-02-04T09:00:00", S.SUBMITTED, False, 0, None),
    # service B, January
    (B, "2026-01-20T09:00:00", S.COMPLETED, False, 5, 5),
    (B, "2026-01-21T09:00:00", S.ACCEPTED, False, 0, None),
    # service B, February
    (B, "2026-02-10T09:00:00", S.MORE_INFO_NEEDED, False, 1, None),
    (B, "2026-02-28T23:59:59", S.COMPLETED, True, 1, 1),  # the month's last second
    # outside January-February: never counted
    (A, "2025-12-31T23:59:59", S.COMPLETED, True, 0, 5),
    (B, "2026-03-01T00:00:00", S.COMPLETED, False, 9, 1),
]

# (created at, details, outcome) of signin audit events seeded beside the staff
# member's own sign-in (password + authenticator app at level 4, on 15 February)
SIGNINS: list[tuple[str, dict[str, Any], str]] = [
    ("2026-01-05T08:00:00", {"amr": ["pwd"], "method": "password", "level": 3}, "success"),
    ("2026-01-06T08:00:00", {"amr": ["pwd"], "method": "password", "level": 3}, "success"),
    (
        "2026-01-07T08:00:00",
        {"amr": ["pwd", "otp", "mfa"], "method": "password+totp", "level": 4},
        "success",
    ),
    ("2026-01-08T08:00:00", {"amr": ["hwk"], "method": "certificate", "level": 5}, "success"),
    ("2026-01-09T08:00:00", {"amr": ["pwd"]}, "success"),  # before method and level
    ("2026-01-10T08:00:00", {"amr": ["pwd"], "method": "password", "level": 3}, "failure"),
    ("2026-02-01T00:00:00", {"amr": ["fed"], "method": "federation", "level": 3}, "success"),
    ("2026-02-02T08:00:00", {"amr": ["pwd"], "method": "password", "level": 2}, "success"),
    ("2026-03-01T00:00:00", {"amr": ["pwd"], "method": "password", "level": 3}, "success"),
]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(at("2026-02-15T10:00:00"))


def seed(app: Flask, clock: FrozenClock) -> None:
    register(app, "svc")
    holder = create_user(app, "holder")
    with app.app_context():
        session = db()
        for number, (code, created, status, online, visits, rating) in enumerate(RECORDS):
            session.add(
                ServiceRecord(
                    client_id="svc",
                    external_id=f"case-{number}",
                    user_id=holder.id,
                    subject_sub=holder.public_id,
                    service_name=A_NAME if code == A else B_NAME,
                    item_code=code,
                    status=status,
                    done_online=online,
                    counter_visits=visits,
                    satisfaction=rating,
                    created_at=at(created),
                    updated_at=at(created),
                )
            )
        session.commit()
        now = clock.now()
        for created, details, outcome in SIGNINS:
            clock.current = at(created)
            audit_log().record("signin", outcome, subject="user:seeded", details=details)
        clock.current = now
        session.commit()


@pytest.fixture
def seeded(app: Flask, clock: FrozenClock) -> None:
    seed(app, clock)


@pytest.fixture
def staff(app: Flask, client: FlaskClient, seeded: None, clock: FrozenClock) -> FlaskClient:
    """``stats`` may read the statistics, signed in with password and authenticator app."""
    create_user(app, "stats")
    appoint_as(app, "stats", StaffRole.STATISTICS_VIEWER)
    sign_in_with_otp(app, client, clock, "stats")
    return client


def compute(app: Flask, first: Month = JAN, last: Month = FEB, service: str | None = None) -> Any:
    with app.app_context():
        return StatisticsService(db()).compute(StatisticsQuery(first, last, service))


def statuses(**counts: int) -> dict[RecordStatus, int]:
    return {status: counts.get(status.value, 0) for status in STATUSES}


def rates(figures: RecordFigures) -> tuple[Any, ...]:
    return (
        figures.online_completion_rate,
        figures.at_most_two_visits_share,
        figures.average_counter_visits,
        figures.satisfaction_rate,
    )


# -- the figures -----------------------------------------------------------------------


def test_records_by_service_and_month_match_the_hand_counts(app: Flask, staff: FlaskClient) -> None:
    stats = compute(app)
    rows = {(row.item_code, row.month): row for row in stats.services}
    assert list(rows) == [(A, JAN), (A, FEB), (B, JAN), (B, FEB)]
    assert {row.service_name for row in stats.services if row.item_code == B} == {B_NAME}

    a_jan = rows[A, JAN].figures
    assert a_jan.by_status == statuses(completed=4, in_progress=1, rejected=1)
    assert a_jan.total == 6
    assert rates(a_jan) == (
        Fraction(2, 4),  # done online: the first two of the four completed
        Fraction(3, 4),  # visits 0, 1, 3, 2: three of them at most 2
        Fraction(6, 4),  # (0 + 1 + 3 + 2) / 4; in progress and rejected do not count
        Fraction(2, 3),  # ratings 5, 4, 2: two of three rated 4 or more
    )

    a_feb = rows[A, FEB].figures
    assert a_feb.by_status == statuses(completed=1, submitted=1)
    assert rates(a_feb) == (
        Fraction(1, 1),  # the one completed record, online
        Fraction(1, 1),  # 0 visits
        Fraction(0, 1),  # 0 / 1
        Fraction(0, 1),  # rated 3: not satisfied
    )

    b_jan = rows[B, JAN].figures
    assert b_jan.by_status == statuses(completed=1, accepted=1)
    assert rates(b_jan) == (
        Fraction(0, 1),  # completed at the counter
        Fraction(0, 1),  # 5 visits
        Fraction(5, 1),  # 5 / 1
        Fraction(1, 1),  # rated 5
    )

    b_feb = rows[B, FEB].figures
    assert b_feb.by_status == statuses(completed=1, more_info_needed=1)
    assert rates(b_feb) == (
        Fraction(1, 1),  # online, created in the month's last second
        Fraction(1, 1),  # 1 visit
        Fraction(1, 1),  # 1 / 1
        Fraction(0, 1),  # rated 1
    )


def test_month_totals_and_the_whole_range(app: Flask, seeded: None) -> None:
    stats = compute(app)
    months = dict(stats.months)
    assert list(months) == [JAN, FEB]
    jan, feb = months[JAN], months[FEB]
    assert (jan.total, jan.completed) == (8, 5)  # A 6 + B 2 records; A 4 + B 1 completed
    assert rates(jan) == (
        Fraction(2, 5),  # A 2 + B 0 online, of 5 completed
        Fraction(3, 5),  # A 3 + B 0 with at most two visits
        Fraction(11, 5),  # (A 6 + B 5) visits / 5
        Fraction(3, 4),  # (A 2 + B 1) satisfied / (A 3 + B 1) rated
    )
    assert (feb.total, feb.completed) == (4, 2)
    assert rates(feb) == (
        Fraction(2, 2),  # both completed records online
        Fraction(2, 2),  # 0 and 1 visits
        Fraction(1, 2),  # (0 + 1) / 2
        Fraction(0, 2),  # rated 3 and 1
    )
    total = stats.overall
    assert (total.total, total.completed) == (12, 7)
    assert rates(total) == (
        Fraction(4, 7),  # (2 + 2) / (5 + 2)
        Fraction(5, 7),  # (3 + 2) / 7
        Fraction(12, 7),  # (11 + 1) / 7
        Fraction(3, 6),  # (3 + 0) / (4 + 2)
    )


def test_a_month_without_records_has_no_rates(app: Flask, seeded: None) -> None:
    stats = compute(app, Month(2025, 11), Month(2025, 11))
    assert stats.services == []
    ((month, figures),) = stats.months
    assert month == Month(2025, 11)
    assert figures.total == 0
    assert rates(figures) == (None, None, None, None)  # nothing to divide by


def test_one_service(app: Flask, seeded: None) -> None:
    stats = compute(app, service=B)
    assert [(row.item_code, row.month) for row in stats.services] == [(B, JAN), (B, FEB)]
    jan = dict(stats.months)[JAN]
    assert jan.total == 2
    assert rates(jan) == (Fraction(0, 1), Fraction(0, 1), Fraction(5, 1), Fraction(1, 1))


def test_signins_by_method_and_level(app: Flask, staff: FlaskClient) -> None:
    jan, feb = compute(app).signins
    assert jan.month == JAN
    # five successful sign-ins (the failure and the March one do not count)
    assert jan.by_method == {"password": 2, "password+totp": 1, "certificate": 1, None: 1}
    assert jan.by_level == {3: 2, 4: 1, 5: 1, None: 1}
    assert jan.total == 5
    # the seeded two, and the staff member's own sign-in through the flow: password and
    # authenticator app, at their own level 4
    assert feb.by_method == {"federation": 1, "password": 1, "password+totp": 1}
    assert feb.by_level == {3: 1, 2: 1, 4: 1}
    # sign-ins are never by service
    assert compute(app, service=A).signins == compute(app).signins


def test_the_query_parameters() -> None:
    now = at("2026-02-15T10:00:00")
    default = StatisticsQuery.parse(None, None, None, now=now)
    assert (default.first, default.last, default.service) == (Month(2025, 3), FEB, None)
    assert len(default.months) == 12
    assert StatisticsQuery.parse("2026-01", "", "", now=now).last == FEB
    assert StatisticsQuery.parse("", "2026-01", "", now=now).first == Month(2025, 2)
    assert StatisticsQuery.parse("2021-03", "2026-02", A, now=now).service == A  # 60 months


# -- the page, JSON and CSV ------------------------------------------------------------


def test_the_page_shows_tables_and_accessible_charts(staff: FlaskClient) -> None:
    page = staff.get(f"/staff/statistics?{RANGE}", headers=ZH)
    assert page.status_code == 200
    html = body(page)
    assert "网上办事大厅统计" in html
    svgs = re.findall(r"<svg\b[^>]*>.*?</svg>", html, re.S)
    assert len(svgs) == 7
    for svg in svgs:
        opening = svg[: svg.index(">")]
        assert 'role="img"' in opening
        title_id, desc_id = re.search(r'aria-labelledby="([^" ]+) ([^"]+)"', opening).groups()  # type: ignore[union-attr]
        assert f'<title id="{title_id}">' in svg
        assert f'<desc id="{desc_id}">' in svg
    assert len(set(re.findall(r'<title id="([^"]+)"', html))) == 7  # ids unique on the page
    # the satisfaction chart describes its numbers, and its table gives them beside it
    satisfaction = next(svg for svg in svgs if "chart-satisfaction" in svg)
    assert "2026-01: 75.0%" in satisfaction  # 3 / 4
    assert "2026-02: 0.0%" in satisfaction  # 0 / 2
    assert "<td>75.0%</td>" in html
    assert "<td>2.20</td>" in html  # January's average visits, 11 / 5
    assert A_NAME in html
    assert B_NAME in html
    assert "密码 + " in html  # the methods are named


def test_the_page_in_english(staff: FlaskClient) -> None:
    html = body(staff.get(f"/staff/statistics?{RANGE}"))  # the test client asks for English
    assert "Statistics of the service hall" in html
    assert "Records rated 4 or 5 (of 5), divided by rated records." in html
    assert "Password + Authenticator app" in html
    assert "Not recorded" in html


def test_json(staff: FlaskClient) -> None:
    response = staff.get(f"/staff/statistics.json?{RANGE}&service={B}")
    assert response.status_code == 200
    data = response.get_json()
    assert (data["from"], data["to"], data["service"]) == ("2026-01", "2026-02", B)
    b_jan, b_feb = data["services"]
    assert (b_jan["item_code"], b_jan["service_name"], b_jan["month"]) == (B, B_NAME, "2026-01")
    assert b_jan["records"] == {
        "submitted": 0,
        "accepted": 1,
        "in_progress": 0,
        "more_info_needed": 0,
        "completed": 1,
        "rejected": 0,
        "total": 2,
    }
    assert b_jan["online_completion_rate"] == 0.0  # 0 / 1
    assert b_jan["average_counter_visits"] == 5.0  # 5 / 1
    assert b_feb["satisfaction_rate"] == 0.0  # 0 / 1
    total = data["total"]
    assert (total["completed"], total["counter_visits"]) == (2, 6)  # 5 + 1 visits
    assert total["average_counter_visits"] == 3.0  # 6 / 2
    assert total["satisfaction_rate"] == 0.5  # 1 / 2
    jan = data["signins"][0]
    assert jan["by_method"] == {
        "not_recorded": 1,
        "certificate": 1,
        "password": 2,
        "password+totp": 1,
    }
    assert jan["by_level"] == {"not_recorded": 1, "3": 2, "4": 1, "5": 1}


def test_json_rates_are_rounded_fractions(staff: FlaskClient) -> None:
    data = staff.get(f"/staff/statistics.json?{RANGE}").get_json()
    assert data["total"]["online_completion_rate"] == round(4 / 7, 4)  # 0.5714
    assert data["months"][0]["average_counter_visits"] == 2.2  # 11 / 5


def csv_rows(response: Any) -> list[list[str]]:
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())  # the BOM Excel looks for
    return list(csv.reader(io.StringIO(raw.decode("utf-8").removeprefix("\ufeff"))))


def test_csv_by_service_and_month(staff: FlaskClient) -> None:
    response = staff.get(f"/staff/statistics.csv?{RANGE}&table=services", headers=ZH)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert len(header) == len(SERVICE_COLUMNS)
    assert header[:3] == ["月份", "事项编码", "服务"]
    by_key = {
        (row[0], row[1]): dict(zip([key for key, _ in SERVICE_COLUMNS], row, strict=True))
        for row in rows
    }
    a_jan = by_key["2026-01", A]
    assert a_jan["service_name"] == A_NAME
    assert (a_jan["records_completed"], a_jan["records_total"]) == ("4", "6")
    assert a_jan["online_completion_rate"] == "0.5"  # 2 / 4
    assert a_jan["satisfaction_rate"] == "0.6667"  # 2 / 3
    everything = by_key["2026-01", ""]  # all services in January
    assert everything["service_name"] == "全部服务"
    assert everything["average_counter_visits"] == "2.2"  # 11 / 5
    assert len(rows) == 4 + 2  # four service months, two month totals


def test_csv_of_signins(staff: FlaskClient) -> None:
    response = staff.get(f"/staff/statistics.csv?{RANGE}&table=signins", headers=ZH)
    header, *rows = csv_rows(response)
    assert header == ["月份", "分类", "方式或等级", "登录次数"]
    january = [row[1:] for row in rows if row[0] == "2026-01"]
    assert january == [
        ["登录方式", "未记录", "1"],
        ["登录方式", "数字证书", "1"],
        ["登录方式", "密码", "2"],
        ["登录方式", "密码 + 身份验证器应用", "1"],
        ["可信等级", "未记录", "1"],
        ["可信等级", "3 级", "2"],
        ["可信等级", "4 级", "1"],
        ["可信等级", "5 级", "1"],
    ]
    english = csv_rows(staff.get(f"/staff/statistics.csv?{RANGE}&table=signins"))
    assert ["2026-02", "Method", "Provincial hall account", "1"] in english


def test_csv_cells_never_start_a_formula(app: Flask, staff: FlaskClient) -> None:
    with app.app_context():
        db().add(
            ServiceRecord(
                client_id="svc",
                external_id="evil",
                user_id=Accounts.of().account_service().find_by_username("holder").id,  # type: ignore[union-attr]
                subject_sub="x",
                service_name='=HYPERLINK("https://evil.example","点击")',
                item_code="@SUM(A1)",
                status=S.SUBMITTED,
                created_at=at("2026-01-15T00:00:00"),
            )
        )
        db().commit()
    _, *rows = csv_rows(staff.get(f"/staff/statistics.csv?{RANGE}"))
    (evil,) = [row for row in rows if "HYPERLINK" in row[2]]
    assert evil[1] == "'@SUM(A1)"
    assert evil[2].startswith("'=HYPERLINK")


# -- access ----------------------------------------------------------------------------

PATHS = ("/staff/statistics", "/staff/statistics.json", "/staff/statistics.csv")


@pytest.mark.parametrize("path", PATHS)
def test_signed_out_goes_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", PATHS)
def test_a_citizen_is_refused(app: Flask, client: FlaskClient, seeded: None, path: str) -> None:
    sign_in(client, "holder")
    response = client.get(path)
    assert response.status_code == 403
    assert A_NAME not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", PATHS)
def test_staff_with_another_role_are_refused(
    app: Flask, client: FlaskClient, seeded: None, clock: FrozenClock, path: str
) -> None:
    create_user(app, "clerk")
    appoint_as(app, "clerk", StaffRole.COUNTER_VERIFIER, StaffRole.CLIENT_ADMINISTRATOR)
    sign_in_with_otp(app, client, clock, "clerk")
    response = client.get(path)
    assert response.status_code == 403
    assert A_NAME not in response.get_data(as_text=True)


def test_the_role_without_a_second_factor_is_refused(
    app: Flask, client: FlaskClient, seeded: None
) -> None:
    create_user(app, "stats")
    appoint_as(app, "stats", StaffRole.STATISTICS_VIEWER)
    sign_in(client, "stats")
    response = client.get("/staff/statistics")
    assert response.status_code == 403
    assert "authenticator app" in body(response)


def test_the_json_refusal_is_json(app: Flask, client: FlaskClient, seeded: None) -> None:
    sign_in(client, "holder")
    response = client.get("/staff/statistics.json")
    assert response.status_code == 403
    assert response.get_json()["error"] == "access_denied"


def test_the_role_ended_refuses_at_once(app: Flask, staff: FlaskClient) -> None:
    assert staff.get("/staff/statistics").status_code == 200
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("stats")
        assert user is not None
        Accounts.of().staff_service().revoke(user, actor="test")
    assert staff.get("/staff/statistics").status_code == 403


# -- bad parameters --------------------------------------------------------------------

BAD = [
    ("from=2026-13", "from"),
    ("to=2026-00", "to"),
    ("from=2026-1", "from"),
    ("from=26-01", "from"),
    ("from=1999-12", "from"),
    ("from=\uff12\uff10\uff12\uff16-\uff10\uff11", "from"),  # full-width digits
    ("from=2026-03&to=2026-02", "from"),  # backwards
    ("from=2020-01&to=2026-02", "from"),  # 74 months
    ("service=" + "x" * 65, "service"),
    ("service=a%0Ab", "service"),
]


@pytest.mark.parametrize(("query", "field"), BAD)
def test_bad_parameters_are_a_clear_400(staff: FlaskClient, query: str, field: str) -> None:
    page = staff.get(f"/staff/statistics?{query}")
    assert page.status_code == 400
    assert "<html" in body(page)
    answer = staff.get(f"/staff/statistics.json?{query}")
    assert answer.status_code == 400
    error = answer.get_json()
    assert (error["error"], error["field"]) == ("invalid_request", field)
    assert error["error_description"]
    assert staff.get(f"/staff/statistics.csv?{query}").status_code == 400


def test_bad_month_message(staff: FlaskClient) -> None:
    error = staff.get("/staff/statistics.json?from=2026-13").get_json()
    assert error["error_description"] == "A month is written YYYY-MM, for example 2026-03."
    page = body(staff.get("/staff/statistics?from=2026-13", headers=ZH))
    assert "月份的写法为 YYYY-MM，例如 2026-03。" in page  # noqa: RUF001 - Chinese punctuation


def test_an_unknown_csv_table_is_a_400(staff: FlaskClient) -> None:
    assert staff.get("/staff/statistics.csv?table=users").status_code == 400


def test_the_csv_columns_follow_the_statuses() -> None:
    keys = [key for key, _ in SERVICE_COLUMNS]
    assert keys[3:9] == [f"records_{status.value}" for status in STATUSES]


# -- the command -----------------------------------------------------------------------


def test_the_stats_command(app: Flask, seeded: None) -> None:
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["stats", "--from", "2026-01", "--to", "2026-02", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["total"]["satisfaction_rate"] == 0.5  # 3 / 6
    assert [row["item_code"] for row in data["services"]] == [A, A, B, B]
    lines = runner.invoke(args=["stats", "--from", "2026-01", "--to", "2026-02"]).output
    # January: 8 records, 5 completed, 2/5, 3/5, 11/5, 3/4, five sign-ins
    assert "2026-01\t8\t5\t0.4000\t0.6000\t2.2000\t0.7500\t5" in lines.splitlines()
    refused = runner.invoke(args=["stats", "--from", "2026-13"])
    assert refused.exit_code == 2
    assert "--from: A month is written YYYY-MM" in refused.output
