"""The pages in a real headless Chromium (Playwright) against a real ``idp serve`` process.

One server per module, on the embedded back end (SQLite in a temporary data directory,
in-process store, one worker). Each test gets a fresh browser context (no cookies).

Chromium is Debian's ``/usr/bin/chromium`` (never a downloaded one). When it is missing
the tests are skipped, unless ``IDP_TEST_BROWSER=required`` (as in CI): then they fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
import requests
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)

from accounts.credentials.totp import STEP_SECONDS
from tests.e2e.servers import free_port, idp_batch, instance_env, running
from tests.interop.support import require_node
from tests.support import STRONG_PASSWORD

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
LATE_MESSAGES_MS = 300

# Accounts created with `idp users create` before the server starts.
ALICE = "alice"  # signs in (keyboard, no JavaScript, console checks)
BOB = "bob"  # gets wrong passwords (kept apart so the back-off cannot touch alice)
CAROL = "carol"  # sets up an authenticator app in the browser
DORA = "dora"  # raises her real-name level from 1 to 4
RITA = "rita"  # the legal representative of ACME: claims it and adds AXEL as its agent
AXEL = "axel"  # confirms the authorisation
ADA = "ada"  # visits every page for the accessibility check
ELLA = "ella"  # signs in to a service, rates the record it pushes, withdraws its access
STAN = "stan"  # hall staff: reads the statistics (level 5 at the counter, TOTP)
CLERK = "clerk"  # the counter clerk who verified STAN
FAY = "fay"  # chooses an account for a service, then signs out from the service
USERS = (ALICE, BOB, CAROL, DORA, RITA, AXEL, ADA, ELLA, STAN, CLERK, FAY)
STAN_NAME, STAN_NUMBER = "石安", "441900198001011237"
# IDP_SCREENSHOTS=DIR (scripts/screenshots): the main pages are saved there as PNG
SCREENSHOTS = os.environ.get("IDP_SCREENSHOTS")
# a service system of the city: signs people in and pushes their service records
SERVICE = "records-svc"
SERVICE_NAME = "不动产登记"
SERVICE_CALLBACK = "https://records-svc.example.gov.cn/cb"
# DORA's identity document, in the local registry copy loaded before the server starts
DORA_NAME, DORA_NUMBER = "王小丽", "11010519491231002X"
RITA_NAME, RITA_NUMBER = "赵六", "110105194912310011"
# the legal-person registry names RITA as ACME's legal representative
ACME_CODE, ACME_NAME = "91110000600037341L", "东莞示例科技有限公司"
DORA_PHONE = "13800138000"
# the smallest PNG: the development face adapter matches any image (it compares no faces)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

# zh-CN texts the tests look for (idp/translations/zh_Hans_CN/LC_MESSAGES/messages.po).
ZH_SIGN_IN = "登录"
ZH_USERNAME = "用户名"
ZH_PASSWORD = "密码"
ZH_REPEAT_PASSWORD = "再次输入密码"
ZH_PHONE = "手机号码（选填）"  # noqa: RUF001 - Chinese punctuation
ZH_ONE_TIME_CODE = "一次性验证码"
ZH_CODE_FROM_APP = "应用中显示的验证码"
ZH_YOUR_ACCOUNT = "我的账号"
ZH_SIGN_OUT = "退出登录"
ZH_SKIP = "跳到主要内容"
ZH_WRONG_CODE = "验证码无效，请输入应用中当前显示的验证码。"  # noqa: RUF001 - Chinese punctuation


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    service_secret: str

    def at(self, path: str) -> str:
        return self.url + path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("browser-server")
    port = free_port()
    env = instance_env(base / "data", f"http://127.0.0.1:{port}")
    registry = base / "registry.csv"
    people = f"number,name\n{DORA_NUMBER},{DORA_NAME}\n{RITA_NUMBER},{RITA_NAME}\n"
    registry.write_text(people, encoding="utf-8")
    organisations = base / "organisations.csv"
    organisations.write_text(
        f"number,name,representative\n{ACME_CODE},{ACME_NAME},{RITA_NUMBER}\n", encoding="utf-8"
    )
    *_, created = idp_batch(
        [
            ["init"],
            *(
                ["users", "create", "--username", username, "--password", STRONG_PASSWORD]
                for username in USERS
            ),
            ["registry", "import", "--kind", "person", str(registry)],
            ["registry", "import", "--kind", "organisation", str(organisations)],
            ["users", "staff", CLERK, "--department", "hall", "--role", "counter_verifier"],
            ["realname", "counter-verify", STAN, "--name", STAN_NAME, "--number", STAN_NUMBER,
             "--staff", CLERK],
            ["users", "staff", STAN, "--department", "hall", "--role", "statistics_viewer",
             "--role", "counter_verifier", "--role", "level_administrator",
             "--role", "client_administrator"],
            ["clients", "create", "--client-id", SERVICE, "--name", SERVICE_NAME,
             "--redirect-uri", SERVICE_CALLBACK, "--scope", "openid profile records:write",
             "--grant-type", "authorization_code", "--grant-type", "client_credentials",
             "--json"],
        ],
        env,
    )  # fmt: skip
    service = json.loads(created)
    with running(["serve", "--port", str(port)], env, port, base / "server.log") as (url, _):
        yield Server(url, base / "data", service["client_secret"])


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("IDP_TEST_BROWSER") == "required":
            pytest.fail(f"{message}; IDP_TEST_BROWSER=required", pytrace=False)
        pytest.skip(message)
    with sync_playwright() as started:
        yield started


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = launch(playwright)
    yield launched
    launched.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Fresh contexts (no cookies), closed after the test. Chinese unless told otherwise."""
    made: list[BrowserContext] = []

    def make(
        *, locale: str = "zh-CN", java_script_enabled: bool = True, bypass_csp: bool = False
    ) -> BrowserContext:
        # bypass_csp: only where axe-core is injected into the pages (see violations)
        context = browser.new_context(
            locale=locale, java_script_enabled=java_script_enabled, bypass_csp=bypass_csp
        )
        context.set_default_timeout(TIMEOUT_MS)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    return new_context().new_page()


