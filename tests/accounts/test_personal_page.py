"""The personal page's security sections (issue 14 item 1): sessions, activity and
"This wasn't me", recent re-authentication, deletion with a grace period."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from accounts.container import Accounts
from accounts.people.cli import users
from accounts.people.models import User
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime, audit_log, db
from idp.core.sessions import session_ended
from idp.oauth.models import Grant
from tests.oauth.test_logout import owed, rp_logout_client, signed_in_at
from tests.support import STRONG_PASSWORD, create_user, csrf_token, sign_in, submit
from tests.support import text as body

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
HANDLE = re.compile(r'name="session" value="([0-9a-f]{32})"')
EVENT = re.compile(r'name="event" value="(\d+)"')
NEW_PASSWORD = "a different and long passphrase"


def browser(app: Flask, agent: str, address: str = "198.51.100.7") -> FlaskClient:
    client = app.test_client()
    client.environ_base.update(HTTP_USER_AGENT=agent, REMOTE_ADDR=address)
    return client


def signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


def post_form(client: FlaskClient, page: str, url: str, **data: str) -> Any:
    html = body(client.get(page))
    return client.post(url, data={"csrf_token": csrf_token(html), **data})


@pytest.fixture
def ended(app: Flask) -> Iterator[list[dict[str, Any]]]:
    """The data of every session that ended through the signal back-channel logout
    listens to."""
    seen: list[dict[str, Any]] = []

    def receive(sender: Flask, data: dict[str, Any], **_: Any) -> None:
        seen.append(data)

    session_ended.connect(receive, sender=app, weak=False)
    yield seen
    session_ended.disconnect(receive, sender=app)


# == sessions ==


def test_the_sessions_page_lists_each_session_with_device_address_and_times(
    app: Flask,
) -> None:
    create_user(app)
    here = browser(app, CHROME_WINDOWS, "198.51.100.7")
    there = browser(app, SAFARI_IPHONE, "203.0.113.9")
    assert sign_in(here).status_code == 302
    assert sign_in(there).status_code == 302
    html = body(here.get("/account/sessions"))
    assert "Chrome on Windows" in html
    assert "Safari on iOS" in html
    assert "198.51.100.7" in html
    assert "203.0.113.9" in html
    assert html.count("(this browser)</strong>") == 1
    # this browser first
    assert html.index("Chrome on Windows") < html.index("Safari on iOS")
    assert len(HANDLE.findall(html)) == 2
    # the handle is neither the cookie nor the store key
    cookie = here.get_cookie("idp_session")
    assert cookie is not None
    assert cookie.value not in html
    assert "UTC" in html


def test_signing_out_one_session_ends_it_through_the_logout_path(
    app: Flask, ended: list[dict[str, Any]]
) -> None:
    create_user(app)
    rp = rp_logout_client(app, backchannel_logout_uri="https://rp.example.gov.cn/bc")
    here = browser(app, CHROME_WINDOWS)
    there = browser(app, FIREFOX_LINUX)
    sign_in(here)
    signed_in_at(there, rp)  # a service signed in through the other session
    html = body(here.get("/account/sessions"))
    row = html[html.index("Firefox on Linux") :]
    handle = HANDLE.search(row)
    assert handle
    response = here.post(
        "/account/sessions/end",
        data={"csrf_token": csrf_token(html), "session": handle.group(1)},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/sessions"
    assert not signed_in(there)
    assert signed_in(here)
    assert [data["uid"] for data in ended] == [ended[0]["uid"]]
    assert [delivery.client_id for delivery in owed(app)] == [rp.client_id]
    with app.app_context():
        assert db().scalar(select(AuditEvent).where(AuditEvent.event == "session.end"))


def test_a_session_of_another_user_is_refused(app: Flask, ended: list[dict[str, Any]]) -> None:
    create_user(app)
    create_user(app, "bob")
    alice = browser(app, CHROME_WINDOWS)
    bob = browser(app, FIREFOX_LINUX)
    sign_in(alice)
    sign_in(bob, "bob")
    bobs_handle = HANDLE.search(body(bob.get("/account/sessions")))
    assert bobs_handle
    for handle in (bobs_handle.group(1), "0" * 32, "not-a-handle", ""):
        response = post_form(alice, "/account/sessions", "/account/sessions/end", session=handle)
        assert response.status_code == 404
        assert "already ended or is not yours" in body(response)
    assert signed_in(bob)
    assert signed_in(alice)
    assert ended == []


def test_signing_out_this_session_from_the_list_signs_out(app: Flask) -> None:
    create_user(app)
    here = browser(app, CHROME_WINDOWS)
    sign_in(here)
    html = body(here.get("/account/sessions"))
    handle = HANDLE.search(html)
    assert handle
    response = here.post(
        "/account/sessions/end", data={"csrf_token": csrf_token(html), "session": handle.group(1)}
    )
    assert response.headers["Location"] == "/login"
    assert not signed_in(here)


def test_everywhere_else_keeps_this_one_and_everywhere_ends_all(
    app: Flask, ended: list[dict[str, Any]]
) -> None:
    create_user(app)
    clients = [browser(app, agent) for agent in (CHROME_WINDOWS, FIREFOX_LINUX, SAFARI_IPHONE)]
    for client in clients:
        sign_in(client)
    here = clients[0]
    response = post_form(here, "/account/sessions", "/account/sessions/end-others")
    assert response.status_code == 302
    assert [signed_in(client) for client in clients] == [True, False, False]
    assert len(ended) == 2
    again = browser(app, FIREFOX_LINUX)
    sign_in(again)
    response = post_form(here, "/account/sessions", "/account/sessions/end-all")
    assert response.headers["Location"] == "/login"
    assert not signed_in(here)
    assert not signed_in(again)
    assert len(ended) == 4


def test_session_actions_need_the_csrf_token(app: Flask) -> None:
    create_user(app)
    here = browser(app, CHROME_WINDOWS)
    there = browser(app, FIREFOX_LINUX)
    sign_in(here)
    sign_in(there)
    handle = HANDLE.findall(body(here.get("/account/sessions")))
    for url, data in (
        ("/account/sessions/end", {"session": handle[1]}),
        ("/account/sessions/end-others", {}),
        ("/account/sessions/end-all", {}),
    ):
        assert here.post(url, data=data).status_code in {302, 400}
    assert signed_in(here)
    assert signed_in(there)


# == activity ==


def test_the_activity_history_names_events_for_people_newest_first(
    app: Flask, clock: FrozenClock
) -> None:
    create_user(app)
    here = browser(app, CHROME_WINDOWS, "198.51.100.7")
    assert sign_in(here, password="wrong password!").status_code == 401
    clock.advance(60)
    sign_in(here)
    submit(
        here,
        "/account/password",
        {
            "current_password": STRONG_PASSWORD,
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
    )
    html = body(here.get("/account/activity"))
    assert "Failed sign-in: wrong password" in html
    assert "Signed in" in html
    assert "Password changed" in html
    assert "Chrome on Windows, 198.51.100.7" in html
    assert "signin.password" not in html  # no codes
    assert "password.change" not in html
    assert html.index("Password changed") < html.index("Signed in")
    assert html.index("Signed in") < html.index("Failed sign-in")


def test_the_activity_history_is_in_chinese_by_default(app: Flask) -> None:
    create_user(app)
    here = browser(app, CHROME_WINDOWS)
    sign_in(here)
    here.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    html = body(here.get("/account/activity"))
    assert "账号活动记录" in html
    assert "登录" in html
    assert "Signed in" not in html


def test_the_activity_history_is_paged_and_only_the_holders(app: Flask, clock: FrozenClock) -> None:
    create_user(app)
    create_user(app, "bob")
    bob = browser(app, FIREFOX_LINUX)
    sign_in(bob, "bob")
    here = browser(app, CHROME_WINDOWS)
    for _ in range(24):
        clock.advance(1)
        assert sign_in(here, form_url="/login?reauth=1").status_code == 302
    first = body(here.get("/account/activity"))
    assert first.count("<tr>") == 20 + 1  # the header row
    older = re.search(r'href="/account/activity\?before=(\d+)"', first)
    assert older
    second = body(here.get(f"/account/activity?before={older.group(1)}"))
    # 24 sign-ins and the registration: 5 on the second page
    assert second.count("<tr>") == 5 + 1
    assert "Account created" in second
    assert "Firefox" not in first + second  # bob's sign-in is not alice's history
    for bad in ("x", "-1", "1e3", "9" * 30, "١٢"):
        assert here.get(f"/account/activity?before={bad}").status_code == 400


def _report(client: FlaskClient, label: str) -> Any:
    html = body(client.get("/account/activity"))
    row = html[html.index(label) :]
    seq = EVENT.search(row)
    assert seq
    return client.post(
        "/account/activity/not-me", data={"csrf_token": csrf_token(html), "event": seq.group(1)}
    )


def test_this_wasnt_me_ends_every_session_revokes_tokens_and_asks_for_a_new_password(
    app: Flask, ended: list[dict[str, Any]]
) -> None:
    create_user(app)
    rp = rp_logout_client(app, backchannel_logout_uri="https://rp.example.gov.cn/bc")
    intruder = browser(app, FIREFOX_LINUX, "203.0.113.66")
    signed_in_at(intruder, rp, scope="openid offline_access")
    owner = browser(app, CHROME_WINDOWS)
    sign_in(owner)
    response = _report(owner, "Firefox on Linux")
    assert response.status_code == 200
    html = body(response)
    assert "Your account has been secured" in html
    assert "All 2 sessions of your account have been ended" in html
    assert "choose a new password" in html
    assert not signed_in(owner)
    assert not signed_in(intruder)
    assert len(ended) == 2
    assert [delivery.client_id for delivery in owed(app)] == [rp.client_id]
    with app.app_context():
        grants = db().scalars(select(Grant)).all()
        assert grants
        assert all(grant.revoked_at is not None for grant in grants)
        report = db().scalar(select(AuditEvent).where(AuditEvent.event == "account.not_me"))
        assert report is not None
        assert report.details["new_password"] is True

    # the next sign-in (whoever has the password) must choose a new one first
    again = browser(app, CHROME_WINDOWS)
    response = sign_in(again)
    assert response.headers["Location"] == "/login/new-password"
    assert not signed_in(again)
    assert again.get("/account/password").status_code == 302
    same = submit(
        again,
        "/login/new-password",
        {"password": STRONG_PASSWORD, "password_confirm": STRONG_PASSWORD},
    )
    assert same.status_code == 400
    assert "different from your previous one" in body(same)
    done = submit(
        again, "/login/new-password", {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    )
    assert done.status_code == 302
    assert signed_in(again)
    assert sign_in(browser(app, FIREFOX_LINUX)).status_code == 401  # the old password
    assert sign_in(browser(app, FIREFOX_LINUX), password=NEW_PASSWORD).status_code == 302


def test_this_wasnt_me_refuses_another_users_event_and_garbage(
    app: Flask, ended: list[dict[str, Any]]
) -> None:
    create_user(app)
    create_user(app, "bob")
    bob = browser(app, FIREFOX_LINUX)
    sign_in(bob, "bob")
    with app.app_context():
        bobs = db().scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.event == "signin"))
    alice = browser(app, CHROME_WINDOWS)
    sign_in(alice)
    for event, status in ((str(bobs), 404), ("999999", 404), ("abc", 400), ("", 404)):
        response = post_form(alice, "/account/activity", "/account/activity/not-me", event=event)
        assert response.status_code == status
    assert signed_in(alice)
    assert signed_in(bob)
    assert ended == []
    # without the CSRF token nothing happens
    assert alice.post("/account/activity/not-me", data={"event": str(bobs)}).status_code in {
        302,
        400,
    }
    assert signed_in(alice)


# == recent re-authentication ==


@pytest.fixture
def stale(app: Flask, clock: FrozenClock) -> FlaskClient:
    """A session signed in long enough ago (a stolen cookie, say)."""
    create_user(app)
    client = browser(app, CHROME_WINDOWS)
    sign_in(client)
    clock.advance(Runtime.of(app).settings.reauth_max_age_seconds + 1)
    return client


def test_a_stolen_old_session_cannot_change_the_password(app: Flask, stale: FlaskClient) -> None:
    page = stale.get("/account/password")
    assert page.status_code == 302
    assert page.headers["Location"] == "/account/reauth?next=/account/password"
    token = csrf_token(body(stale.get("/account")))
    for guess in ("123456", STRONG_PASSWORD):  # even with the right current password
        response = stale.post(
            "/account/password",
            data={
                "csrf_token": token,
                "current_password": guess,
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            },
        )
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/account/reauth")
    wrong = submit(stale, "/account/reauth?next=/account/password", {"password": "guess123!"})
    assert wrong.status_code == 401
    assert 'aria-invalid="true"' in body(wrong)
    assert stale.get("/account/password").status_code == 302  # still stale
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert Accounts.of().account_service().confirm_password(user, STRONG_PASSWORD)
        assert db().scalar(select(AuditEvent).where(AuditEvent.event == "password.change")) is None


def test_reauthentication_returns_to_the_change(app: Flask, stale: FlaskClient) -> None:
    response = submit(
        stale,
        "/account/reauth",
        {"password": STRONG_PASSWORD, "next": "/account/password"},
        form_url="/account/reauth?next=/account/password",
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/password"
    assert stale.get("/account/password").status_code == 200
    with app.app_context():
        assert db().scalar(select(AuditEvent).where(AuditEvent.event == "signin.reauth"))


def test_reauthentication_never_leaves_the_site(stale: FlaskClient) -> None:
    response = submit(
        stale,
        "/account/reauth",
        {"password": STRONG_PASSWORD, "next": "https://evil.example/x"},
    )
    assert response.status_code == 302
    assert not response.headers["Location"].startswith("https://evil")


def test_reauthentication_is_throttled(app: Flask, stale: FlaskClient) -> None:
    statuses = [
        submit(stale, "/account/reauth", {"password": f"guess number {n}"}).status_code
        for n in range(8)
    ]
    assert statuses[0] == 401
    assert 429 in statuses


def test_a_stale_session_cannot_make_recovery_codes_or_enrol_an_app(
    app: Flask, stale: FlaskClient
) -> None:
    response = post_form(stale, "/account", "/account/recovery-codes")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/reauth?next=/account"
    enrol = stale.get("/account/totp")
    assert enrol.headers["Location"] == "/account/reauth?next=/account/totp"
    assert stale.get("/account/totp/disable").status_code == 302
    with app.app_context():
        assert (
            db().scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event.in_(["recovery_codes.regenerate", "totp.enroll"]))
            )
            == 0
        )


def _with_an_authenticator_app(app: Flask, clock: FrozenClock) -> pyotp.TOTP:
    """alice enrols an authenticator app (after she signed in); its code generator."""
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        totp = Accounts.of().totp_service()
        secret = totp.begin_enrollment(user).secret
        totp.confirm_enrollment(user, pyotp.TOTP(secret).at(clock.now()))
    clock.advance(30)  # the enrolment's code is used up
    return pyotp.TOTP(secret)


def test_reauthentication_asks_for_the_second_factor_too(
    app: Flask, stale: FlaskClient, clock: FrozenClock
) -> None:
    """A stolen session and the password are not enough where the account has an
    authenticator app: the code is asked for, checked, and good once."""
    app_codes = _with_an_authenticator_app(app, clock)
    form = "/account/reauth?next=/account/totp/disable"
    assert 'name="otp"' in body(stale.get(form))
    for code, status in (("", 400), ("000000", 401)):
        answer = submit(stale, "/account/reauth", {"password": STRONG_PASSWORD, "otp": code})
        assert answer.status_code == status
        assert 'id="otp-error"' in body(answer)
        assert stale.get("/account/totp/disable").status_code == 302  # still stale
    code = app_codes.at(clock.now())
    right = submit(
        stale,
        "/account/reauth",
        {"password": STRONG_PASSWORD, "otp": code, "next": "/account/totp/disable"},
        form_url=form,
    )
    assert right.status_code == 302
    assert right.headers["Location"] == "/account/totp/disable"
    assert stale.get("/account/totp/disable").status_code == 200
    with app.app_context():
        event = db().scalar(select(AuditEvent).where(AuditEvent.event == "signin.reauth"))
        assert event is not None
        assert event.details["amr"] == ["pwd", "otp"]
    replayed = submit(stale, "/account/reauth", {"password": STRONG_PASSWORD, "otp": code})
    assert replayed.status_code == 401  # the same code, still in its time step: good once


def test_reauthentication_without_a_second_factor_asks_no_code(stale: FlaskClient) -> None:
    assert 'name="otp"' not in body(stale.get("/account/reauth?next=/account/password"))


def test_reauth_needs_a_session(client: FlaskClient) -> None:
    response = client.get("/account/reauth?next=/account/password")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# == deletion ==


def _user(app: Flask) -> User | None:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        if user is not None:
            db().expunge(user)
        return user


def test_deletion_needs_a_recent_sign_in_and_the_confirmation(
    app: Flask, stale: FlaskClient
) -> None:
    assert stale.get("/account/delete").headers["Location"] == (
        "/account/reauth?next=/account/delete"
    )
    submit(stale, "/account/reauth", {"password": STRONG_PASSWORD})
    page = stale.get("/account/delete")
    assert page.status_code == 200
    assert "What is kept" in body(page)
    unticked = submit(stale, "/account/delete", {})
    assert unticked.status_code == 400
    assert 'aria-describedby="confirm-error"' in body(unticked)
    user = _user(app)
    assert user is not None
    assert user.deletion_due_at is None


def test_deletion_is_scheduled_signs_out_everywhere_and_can_be_cancelled(
    app: Flask, clock: FrozenClock, ended: list[dict[str, Any]]
) -> None:
    create_user(app)
    here = browser(app, CHROME_WINDOWS)
    there = browser(app, FIREFOX_LINUX)
    sign_in(here)
    sign_in(there)
    response = submit(here, "/account/delete", {"confirm": "y"})
    assert response.status_code == 200
    assert "Your account will be erased on" in body(response)
    assert not signed_in(here)
    assert not signed_in(there)
    assert len(ended) == 2
    user = _user(app)
    assert user is not None
    assert user.deletion_due_at is not None
    grace = Runtime.of(app).settings.account_deletion_grace_days
    assert (user.deletion_due_at - clock.now()).days == grace

    # signing in meanwhile holds the sign-in until the holder decides
    response = sign_in(here)
    assert response.headers["Location"] == "/login/deletion"
    assert not signed_in(here)
    leave = submit(here, "/login/deletion", {"decision": "keep"})
    assert leave.headers["Location"] == "/login"
    assert not signed_in(here)
    assert _user(app).deletion_due_at is not None  # type: ignore[union-attr]

    sign_in(here)
    cancel = submit(here, "/login/deletion", {"decision": "cancel"})
    assert cancel.status_code == 302
    assert signed_in(here)
    assert _user(app).deletion_due_at is None  # type: ignore[union-attr]


def test_the_held_pages_need_a_held_sign_in(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    for url in ("/login/deletion", "/login/new-password"):
        assert client.get(url).headers["Location"] == "/login"
    sign_in(client)
    for url in ("/login/deletion", "/login/new-password"):
        assert client.get(url).headers["Location"] == "/login"


def test_purge_erases_due_accounts_and_keeps_the_audit_trail(
    app: Flask, clock: FrozenClock
) -> None:
    create_user(app)
    create_user(app, "bob")
    here = browser(app, CHROME_WINDOWS)
    sign_in(here)
    submit(here, "/account/delete", {"confirm": "y"})
    user = _user(app)
    assert user is not None
    subject = user.subject
    runner = app.test_cli_runner()
    early = runner.invoke(users, ["purge-deleted", "--json"])
    assert early.exit_code == 0, early.output
    assert '"purged": 0' in early.output
    clock.advance(Runtime.of(app).settings.account_deletion_grace_days * 86400 + 1)
    done = runner.invoke(users, ["purge-deleted", "--json"])
    assert done.exit_code == 0, done.output
    assert '"purged": 1' in done.output
    assert _user(app) is None
    with app.app_context():
        assert Accounts.of().account_service().find_by_username("bob") is not None
        kept = db().scalars(select(AuditEvent.event).where(AuditEvent.subject == subject)).all()
        assert {"account.register", "signin", "account.delete_scheduled", "account.purge"} <= set(
            kept
        )
        assert audit_log("cli").verify().ok
    assert sign_in(browser(app, CHROME_WINDOWS)).status_code == 401
