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