# --- helpers -----------------------------------------------------------------------------


def focused(page: Page) -> str:
    """The focused element as ``tag#id.class[type]`` (``body`` when nothing is)."""
    return str(
        page.evaluate(
            """() => {
                const el = document.activeElement;
                if (!el) return "none";
                let name = el.tagName.toLowerCase();
                if (el.id) name += "#" + el.id;
                if (el.classList.length) name += "." + [...el.classList].join(".");
                if (el.getAttribute("type")) name += "[" + el.getAttribute("type") + "]";
                return name;
            }"""
        )
    )


def tab_until(page: Page, target: str, limit: int = 20) -> list[str]:
    """Press Tab until ``focused(page) == target``; returns every stop on the way."""
    stops: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        stops.append(focused(page))
        if stops[-1] == target:
            return stops
    pytest.fail(f"{target} is not reachable with Tab; focus went {' -> '.join(stops)}")


def sign_in(page: Page, server: Server, username: str, password: str = STRONG_PASSWORD) -> None:
    page.goto(server.at("/login"))
    page.get_by_label(ZH_USERNAME, exact=True).fill(username)
    page.get_by_label(ZH_PASSWORD, exact=True).fill(password)
    page.get_by_role("button", name=ZH_SIGN_IN).click()


def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save the page for the README (only with IDP_SCREENSHOTS set)."""
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=full_page)


def expect_signed_in_as(page: Page, username: str) -> None:
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(ZH_YOUR_ACCOUNT)
    expect(page.locator("dl.profile dd").first).to_have_text(username)


def expect_every_input_labelled(page: Page, labels: dict[str, str]) -> None:
    """Every visible form control has a <label>; ``labels`` maps its text to the input id."""
    controls = page.locator(
        "input:not([type=hidden]):visible, select:visible, textarea:visible"
    ).all()
    found: dict[str, str] = {}
    for control in controls:
        control_id = control.get_attribute("id") or ""
        texts = control.evaluate("el => [...(el.labels || [])].map(l => l.textContent.trim())")
        assert texts, f"{page.url}: input #{control_id} has no <label>"
        found[" ".join(texts)] = control_id
        described = (control.get_attribute("aria-describedby") or "").split()
        for target in described:
            assert page.locator(f"[id='{target}']").count() == 1, (
                f"{page.url}: #{control_id} is described by a missing #{target}"
            )
    assert found == labels, f"{page.url}: labelled inputs {found}, expected {labels}"
    for text, control_id in labels.items():
        expect(page.get_by_label(text, exact=True)).to_have_attribute("id", control_id)


# --- keyboard ----------------------------------------------------------------------------


def test_first_tab_lands_on_the_skip_link_which_moves_focus_to_the_content(
    page: Page, server: Server
) -> None:
    page.goto(server.at("/login"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name=ZH_SKIP)
    assert focused(page) == "a.skip", (
        f"the first Tab focused {focused(page)}, not the skip link "
        "(did something take focus on page load, e.g. an autofocus attribute?)"
    )
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # hidden off-screen until focused

    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label(ZH_USERNAME, exact=True)).to_be_focused()


def test_keyboard_only_sign_in(page: Page, server: Server) -> None:
    page.goto(server.at("/login"))
    expect(page.get_by_role("heading", level=1)).to_have_text(ZH_SIGN_IN)

    stops = tab_until(page, "input#username[text]")
    assert "a.skip" in stops, f"the skip link is not in the tab order: {stops}"
    page.keyboard.press("Tab")
    expect(page.get_by_label(ZH_PASSWORD, exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name=ZH_SIGN_IN)).to_be_focused()

    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_label(ZH_USERNAME, exact=True)).to_be_focused()
    page.keyboard.type(ALICE)
    page.keyboard.press("Tab")
    page.keyboard.type(STRONG_PASSWORD)
    page.keyboard.press("Enter")

    expect_signed_in_as(page, ALICE)


def test_keyboard_focus_is_visible(page: Page, server: Server, tmp_path: Path) -> None:
    """Also saves a screenshot of /login (username focused) in the test's tmp_path."""
    page.goto(server.at("/login"))
    tab_until(page, "input#username[text]")
    username = page.get_by_label(ZH_USERNAME, exact=True)
    expect(username).to_be_focused()

    shot = tmp_path / "login.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0

    _expect_focus_ring(username)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    button = page.get_by_role("button", name=ZH_SIGN_IN)
    expect(button).to_be_focused()
    _expect_focus_ring(button)


