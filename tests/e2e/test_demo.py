"""`idp demo` on a fresh data directory: the printed credentials sign in."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pyotp
import pytest
import requests

from tests.e2e.servers import IDP, clean_env, free_port, wait_until_up

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
CREDENTIALS = re.compile(r"username (\S+)\s+password (\S+)(?:\s+\(TOTP seed (\w+))?")

pytestmark = pytest.mark.multiprocess


def _post_form(
    http: requests.Session, url: str, form_url: str, data: dict[str, str]
) -> requests.Response:
    token = CSRF.search(http.get(form_url, timeout=10).text)
    assert token
    return http.post(
        url, data={"csrf_token": token.group(1), **data}, allow_redirects=False, timeout=10
    )


def test_demo_serves_a_sign_in_page_that_accepts_the_printed_credentials(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {"IDP_DATA_DIR": str(tmp_path / "demo"), "IDP_ISSUER": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen(
        [IDP, "demo"],
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        lines: list[str] = []
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        output = "".join(lines)
        accounts = CREDENTIALS.findall(output)
        assert len(accounts) == 2, output
        wait_until_up(base, process)

        http = requests.Session()
        page = http.get(base + "/login", headers={"Accept-Language": "zh-CN"}, timeout=10)
        assert page.status_code == 200
        assert 'lang="zh-CN"' in page.text
        username, password, _ = accounts[0]
        done = _post_form(
            http, base + "/login", base + "/login", {"username": username, "password": password}
        )
        assert done.status_code == 302
        assert http.get(base + "/account", timeout=10).status_code == 200

        # the printed demo registry entry reaches real-name level 3
        person = re.search(r"name (\S+), number (\S+) \(a demo registry entry\)", output)
        assert person is not None, output
        verified = _post_form(
            http,
            base + "/account/realname",
            base + "/account/realname",
            {"name": person.group(1), "id_number": person.group(2)},
        )
        assert verified.status_code == 302
        page = http.get(base + "/account/realname", timeout=10)
        assert "110***********002X" in page.text

        username, password, seed = accounts[1]
        mfa = requests.Session()
        step = _post_form(
            mfa, base + "/login", base + "/login", {"username": username, "password": password}
        )
        assert step.headers["Location"] == "/login/otp"
        code = pyotp.TOTP(seed).now()
        finished = _post_form(mfa, base + "/login/otp", base + "/login/otp", {"otp": code})
        assert finished.status_code == 302
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout:
            process.stdout.close()


def test_demo_sample_services_share_one_sign_in_and_one_sign_out(tmp_path: Path) -> None:
    port = free_port()
    while True:  # the three sample services take the next three ports
        if all(_port_free(port + offset) for offset in (1, 2, 3)):
            break
        port = free_port()
    env = {"IDP_DATA_DIR": str(tmp_path / "demo"), "IDP_ISSUER": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen(
        [IDP, "demo"],
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        username, password, _ = CREDENTIALS.findall("".join(lines))[0]
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process)
        social, housing, tax = (f"http://127.0.0.1:{port + n}" for n in (1, 2, 3))
        for service in (social, housing, tax):
            _wait_for(service)
        browser = requests.Session()
        to_login = browser.get(social + "/login", timeout=10)  # follows to the login page
        assert to_login.url.startswith(base + "/login")
        token = CSRF.search(to_login.text)
        assert token
        hidden = dict(
            re.findall(r'type="hidden" name="(next|client_id)" value="([^"]*)"', to_login.text)
        )
        signed_in = browser.post(
            base + "/login",
            timeout=10,
            data={
                "csrf_token": token.group(1),
                "username": username,
                "password": password,
                **{k: v.replace("&amp;", "&") for k, v in hidden.items()},
            },
        )
        assert signed_in.url == social + "/"
        assert f"Signed in as <strong>{username}</strong>" in signed_in.text
        # the second service: no password asked (single sign-on)
        second = browser.get(housing + "/login", timeout=10)
        assert second.url == housing + "/"
        assert f"Signed in as <strong>{username}</strong>" in second.text
        # the third needs real-name level 3: step-up, the registry form, back to it
        step_up = browser.get(tax + "/login", timeout=10)
        assert step_up.url.startswith(base + "/authorize")
        raise_link = re.search(r'href="(/account/realname\?[^"]+)"', step_up.text)
        assert raise_link, step_up.text[:2000]
        form_url = base + raise_link.group(1).replace("&amp;", "&")
        form_page = browser.get(form_url, timeout=10)
        next_field = re.search(r'name="next" value="([^"]+)"', form_page.text)
        assert next_field
        token = CSRF.search(form_page.text)
        assert token
        verified = browser.post(
            base + "/account/realname",
            timeout=10,
            data={
                "csrf_token": token.group(1),
                "name": "王小丽",
                "id_number": "11010519491231002X",
                "next": next_field.group(1).replace("&amp;", "&"),
            },
        )
        assert verified.url == tax + "/", verified.text[:2000]
        assert f"Signed in as <strong>{username}</strong>" in verified.text
        assert "assurance_level" in verified.text
        # sign out at the first: the second learns it over the back channel
        out = browser.get(social + "/logout", timeout=10)
        assert out.url.startswith(social + "/")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            page = browser.get(housing + "/", timeout=10)
            if "signed out in another service" in page.text:
                break
            time.sleep(0.5)
        assert "signed out in another service" in page.text
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout:
            process.stdout.close()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/", timeout=1)
        except requests.ConnectionError:
            time.sleep(0.2)
        else:
            return
    raise AssertionError(f"{url} did not come up")
