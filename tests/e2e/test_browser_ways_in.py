"""The other ways in, in a real headless Chromium, each page through axe-core, in both
languages: through the provincial hall (a second real instance, ``idp serve``, as the
city's upstream), with a digital certificate (a CA cross-certified at the city's
bridge; the challenge signed by the certificate's key, as a USB key's software would),
and the step-up a service's minimum real-name level asks for.

The browser fixtures and the axe helper are tests/e2e/test_browser.py's. Two hosts keep
the two instances' cookies apart: ``localhost`` is the province, ``127.0.0.1`` the city.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from pki.challenge import sign_challenge
from pki.identity import GMT0015_IDENTITY_NUMBER
from tests.e2e import test_browser as shared
from tests.e2e.servers import free_port, idp_batch, instance_env, running
from tests.e2e.test_browser import violations
from tests.pki.certs import Issued, make_ca, make_leaf, utf8_string
from tests.pki.test_bridge import write
from tests.support import STRONG_PASSWORD

pytestmark = pytest.mark.browser
# test_browser.py's fixtures, used here by name: Chromium, fresh contexts, axe-core
playwright = shared.playwright
browser = shared.browser
new_context = shared.new_context
axe = shared.axe

LOCALES = ("zh-CN", "en")
# one of each per language: the province's person signing in at the city for the first
# time, and the city accounts that link the province account, a certificate, or meet
# a service's minimum level
PROVINCE_USERS = {"zh-CN": "provzh", "en": "proven"}
LINKERS = {"zh-CN": "linkzh", "en": "linken"}
HOLDERS = {"zh-CN": "certzh", "en": "certen"}
LOW = {"zh-CN": "lowzh", "en": "lowen"}
# each language's certificate names another person (an identity binds one account)
NUMBERS = {"zh-CN": "11010519491231002X", "en": "110105194912310038"}
WRONG_CHECK_CHARACTER = "110105194912310021"  # 11010519491231002X's, with a wrong last one
PLATFORM = "2.25.1"  # the bridge's policy
LOCAL = "1.2.156.1.1"  # the city CA's, mapped to the bridge's
LEVELLED = "social-security"  # a service for level 3 and above
LEVELLED_CALLBACK = "https://social-security.example.gov.cn/cb"


@dataclass(frozen=True)
class Hall:
    city: str
    ca: Issued  # the city CA, cross-certified at the city's bridge

    def at(self, path: str) -> str:
        return self.city + path


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hall]:
    base = tmp_path_factory.mktemp("ways-in")
    province_port, city_port = free_port(), free_port()
    province = instance_env(base / "province", f"http://localhost:{province_port}")
    city = instance_env(base / "city", f"http://127.0.0.1:{city_port}")
    back = f"{city['IDP_ISSUER']}/federation/province"
    *_, created = idp_batch(
        [
            ["init"],
            *(
                ["users", "create", "--username", username, "--password", STRONG_PASSWORD]
                for username in PROVINCE_USERS.values()
            ),
            ["clients", "create", "--client-id", "city", "--name", "City hall",
             "--redirect-uri", f"{back}/callback", "--post-logout-redirect-uri",
             f"{back}/logged-out", "--scope", "openid profile", "--first-party", "--json"],
        ],
        province,
    )  # fmt: skip
    secret = json.loads(created)["client_secret"]
    ca = make_ca("City CA", policies=[LOCAL])
    root = write(base / "city-ca.pem", ca)
    city_users = (*LINKERS.values(), *HOLDERS.values(), *LOW.values())
    idp_batch(
        [
            ["init"],
            *(
                ["users", "create", "--username", username, "--password", STRONG_PASSWORD]
                for username in city_users
            ),
            ["pki", "init-bridge", "--policy", PLATFORM],
            ["pki", "import-ca", "--name", "city-ca", "--root", str(root),
             "--policy-map", f"{LOCAL}={PLATFORM}", "--revocation", "off",
             "--identity", f"person:ext:{GMT0015_IDENTITY_NUMBER}"],
            ["pki", "cross-certify", "city-ca"],
            ["clients", "create", "--client-id", LEVELLED, "--name", "社会保障服务",
             "--redirect-uri", LEVELLED_CALLBACK, "--scope", "openid", "--min-level", "3"],
        ],
        city,
    )  # fmt: skip
    with running(
        ["serve", "--port", str(province_port), "--workers", "1"],
        province,
        province_port,
        base / "province.log",
    ):
        idp_batch(  # the province's discovery document is read now
            [
                ["federation", "add-upstream", "--name", "province",
                 "--issuer", province["IDP_ISSUER"], "--client-id", "city",
                 "--client-secret", secret, "--scope", "openid profile"],
            ],
            city,
        )  # fmt: skip
        with running(
            ["serve", "--port", str(city_port), "--workers", "1"],
            city,
            city_port,
            base / "city.log",
        ) as (city_url, _):
            yield Hall(city_url, ca)


class Checked:
    """A page in one language that axe-core may check (its CSP bypassed); ``check``
    runs it on the page showing, ``assert_clean`` fails on what any run found."""

    def __init__(self, page: Page, script: Path) -> None:
        self.page = page
        self._script = script
        self._found: list[str] = []

    def check(self) -> None:
        expect(self.page.get_by_role("heading", level=1)).to_be_visible()
        self._found += violations(self.page, self._script)

    def assert_clean(self) -> None:
        assert not self._found, "\n".join(self._found)


@pytest.fixture
def checked(new_context: Callable[..., BrowserContext], locale: str, axe: Path) -> Checked:
    return Checked(new_context(locale=locale, bypass_csp=True).new_page(), axe)


def _password_form(page: Page, username: str) -> None:
    """The sign-in form on whichever instance's page is showing."""
    page.locator("#username").fill(username)
    page.locator("#password").fill(STRONG_PASSWORD)
    page.locator("form[action='/login'] button[type=submit]").click()


