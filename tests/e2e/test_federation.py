"""Two real instances of this service: the "province" is an upstream of the "city".

The province's client for the city is registered with ``idp clients create``; the city
adds the province with ``idp federation add-upstream`` (discovery fetched from the
running province). A person at level 5 at the province signs in to the city through
it: the first sign-in creates an account at the mapped level (5 -> 4 by the city's
level map), the second reuses the link. Single logout both ways: signing out at the city
ends the province's session (RP-initiated logout there), signing out at the province
ends the city's (its back-channel logout token). With ``private_key_jwt`` the city
redeems the code with a client assertion the province checks against the city's JWKS.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_SECRET
from tests.e2e.servers import free_port, idp, idp_batch, running
from tests.support import STRONG_PASSWORD

pytestmark = pytest.mark.multiprocess
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
PERSON = "11010519491231002X"


def instance(tmp_path: Path, name: str, issuer: str) -> dict[str, str]:
    data = tmp_path / name
    data.mkdir()
    return {
        "IDP_DATA_DIR": str(data),
        "IDP_SECRET_KEY": TEST_SECRET + name,
        "IDP_ISSUER": issuer,
        "IDP_LOG_LEVEL": "WARNING",
    }


@contextmanager
def two_instances(
    tmp_path: Path, *, auth: str = "client_secret_basic"
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """The province, with a client for the city (``auth``: how the city authenticates
    at the province's token endpoint), and the city with the province as its upstream;
    both serving. Yields the province's URL, the city's, and the city's environment."""
    # two hosts for one browser's cookies: localhost (province), 127.0.0.1 (city)
    province_port, city_port = free_port(), free_port()
    province = instance(tmp_path, "province", f"http://localhost:{province_port}")
    city = instance(tmp_path, "city", f"http://127.0.0.1:{city_port}")
    # with private_key_jwt the province fetches the city's keys from its jwks_uri
    keys = (
        ["--token-endpoint-auth-method", auth, "--jwks-uri", f"{city['IDP_ISSUER']}/jwks.json"]
        if auth == "private_key_jwt"
        else []
    )
    *_, created = idp_batch(  # one process for the province's set-up
        [
            ["init"],
            *(
                ["users", "create", "--username", username, "--password", STRONG_PASSWORD]
                for username in ("pat", "sam", "lee", "clerk")
            ),
            ["users", "staff", "clerk", "--department", "hall", "--role", "counter_verifier"],
            ["realname", "counter-verify", "pat", "--name", "王小丽", "--number", PERSON,
             "--staff", "clerk"],
            ["clients", "create", "--client-id", "city", "--name", "City hall",
             "--redirect-uri", f"{city['IDP_ISSUER']}/federation/province/callback",
             "--post-logout-redirect-uri", f"{city['IDP_ISSUER']}/federation/province/logged-out",
             "--backchannel-logout-uri",
             f"{city['IDP_ISSUER']}/federation/province/backchannel-logout",
             "--scope", "openid profile realname", "--first-party",
             "--document-number", "full", *keys, "--json"],
        ],
        province,
    )  # fmt: skip
    client = json.loads(created)
    secret = (
        ["--client-secret", client["client_secret"]]
        if auth != "private_key_jwt"
        else ["--token-auth-method", "private_key_jwt"]
    )
    idp(city, "init")
    with running(
        ["serve", "--port", str(province_port), "--workers", "1"],
        province,
        province_port,
        tmp_path / "province.log",
    ) as (province_url, _):
        added = json.loads(
            idp(
                city,
                "federation",
                "add-upstream",
                "--name",
                "province",
                "--issuer",
                province["IDP_ISSUER"],
                "--client-id",
                "city",
                *secret,
                "--scope",
                "openid profile realname",
                "--identity-claim",
                "verified_claims.claims.document_number",
                "--identity-type",
                "resident_id",
                "--level-claim",
                "verified_claims.verification.assurance_level",
                "--level-map",
                "3=3",
                "--level-map",
                "4=4",
                "--level-map",
                "5=4",
                "--link-min-level",
                "3",
                "--json",
            )
        )
        assert added["redirect_uri"] == f"{city['IDP_ISSUER']}/federation/province/callback"
        assert added["post_logout_redirect_uri"] == (
            f"{city['IDP_ISSUER']}/federation/province/logged-out"
        )
        assert added["backchannel_logout_uri"] == (
            f"{city['IDP_ISSUER']}/federation/province/backchannel-logout"
        )
        if auth == "private_key_jwt":
            assert added["jwks_uri"] == f"{city['IDP_ISSUER']}/jwks.json"
            assert client.get("client_secret") is None
        else:
            assert client["client_secret"] not in json.dumps(added)
        with running(
            # the province fetches the city's JWKS while the city's callback waits for
            # the province's token endpoint: the city needs a second thread for it
            ["serve", "--port", str(city_port), "--workers", "1", "--threads", "4"],
            city,
            city_port,
            tmp_path / "city.log",
        ) as (city_url, _):
            yield province_url.replace("127.0.0.1", "localhost"), city_url, city


@pytest.fixture(scope="module")
def province_and_city(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, dict[str, str]]]:
    with two_instances(tmp_path_factory.mktemp("federation")) as running_pair:
        yield running_pair