def _expect_focus_ring(control: Locator) -> None:
    ring = control.evaluate(
        """el => {
            const s = getComputedStyle(el);
            return {style: s.outlineStyle, width: s.outlineWidth,
                    focusVisible: el.matches(":focus-visible")};
        }"""
    )
    assert ring["focusVisible"], f"{control} does not match :focus-visible"
    assert ring["style"] != "none", f"no focus outline on {control}: {ring}"
    assert float(str(ring["width"]).removesuffix("px")) >= 2, f"thin focus outline: {ring}"


# --- labels and errors -------------------------------------------------------------------


def test_every_input_has_a_label_and_a_wrong_password_is_announced(
    page: Page, server: Server
) -> None:
    page.goto(server.at("/login"))
    expect_every_input_labelled(page, {ZH_USERNAME: "username", ZH_PASSWORD: "password"})

    page.get_by_label(ZH_USERNAME, exact=True).fill(BOB)
    page.get_by_label(ZH_PASSWORD, exact=True).fill("not " + STRONG_PASSWORD)
    page.get_by_role("button", name=ZH_SIGN_IN).click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码不正确。")
    expect(page.get_by_label(ZH_USERNAME, exact=True)).to_have_value(BOB)

    page.goto(server.at("/register"))
    expect_every_input_labelled(
        page,
        {
            ZH_USERNAME: "username",
            ZH_PASSWORD: "password",
            ZH_REPEAT_PASSWORD: "password_confirm",
            ZH_PHONE: "phone",
        },
    )


def test_one_time_code_pages_have_labels_and_announce_a_wrong_code(
    page: Page, server: Server
) -> None:
    sign_in(page, server, CAROL)
    expect_signed_in_as(page, CAROL)

    page.goto(server.at("/account/totp"))
    expect_every_input_labelled(page, {ZH_CODE_FROM_APP: "otp"})
    secret = page.locator(".secret").inner_text().replace(" ", "")
    page.get_by_label(ZH_CODE_FROM_APP, exact=True).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="确认").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("恢复码")
    recovery_code = page.locator("ul.codes li").first.inner_text().strip()

    page.goto(server.at("/account"))
    page.get_by_role("button", name=ZH_SIGN_OUT).click()
    expect(page).to_have_url(re.compile(r"/login$"))

    sign_in(page, server, CAROL)
    expect(page).to_have_url(re.compile(r"/login/otp$"))
    expect_every_input_labelled(page, {ZH_ONE_TIME_CODE: "otp"})
    otp = page.get_by_label(ZH_ONE_TIME_CODE, exact=True)
    expect(otp).to_have_accessible_description(re.compile("恢复码"))  # the hint

    otp.fill("000000")
    page.get_by_role("button", name="继续").click()
    expect(page.get_by_role("alert")).to_have_text(ZH_WRONG_CODE)

    page.get_by_label(ZH_ONE_TIME_CODE, exact=True).fill(recovery_code)
    page.get_by_role("button", name="继续").click()
    expect_signed_in_as(page, CAROL)


# --- registration and language -----------------------------------------------------------