@pytest.mark.parametrize("locale", LOCALES)
def test_first_sign_in_through_the_province_then_linking_an_account(
    hall: Hall, checked: Checked, locale: str
) -> None:
    """The province's person, unknown to the city, is offered a new account or a link;
    they sign in to a city account and link it. Then the pages a stale link leads to:
    the way back from the province's sign-out, a first sign-in that has expired."""
    page, check = checked.page, checked.check
    page.goto(hall.at("/login"))
    page.locator("a[href^='/federation/province/login']").click()
    expect(page).to_have_url(re.compile(r"^http://localhost:\d+/login"))
    _password_form(page, PROVINCE_USERS[locale])
    expect(page).to_have_url(re.compile(r"/federation/new"))
    check()
    page.locator("main a[href^='/login?next=']").click()
    _password_form(page, LINKERS[locale])
    expect(page).to_have_url(re.compile(r"/federation/link"))
    check()
    page.locator("form[action='/federation/link'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    page.goto(hall.at("/account/federation"))
    expect(page.locator("main")).to_contain_text("province")
    check()
    page.goto(hall.at("/federation/province/logged-out"))  # no sign-out under way
    check()
    page.goto(hall.at("/federation/new"))  # the first sign-in was used up
    check()
    checked.assert_clean()


def _sign_with_certificate(page: Page, cert: Issued) -> None:
    """The challenge on the page signed with the certificate's key, both pasted in."""
    challenge = page.locator("#challenge-text").input_value()
    fields = sign_challenge(cert.key_pem, cert.pem, challenge)
    page.locator("#certificate").fill(fields["certificate"])
    page.locator("#signature").fill(fields["signature"])
    page.locator("form[action^='/login/certificate'] button[type=submit]").click()


def _person(ca: Issued, number: str) -> Issued:
    identity = [(GMT0015_IDENTITY_NUMBER, utf8_string(number))]
    return make_leaf(ca, "王小丽", policies=[LOCAL], identity_extensions=identity)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_certificate_without_an_account_is_linked_to_one(
    hall: Hall, checked: Checked, locale: str
) -> None:
    """A refused certificate says why in the reader's language; a good one with no
    account yet is offered a new account (a form that names its errors) or a link, and
    is linked to the account signed in to."""
    page, check = checked.page, checked.check
    page.goto(hall.at("/login/certificate"))
    _sign_with_certificate(page, _person(hall.ca, WRONG_CHECK_CHARACTER))
    expect(page.get_by_role("alert")).to_contain_text(
        "校验码错误" if locale == "zh-CN" else "check character wrong"
    )
    check()
    _sign_with_certificate(page, _person(hall.ca, NUMBERS[locale]))
    expect(page).to_have_url(re.compile(r"/login/certificate/new"))
    check()
    page.locator("form[action^='/login/certificate/new'] button[type=submit]").click()
    expect(page.locator("#username-error")).to_be_visible()  # nothing was filled in
    check()
    page.locator("main a[href^='/login?next=']").click()
    _password_form(page, HOLDERS[locale])
    expect(page).to_have_url(re.compile(r"/login/certificate/bind"))
    check()
    page.locator("form[action='/login/certificate/bind'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/account/certificates$"))
    expect(page.locator("main")).to_contain_text("city-ca")
    check()
    page.goto(hall.at("/login/certificate/tls"))  # no certificate from a TLS proxy
    check()
    checked.assert_clean()


@pytest.mark.parametrize("locale", LOCALES)
def test_a_service_for_a_higher_level_offers_the_step_up(
    hall: Hall, checked: Checked, locale: str
) -> None:
    """A level-1 account at a service for level 3: the step-up page, whose way up
    leads to the real-name page."""
    page, check = checked.page, checked.check
    page.goto(hall.at("/login"))
    _password_form(page, LOW[locale])
    expect(page).to_have_url(re.compile(r"/account$"))
    query = {
        "client_id": LEVELLED,
        "response_type": "code",
        "redirect_uri": LEVELLED_CALLBACK,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    page.goto(hall.at("/authorize?" + urlencode(query)))
    expect(page.locator("main")).to_contain_text("社会保障服务")
    check()
    page.locator("main a.button").click()
    expect(page).to_have_url(re.compile(r"/account/realname"))
    check()
    checked.assert_clean()