def sign_in_through_the_province(
    browser: requests.Session, city: str, username: str = "pat"
) -> requests.Response:
    """From the city's sign-in page to the province's password form and back."""
    page = browser.get(city + "/login", timeout=10)
    assert "/federation/province/login" in page.text
    at_province = browser.get(city + "/federation/province/login", timeout=10)
    assert "localhost" in at_province.url
    assert "/login" in at_province.url
    match = CSRF.search(at_province.text)
    assert match
    return browser.post(
        at_province.url,
        data={"csrf_token": match.group(1), "username": username, "password": STRONG_PASSWORD},
        timeout=20,
    )


def signed_in_at(browser: requests.Session, base: str) -> bool:
    page = browser.get(base + "/account", timeout=10, allow_redirects=False)
    return page.status_code == 200


def first_sign_in(browser: requests.Session, city: str, username: str = "pat") -> None:
    """A first sign-in through the province: the city offers a new account, which the
    person takes."""
    back = sign_in_through_the_province(browser, city, username)
    assert back.url.startswith(city + "/federation/new"), back.url
    match = CSRF.search(back.text)
    assert match
    assert browser.post(city + "/federation/new", data={"csrf_token": match.group(1)}).url == (
        city + "/account"
    )


def test_first_sign_in_creates_an_account_at_the_mapped_level_and_the_second_reuses_it(
    province_and_city: tuple[str, str, dict[str, str]],
) -> None:
    _province, city, city_env = province_and_city

    def linked() -> list[dict[str, str]]:
        return list(json.loads(idp(city_env, "federation", "links", "--json")))

    before = linked()
    first_sign_in(requests.Session(), city)
    [link] = [link for link in linked() if link not in before]
    assert link["upstream"] == "province"
    status = json.loads(idp(city_env, "realname", "status", link["username"], "--json"))
    assert status["level"] == 4  # the province's 5, through the city's level map
    # another browser, a second sign-in: the link, straight to the account
    again = sign_in_through_the_province(requests.Session(), city)
    assert again.url == city + "/account"
    assert link["username"] in again.text
    assert len(linked()) == len(before) + 1


def test_signing_out_at_the_city_ends_the_province_session_too(
    province_and_city: tuple[str, str, dict[str, str]],
) -> None:
    province, city, _city_env = province_and_city
    browser = requests.Session()
    first_sign_in(browser, city, "sam")
    assert signed_in_at(browser, province)
    page = browser.get(city + "/logout", timeout=10)
    match = CSRF.search(page.text)
    assert match
    out = browser.post(city + "/logout", data={"csrf_token": match.group(1)}, timeout=20)
    # through the province's end-session endpoint (the hint names its session, so it
    # signs out without asking) and back to the city's sign-in page
    hops = [response.url for response in out.history]
    assert any(url.startswith(province + "/session/end?") for url in hops), hops
    assert any("/federation/province/logged-out?state=" in url for url in hops), hops
    assert out.url == city + "/login"
    assert not signed_in_at(browser, city)
    assert not signed_in_at(browser, province)


def test_signing_out_at_the_province_ends_the_city_session_over_the_back_channel(
    province_and_city: tuple[str, str, dict[str, str]],
) -> None:
    province, city, _city_env = province_and_city
    browser = requests.Session()
    first_sign_in(browser, city, "lee")
    bystander = requests.Session()  # the same person, through another province session
    assert sign_in_through_the_province(bystander, city, "lee").url == city + "/account"
    assert signed_in_at(browser, city)
    page = browser.get(province + "/logout", timeout=10)
    match = CSRF.search(page.text)
    assert match
    browser.post(province + "/logout", data={"csrf_token": match.group(1)}, timeout=20)
    assert not signed_in_at(browser, province)
    deadline = time.monotonic() + 20
    while signed_in_at(browser, city) and time.monotonic() < deadline:
        time.sleep(0.2)  # the province's deliverer sends the logout token
    assert not signed_in_at(browser, city)
    # the other browser's sign-in was another province session: it stays
    assert signed_in_at(bystander, city)


def test_the_city_authenticates_at_the_province_with_private_key_jwt(tmp_path: Path) -> None:
    """The province has the city's jwks_uri registered and no secret: the city's client
    assertion, signed by its own signing key, redeems the code."""
    with two_instances(tmp_path, auth="private_key_jwt") as (_province, city, city_env):
        browser = requests.Session()
        first_sign_in(browser, city)
        assert len(json.loads(idp(city_env, "federation", "links", "--json"))) == 1
        # each redemption carries a fresh assertion (the province refuses a jti it saw)
        again = sign_in_through_the_province(requests.Session(), city)
        assert again.url == city + "/account"