def test_register_in_english_weak_password_then_a_good_one(page: Page, server: Server) -> None:
    page.goto(server.at("/register"))
    page.get_by_role("navigation").get_by_role("link", name="English").click()
    expect(page).to_have_url(re.compile(r"/register$"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")

    username = page.get_by_label("Username", exact=True)
    password = page.get_by_label("Password", exact=True)
    repeat = page.get_by_label("Repeat the password", exact=True)
    create = page.get_by_role("button", name="Create account")

    username.fill("dana")
    password.fill("short1")
    repeat.fill("short1")
    create.click()

    expect(page).to_have_url(re.compile(r"/register$"))
    rule = page.locator(".field", has=page.locator("#password")).locator(".error")
    expect(rule).to_have_text("Use at least 8 characters.")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_accessible_description(re.compile("Use at least 8 characters"))
    expect(username).to_have_value("dana")
    expect(username).not_to_have_attribute("aria-invalid", "true")

    password.fill(STRONG_PASSWORD)
    repeat.fill(STRONG_PASSWORD)
    create.click()

    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.get_by_role("status")).to_have_text("Your account has been created.")
    expect(page.locator("dl.profile dd").first).to_have_text("dana")


def test_language_switch_changes_lang_and_headings(
    new_context: Callable[..., BrowserContext], server: Server
) -> None:
    page = new_context(locale="de-DE").new_page()  # neither language asked for: Chinese
    page.goto(server.at("/login"))
    html = page.locator("html")
    heading = page.get_by_role("heading", level=1)
    languages = page.get_by_role("navigation", name="语言")
    expect(html).to_have_attribute("lang", "zh-CN")
    expect(heading).to_have_text(ZH_SIGN_IN)
    expect(languages.get_by_role("link", name="中文")).to_have_attribute("aria-current", "true")

    languages.get_by_role("link", name="English").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(html).to_have_attribute("lang", "en")
    expect(heading).to_have_text("Sign in")
    expect(page).to_have_title(re.compile("^Sign in"))
    languages = page.get_by_role("navigation", name="Language")
    expect(languages.get_by_role("link", name="English")).to_have_attribute("aria-current", "true")
    expect(languages.get_by_role("link", name="中文")).not_to_have_attribute("aria-current", "true")

    languages.get_by_role("link", name="中文").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(html).to_have_attribute("lang", "zh-CN")
    expect(heading).to_have_text(ZH_SIGN_IN)
    expect(page).to_have_title(re.compile(f"^{ZH_SIGN_IN}"))


# --- without JavaScript ------------------------------------------------------------------


def test_sign_in_and_out_without_javascript(
    new_context: Callable[..., BrowserContext], server: Server
) -> None:
    page = new_context(java_script_enabled=False).new_page()
    page.set_content("<title>before</title><script>document.title = 'ran'</script>")
    expect(page).to_have_title("before")  # page scripts really are off in this context

    sign_in(page, server, ALICE)
    expect_signed_in_as(page, ALICE)

    page.get_by_role("button", name=ZH_SIGN_OUT).click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(server.at("/account"))
    expect(page).to_have_url(re.compile(r"/login\?next=/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(ZH_SIGN_IN)


def test_signing_out_says_so(page: Page, server: Server) -> None:
    sign_in(page, server, ALICE)
    expect_signed_in_as(page, ALICE)
    page.get_by_role("button", name=ZH_SIGN_OUT).click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status")).to_have_text("您已退出登录。")


# --- console and content security policy -------------------------------------------------

CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@dataclass
class ConsoleLog:
    errors: list[str]
    csp: list[str]


def _watch(page: Page) -> ConsoleLog:
    log = ConsoleLog([], [])

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            log.errors.append(f"{message.text} ({where})")
        if "Content Security Policy" in message.text or message.text.startswith("Refused to"):
            log.csp.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))
    page.add_init_script(CSP_WATCH)
    return log


def _visit_pages(page: Page, server: Server) -> list[str]:
    """/login, /register, then /account, /account/totp (signed in, the latter has an
    inline SVG) and the real-name pages; returns the CSP violations the pages reported."""
    violations: list[str] = []

    def settle(path: str) -> None:
        page.wait_for_load_state("load")
        # the browser asks for /favicon.ico after the load event; let its result arrive
        page.wait_for_timeout(LATE_MESSAGES_MS)
        violations.extend(f"{path}: {v}" for v in page.evaluate("window.__cspViolations"))

    for path in ("/login", "/register", "/login/certificate"):
        page.goto(server.at(path))
        settle(path)
    sign_in(page, server, ALICE)
    expect_signed_in_as(page, ALICE)
    settle("/account")
    page.goto(server.at("/account/totp"))  # starts an enrolment; nothing is enabled
    expect(page.locator(".qr svg")).to_be_visible()
    settle("/account/totp")
    for path in (
        "/account/realname",
        "/account/realname/phone",
        "/account/realname/face",
        "/account/certificates",
        "/account/organisations",
    ):
        page.goto(server.at(path))
        settle(path)
    return violations


def test_no_content_security_policy_violations(page: Page, server: Server) -> None:
    log = _watch(page)
    violations = _visit_pages(page, server)
    assert not violations, violations
    assert not log.csp, log.csp


def test_no_console_errors(playwright: Playwright, server: Server) -> None:
    # A browser of its own: Chromium asks for a site's icon once per browser session,
    # so a shared one would hide that request's outcome after the first test.
    fresh = launch(playwright)
    try:
        page = fresh.new_context(locale="zh-CN").new_page()
        page.set_default_timeout(TIMEOUT_MS)
        log = _watch(page)
        _visit_pages(page, server)
    finally:
        fresh.close()
    assert not log.errors, "console errors:\n" + "\n".join(log.errors)


# --- real-name levels ----------------------------------------------------------------------


def _last_sms_code(server: Server) -> str:
    lines = (server.data_dir / "sms.log").read_text(encoding="utf-8").splitlines()
    message = json.loads(lines[-1])
    assert message["to"] == DORA_PHONE
    match = re.search(r"\b(\d{6})\b", message["text"])
    assert match, message["text"]
    return match.group(1)


def test_real_name_levels_2_3_and_4_in_the_browser(
    new_context: Callable[..., BrowserContext], server: Server, axe: Path
) -> None:
    """Level 2 (a code texted by the development gateway), 3 (the registry copy) and 4
    (a photo upload to the development face adapter), in Chinese, with labelled inputs;
    no serious axe violation on the texted code's form."""
    page = new_context(bypass_csp=True).new_page()
    sign_in(page, server, DORA)
    expect_signed_in_as(page, DORA)

    page.goto(server.at("/account/realname/phone"))
    expect_every_input_labelled(
        page, {"证件姓名": "name", "证件号码": "id_number", "手机号码": "phone"}
    )
    page.get_by_label("证件姓名", exact=True).fill(DORA_NAME)
    page.get_by_label("证件号码", exact=True).fill(DORA_NUMBER)
    page.get_by_label("手机号码", exact=True).fill(DORA_PHONE)
    page.get_by_role("button", name="发送验证码").click()
    expect_every_input_labelled(page, {"短信验证码": "otp"})
    found = violations(page, axe)
    page.get_by_label("短信验证码", exact=True).fill(_last_sms_code(server))
    page.get_by_role("button", name="确认").click()
    expect(page.get_by_role("status")).to_contain_text("可信等级 2 级")

    page.goto(server.at("/account/realname"))
    expect_every_input_labelled(page, {"证件姓名": "name", "证件号码": "id_number"})
    page.get_by_label("证件姓名", exact=True).fill(DORA_NAME)
    page.get_by_label("证件号码", exact=True).fill(DORA_NUMBER)
    page.get_by_role("button", name="认证").click()
    expect(page.get_by_role("status")).to_contain_text("可信等级 3 级")
    shoot(page, "realname")

    page.goto(server.at("/account/realname/face"))
    expect_every_input_labelled(page, {"面部照片": "photo"})
    page.get_by_label("面部照片", exact=True).set_input_files(
        {"name": "face.png", "mimeType": "image/png", "buffer": PNG}
    )
    page.get_by_role("button", name="开始人脸核验").click()
    expect(page.get_by_role("status")).to_contain_text("可信等级 4 级")
    assert not found, "\n".join(found)


def test_claiming_an_organisation_adding_an_agent_and_the_agent_confirming(
    new_context: Callable[..., BrowserContext], server: Server, axe: Path
) -> None:
    """RITA (level 3 through the registry copy) claims ACME on her organisations page and
    adds AXEL as an agent on the enterprise page; AXEL confirms and then sees the page,
    without its forms. In Chinese, with labelled inputs."""
    rita = new_context(bypass_csp=True).new_page()
    found: list[str] = []  # axe-core on the organisation pages
    sign_in(rita, server, RITA)
    expect_signed_in_as(rita, RITA)
    rita.goto(server.at("/account/realname"))
    rita.get_by_label("证件姓名", exact=True).fill(RITA_NAME)
    rita.get_by_label("证件号码", exact=True).fill(RITA_NUMBER)
    rita.get_by_role("button", name="认证").click()
    expect(rita.get_by_role("status")).to_contain_text("可信等级 3 级")

    rita.goto(server.at("/account/organisations"))
    expect_every_input_labelled(rita, {"统一社会信用代码": "uscc", "单位登记名称": "name"})
    rita.get_by_label("统一社会信用代码", exact=True).fill(ACME_CODE)
    rita.get_by_label("单位登记名称", exact=True).fill(ACME_NAME)
    rita.get_by_role("button", name="认领", exact=True).click()
    expect(rita.get_by_role("heading", level=1)).to_have_text(ACME_NAME)
    expect(rita.get_by_role("status")).to_contain_text("法定代表人")
    enterprise = rita.url

    rita.get_by_label("用户名或证件号码", exact=True).fill(AXEL)
    rita.get_by_label("截止日期（选填）", exact=True).fill("2099-12-31")  # noqa: RUF001
    rita.get_by_role("button", name="添加经办人").click()
    expect(rita.get_by_role("status")).to_contain_text("已邀请经办人")
    expect(rita.get_by_role("cell", name="等待确认")).to_be_visible()

    axel = new_context(bypass_csp=True).new_page()
    sign_in(axel, server, AXEL)
    expect_signed_in_as(axel, AXEL)
    before = axel.goto(enterprise)
    assert before is not None
    assert before.status == 404  # until AXEL confirms
    axel.goto(server.at("/account/organisations"))
    axel.get_by_role("button", name="确认", exact=True).click()
    expect(axel.get_by_role("status")).to_contain_text(ACME_NAME)
    axel.get_by_role("link", name=ACME_NAME).click()
    expect(axel.get_by_role("heading", level=1)).to_have_text(ACME_NAME)
    expect(axel.get_by_role("button", name="添加经办人")).to_have_count(0)

    rita.reload()
    expect(rita.get_by_role("cell", name="有效", exact=True)).to_have_count(2)  # RITA and AXEL
    expect(rita.get_by_role("cell", name="已发出授权")).to_be_visible()  # the history
    shoot(rita, "enterprise")
    found += violations(rita, axe)
    rita.goto(enterprise + "/records")
    expect(rita.get_by_role("heading", level=1)).to_be_visible()
    found += violations(rita, axe)
    rita.goto(server.at("/account/organisations"))
    found += violations(rita, axe)

    # AXEL chooses to act for ACME, then for himself again
    axel.goto(server.at("/account/act-for"))
    expect(axel.get_by_role("heading", level=1)).to_have_text("选择办理身份")
    found += violations(axel, axe)
    axel.get_by_role("button", name=ACME_NAME, exact=True).click()
    expect(axel.get_by_role("status")).to_contain_text("您现在代表所选组织办理")
    now = "\uff08当前\uff09"  # "(now)", with full-width parentheses
    expect(axel.get_by_text(now)).to_be_visible()
    axel.get_by_role("button", name="以个人身份办理").click()
    expect(axel.get_by_text(now)).to_have_count(0)
    assert not found, "\n".join(found)


def test_the_elderly_mode_is_one_click_away_and_remembered(page: Page, server: Server) -> None:
    """长者模式: the header's switch (a plain link) enlarges the text on every page until
    it is switched off again."""

    def text_size() -> float:
        return float(page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)"))

    page.goto(server.at("/login"))
    standard = text_size()
    shoot(page, "login")
    page.get_by_role("link", name="长者模式").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    shoot(page, "login-elderly")
    assert text_size() >= standard * 1.3
    expect(page.locator("body")).to_have_class("elderly")
    page.goto(server.at("/register"))  # remembered on the next page
    assert text_size() >= standard * 1.3
    page.get_by_role("link", name="标准模式").click()
    expect(page).to_have_url(re.compile(r"/register$"))
    assert text_size() == standard


def _signed_in_at_the_service(
    page: Page, server: Server, on_consent: Callable[[], None]
) -> dict[str, Any]:
    """The person allows the service on the consent page (``on_consent`` looks at it
    first); the service (this test, as its back end) redeems the code. Returns its
    tokens."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    arrived: list[str] = []

    def at_the_service(route: Route) -> None:  # the service's own site, played here
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<title>ok</title>ok")

    page.route(SERVICE_CALLBACK + "*", at_the_service)
    query = {
        "client_id": SERVICE,
        "response_type": "code",
        "redirect_uri": SERVICE_CALLBACK,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page.goto(server.at("/authorize?" + urlencode(query)))
    expect(page.get_by_text(SERVICE_NAME).first).to_be_visible()
    on_consent()
    page.get_by_role("button", name="允许", exact=True).click()
    expect(page).to_have_url(re.compile("^" + re.escape(SERVICE_CALLBACK)))
    (url,) = arrived
    code = parse_qs(urlsplit(url).query)["code"][0]
    tokens = requests.post(
        server.at("/token"),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": SERVICE_CALLBACK,
            "code_verifier": verifier,
        },
        auth=(SERVICE, server.service_secret),
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_service_pushes_a_record_the_person_rates_it_and_then_withdraws_the_service(
    new_context: Callable[..., BrowserContext], server: Server, axe: Path
) -> None:
    page = new_context(bypass_csp=True).new_page()
    found: list[str] = []  # axe-core on the consent, records and services pages
    sign_in(page, server, ELLA)
    expect_signed_in_as(page, ELLA)
    shoot(page, "account")
    tokens = _signed_in_at_the_service(page, server, lambda: found.extend(violations(page, axe)))
    sub = _claims(tokens["id_token"])["sub"]
    # the service system pushes the person's case (client credentials, records:write)
    grant = requests.post(
        server.at("/token"),
        data={"grant_type": "client_credentials", "scope": "records:write"},
        auth=(SERVICE, server.service_secret),
        timeout=10,
    )
    bearer = {"Authorization": "Bearer " + grant.json()["access_token"]}
    record = requests.post(
        server.at("/api/v1/records"),
        json={
            "external_id": "BDC-2026-0001",
            "subject": {"type": "person", "sub": sub},
            "service_name": SERVICE_NAME,
            "item_code": "DG-BDC-01",
        },
        headers=bearer,
        timeout=10,
    )
    assert record.status_code == 201, record.text
    record_id = record.json()["id"]
    for status, remark in (("accepted", "已受理"), ("completed", "已办结")):
        answer = requests.patch(
            server.at(f"/api/v1/records/{record_id}"),
            json={"status": status, "remark": remark, "done_online": True},
            headers=bearer,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    # the person sees it with its timeline and rates it
    page.goto(server.at("/account/records"))
    expect(page.get_by_role("heading", name=SERVICE_NAME)).to_be_visible()
    expect(page.locator("ol.timeline li")).to_have_count(3)
    expect(page.locator("ol.timeline li").last).to_contain_text("已办结")
    shoot(page, "records")
    found += violations(page, axe)
    page.get_by_label("非常满意", exact=True).check()
    page.get_by_role("button", name="提交评价").click()
    expect(page.get_by_role("status")).to_contain_text("评价")
    seen = requests.get(server.at(f"/api/v1/records/{record_id}"), headers=bearer, timeout=10)
    assert seen.json()["satisfaction"] == 5
    # the connected service, and withdrawing its access ends its tokens
    userinfo = server.at("/userinfo")
    person = {"Authorization": "Bearer " + tokens["access_token"]}
    assert requests.get(userinfo, headers=person, timeout=10).status_code == 200
    page.goto(server.at("/account/services"))
    row = page.get_by_role("row").filter(has_text=SERVICE_NAME)
    expect(row).to_contain_text("profile")
    shoot(page, "services")
    found += violations(page, axe)
    row.get_by_role("button", name="撤销授权").click()
    expect(page.get_by_role("status")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=SERVICE_NAME)).to_have_count(0)
    assert requests.get(userinfo, headers=person, timeout=10).status_code == 401
    assert not found, "\n".join(found)


def test_staff_read_the_halls_statistics_as_charts_and_tables(
    new_context: Callable[..., BrowserContext], server: Server, axe: Path
) -> None:
    """STAN (hall staff, level 5, a second factor) reads /staff/statistics: SVG charts
    named for assistive technology, each with its numbers as a table. No serious axe
    violation there, on the second-factor pages or on the other staff pages."""
    page = new_context(bypass_csp=True).new_page()
    found: list[str] = []
    sign_in(page, server, STAN)
    expect_signed_in_as(page, STAN)
    page.goto(server.at("/account/totp"))
    secret = page.locator(".secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    found += violations(page, axe)
    enrolled = totp.now()
    page.get_by_label(ZH_CODE_FROM_APP, exact=True).fill(enrolled)
    page.get_by_role("button", name="确认").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("恢复码")
    found += violations(page, axe)
    page.goto(server.at("/account"))
    page.get_by_role("button", name=ZH_SIGN_OUT).click()
    sign_in(page, server, STAN)
    expect(page).to_have_url(re.compile(r"/login/otp$"))
    found += violations(page, axe)
    # a step's code is good once (the enrolment used this one): the next step's, which
    # the one-step drift window accepts, as from a phone whose clock is a little ahead
    page.get_by_label(ZH_ONE_TIME_CODE, exact=True).fill(totp.at(time.time() + STEP_SECONDS))
    page.get_by_role("button", name="继续").click()
    expect_signed_in_as(page, STAN)
    page.goto(server.at("/staff/statistics"))
    expect(page.get_by_role("heading", level=1)).to_have_text("网上办事大厅统计")
    charts = page.get_by_role("img")
    expect(charts.first).to_be_visible()
    for chart in charts.all():
        assert (chart.get_attribute("aria-labelledby") or "").strip()
    assert page.locator("table").count() >= charts.count()
    shoot(page, "statistics", full_page=False)
    for path in (
        "/staff/statistics",
        "/staff/counter",
        "/staff/levels",
        "/staff/clients",
        f"/staff/clients/{SERVICE}",
        "/account/totp/disable",
        "/account/reauth?next=/account/password",  # the password and the app's code
    ):
        page.goto(server.at(path))
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        found += violations(page, axe)
    expect(page.get_by_label(ZH_ONE_TIME_CODE, exact=True)).to_be_visible()
    assert not found, "\n".join(found)


def test_the_protocol_pages_pass_the_accessibility_check(
    new_context: Callable[..., BrowserContext], server: Server, axe: Path
) -> None:
    """The pages a service sends the person to: choosing the account
    (``prompt=select_account``), confirming a sign-out the service asked for, and the
    signed-out page; no serious axe violation on any."""
    page = new_context(bypass_csp=True).new_page()
    found: list[str] = []
    sign_in(page, server, FAY)
    expect_signed_in_as(page, FAY)
    query = {
        "client_id": SERVICE,
        "response_type": "code",
        "redirect_uri": SERVICE_CALLBACK,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "prompt": "select_account",
    }
    page.goto(server.at("/authorize?" + urlencode(query)))
    expect(page.get_by_role("button", name=FAY, exact=True)).to_be_visible()
    found += violations(page, axe)
    page.goto(server.at("/session/end?" + urlencode({"client_id": SERVICE})))
    confirm = page.get_by_role("button", name=ZH_SIGN_OUT, exact=True)
    expect(confirm).to_be_visible()
    found += violations(page, axe)
    confirm.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    found += violations(page, axe)
    page.goto(server.at("/account"))
    expect(page).to_have_url(re.compile(r"/login"))  # signed out indeed
    assert not found, "\n".join(found)


# --- automated accessibility check (axe-core) --------------------------------------------

AXE_DIR = Path(__file__).resolve().parent / "axe"
AXE_SCRIPT = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
# every page a person reaches without and with a sign-in (an error page among them)
ANONYMOUS_PAGES = (
    "/login",
    "/register",
    "/login/certificate",
    "/authorize?client_id=unknown&response_type=code",
)
SIGNED_IN_PAGES = (
    "/account",
    "/account/profile",
    "/account/password",
    "/account/totp",
    "/account/services",
    "/account/realname",
    "/account/realname/phone",
    "/account/realname/face",
    "/account/certificates",
    "/account/organisations",
    "/account/federation",
    "/account/records",
    "/logout",
)
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def axe() -> Path:
    """axe-core, as tests/e2e/axe/package-lock.json pins it (``npm ci`` if missing)."""
    require_node(AXE_DIR, ("axe-core",), required_by="IDP_TEST_BROWSER")
    return AXE_SCRIPT


def violations(page: Page, axe: Path) -> list[str]:
    """The serious and critical WCAG 2.1 A/AA violations on the page, one line each."""
    page.add_script_tag(path=str(axe))
    found = page.evaluate(
        """async () => (await axe.run(document, {
            runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            resultTypes: ["violations"],
        })).violations.map(v => ({
            id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(" ")),
        }))"""
    )
    return [
        f"{page.url}: {item['id']} ({item['impact']}) at {', '.join(item['nodes'][:3])}"
        for item in found
        if item["impact"] in SERIOUS
    ]


@pytest.mark.parametrize(
    ("locale", "mode"), [("zh-CN", "standard"), ("en", "standard"), ("zh-CN", "elderly")]
)
def test_no_serious_accessibility_violations_on_any_page(
    browser: Browser, server: Server, axe: Path, locale: str, mode: str
) -> None:
    """axe-core finds no serious or critical WCAG 2.1 AA violation on the pages,
    signed out and signed in, in both languages and in the elderly mode (the page's own
    CSP is bypassed for the injected checker only)."""
    context = browser.new_context(locale=locale, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(server.at(f"/display?mode={mode}&next=/login"))
        found: list[str] = []
        for path in ANONYMOUS_PAGES:
            page.goto(server.at(path))
            found += violations(page, axe)
        page.goto(server.at("/login"))
        page.locator("#username").fill(ADA)
        page.locator("#password").fill(STRONG_PASSWORD)
        page.locator("form[action='/login'] button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/account$"))
        for path in SIGNED_IN_PAGES:
            page.goto(server.at(path))
            found += violations(page, axe)
    finally:
        context.close()
    assert not found, "\n".join(found)


def test_the_accessibility_check_finds_what_it_should(browser: Browser, axe: Path) -> None:
    """A negative control: a page with an unlabelled field and an empty button fails."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.set_content(
            '<html lang="en"><head><title>t</title></head><body><main>'
            '<input type="text"><button></button></main></body></html>'
        )
        found = violations(page, axe)
    finally:
        context.close()
    assert any("label" in line for line in found), found
    assert any("button-name" in line for line in found), found
