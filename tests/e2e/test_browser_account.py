"""The personal page's security sections in a real headless Chromium against a real
``idp serve`` (as tests/e2e/test_browser.py, whose browser fixtures and axe helper this
module reuses): "This wasn't me" from the activity page ends another browser's
session; a session is signed out from the sessions page; the new pages pass axe-core.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e import test_browser as shared
from tests.e2e.servers import free_port, idp_batch, instance_env, running
from tests.e2e.test_browser import (
    TIMEOUT_MS,
    Server,
    shoot,
    sign_in,
    violations,
)
from tests.support import STRONG_PASSWORD

pytestmark = pytest.mark.browser
# test_browser.py's fixtures, used here by name: Chromium, fresh contexts, axe-core
playwright = shared.playwright
browser = shared.browser
new_context = shared.new_context
axe = shared.axe

ERIN = "erin"  # reports "This wasn't me"
FINN = "finn"  # signs out one of his sessions
# visit every new page for the accessibility check, one of each per language
AXE_USERS = {"zh-CN": ("hanazh", "ivanzh"), "en": ("hanaen", "ivanen")}
USERS = (ERIN, FINN, *(name for pair in AXE_USERS.values() for name in pair))
NEW_PASSWORD = "a different and long passphrase"

ZH_ACTIVITY = "账号活动记录"
ZH_NOT_ME = "不是我本人"
ZH_SECURED = "您的账号已得到保护"
ZH_CHOOSE_NEW_PASSWORD = "设置新密码"
ZH_NEW_PASSWORD = "新密码"
ZH_REPEAT_NEW_PASSWORD = "再次输入新密码"
ZH_SAVE_NEW_PASSWORD = "保存新密码"
ZH_SESSIONS = "登录设备"
ZH_SIGN_OUT = "退出登录"
ZH_THIS_BROWSER = "本浏览器"
ZH_SESSION_ENDED = "该会话已退出登录，并已通知相关服务。"  # noqa: RUF001 - Chinese punctuation
ZH_YOUR_ACCOUNT = "我的账号"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("browser-account-server")
    port = free_port()
    env = instance_env(base / "data", f"http://127.0.0.1:{port}")
    idp_batch(
        [
            ["init"],
            *(
                ["users", "create", "--username", username, "--password", STRONG_PASSWORD]
                for username in USERS
            ),
        ],
        env,
    )
    with running(["serve", "--port", str(port)], env, port, base / "server.log") as (url, _):
        yield Server(url, base / "data", service_secret="")  # no service registered here


def expect_account_page(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(ZH_YOUR_ACCOUNT)


def expect_signed_out(page: Page, server: Server) -> None:
    page.goto(server.at("/account"))
    expect(page).to_have_url(re.compile(r"/login\?next=/account$"))


def test_this_wasnt_me_from_the_activity_page_ends_the_other_browsers_session(
    new_context: Callable[..., BrowserContext], server: Server
) -> None:
    intruder = new_context().new_page()
    sign_in(intruder, server, ERIN)
    expect_account_page(intruder)
    owner = new_context(java_script_enabled=False).new_page()  # no JavaScript needed
    sign_in(owner, server, ERIN)
    expect_account_page(owner)

    owner.locator("a[href='/account/activity']").click()
    expect(owner.get_by_role("heading", level=1)).to_have_text(ZH_ACTIVITY)
    rows = owner.locator("table.activity tbody tr")
    expect(rows).to_have_count(3)  # two sign-ins and the account's creation
    shoot(owner, "activity")
    # the older sign-in is the intruder's
    rows.nth(1).get_by_role("button", name=re.compile(ZH_NOT_ME)).click()
    expect(owner.get_by_role("heading", level=1)).to_have_text(ZH_SECURED)
    expect(owner.locator("main")).to_contain_text("2")

    expect_signed_out(intruder, server)
    expect_signed_out(owner, server)

    # the next sign-in chooses a new password first; the old one then stops working
    sign_in(owner, server, ERIN)
    expect(owner).to_have_url(re.compile(r"/login/new-password$"))
    expect(owner.get_by_role("heading", level=1)).to_have_text(ZH_CHOOSE_NEW_PASSWORD)
    owner.get_by_label(ZH_NEW_PASSWORD, exact=True).fill(NEW_PASSWORD)
    owner.get_by_label(ZH_REPEAT_NEW_PASSWORD, exact=True).fill(NEW_PASSWORD)
    owner.get_by_role("button", name=ZH_SAVE_NEW_PASSWORD).click()
    expect_account_page(owner)
    sign_in(intruder, server, ERIN)
    expect(intruder).to_have_url(re.compile(r"/login$"))
    expect(intruder.get_by_role("alert")).to_be_visible()


def test_signing_out_a_session_from_the_sessions_page(
    new_context: Callable[..., BrowserContext], server: Server
) -> None:
    other = new_context().new_page()
    sign_in(other, server, FINN)
    expect_account_page(other)
    here = new_context().new_page()
    sign_in(here, server, FINN)
    expect_account_page(here)

    here.locator("a[href='/account/sessions']").click()
    expect(here.get_by_role("heading", level=1)).to_have_text(ZH_SESSIONS)
    rows = here.locator("table.sessions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(ZH_THIS_BROWSER)
    expect(rows.nth(0)).to_contain_text("Chrome")
    expect(rows.nth(0)).to_contain_text("127.0.0.1")
    shoot(here, "sessions")
    rows.nth(1).get_by_role("button", name=re.compile(ZH_SIGN_OUT)).click()
    expect(here.get_by_role("status")).to_have_text(ZH_SESSION_ENDED)
    expect(rows).to_have_count(1)

    expect_signed_out(other, server)
    here.goto(server.at("/account"))
    expect_account_page(here)


def _check(page: Page, axe: Path, found: list[str]) -> None:
    found += violations(page, axe)


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_no_serious_accessibility_violations_on_the_new_pages(
    browser: Browser, server: Server, axe: Path, locale: str
) -> None:
    """Every new page, in both languages: the overview, sessions, activity,
    re-authentication, deletion and its held sign-in, "This wasn't me" and the new
    password it asks for."""
    deleter, reporter = AXE_USERS[locale]
    context = browser.new_context(locale=locale, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    found: list[str] = []

    def sign_in_as(page: Page, username: str) -> None:
        page.goto(server.at("/login"))
        page.locator("#username").fill(username)
        page.locator("#password").fill(STRONG_PASSWORD)
        page.locator("form[action='/login'] button[type=submit]").click()

    try:
        page = context.new_page()
        sign_in_as(page, deleter)
        expect(page).to_have_url(re.compile(r"/account$"))
        for path in (
            "/account",
            "/account/sessions",
            "/account/activity",
            "/account/reauth?next=/account/password",
            "/account/delete",
        ):
            page.goto(server.at(path))
            _check(page, axe, found)
        page.locator("form[action='/account/delete'] button[type=submit]").click()
        expect(page.locator("#confirm-error")).to_be_visible()  # not ticked
        _check(page, axe, found)
        page.locator("#confirm").check()
        page.locator("form[action='/account/delete'] button[type=submit]").click()
        expect(page.locator(".notice")).to_be_visible()
        _check(page, axe, found)
        sign_in_as(page, deleter)
        expect(page).to_have_url(re.compile(r"/login/deletion$"))
        _check(page, axe, found)
        page.locator("button[value=cancel]").click()
        expect(page).to_have_url(re.compile(r"/account$"))

        context.clear_cookies()
        sign_in_as(page, reporter)
        page.goto(server.at("/account/activity"))
        page.locator("form[action='/account/activity/not-me'] button").first.click()
        expect(page.locator(".notice")).to_be_visible()
        _check(page, axe, found)
        sign_in_as(page, reporter)
        expect(page).to_have_url(re.compile(r"/login/new-password$"))
        _check(page, axe, found)
        page.locator("#password").fill("short")
        page.locator("#password_confirm").fill("other")
        page.locator("form[action='/login/new-password'] button[type=submit]").click()
        expect(page.locator(".error").first).to_be_visible()  # errors tied to the fields
        _check(page, axe, found)
    finally:
        context.close()
    assert not found, "\n".join(found)
