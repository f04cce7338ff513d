"""`idp demo --with-province`: two real instances federated both ways.

The demo's own person, raised to level 3 at the city, signs in at the province with the
city and is recognised as the province's demo person (the same verified number); the
province's demo person, at level 5 there, signs in at the city through the province
and is linked to that city account, raised to level 4 by the city's level map. A second
run on the same data directory (new secrets, the upstream replaced) still federates.
Ctrl-C (SIGINT to the demo alone) stops the province too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import requests

from accounts.demo_people import DEMO_PERSON
from idp.demo_province import pid_file
from tests.e2e.servers import IDP, clean_env, free_port, idp, wait_until_up

pytestmark = pytest.mark.multiprocess
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
HIDDEN = re.compile(r'type="hidden" name="(next|client_id)" value="([^"]*)"')
CITY_USER = re.compile(r"username (demo)\s+password (\S+)")
PROVINCE_USER = re.compile(r"username (province-demo)\s+password (\S+)")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _city_port() -> int:
    """A free port whose next three are free too (the sample services)."""
    while True:
        port = free_port()
        if all(_port_free(port + offset) for offset in (1, 2, 3)):
            return port


def _answers(port: int) -> bool:
    """Something listens on the port (a closed one refuses the connection)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _stop_all(process: subprocess.Popen[str], data: Path) -> None:
    """End the demo and whatever it left, even on failure: its own process group (the
    sample services) and the province (in a session of its own, by its pid file)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(OSError, ValueError):
        province = int(pid_file(data / "province").read_text())
        command = Path(f"/proc/{province}/cmdline").read_bytes()
        if b"idp.cli" in command and b"serve" in command:  # not a reused pid
            os.killpg(province, signal.SIGKILL)


@contextmanager
def demo(
    env: dict[str, str], port: int, province_port: int, pki_port: int
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``idp demo --with-province`` in its own process group; the banner once printed."""
    process = subprocess.Popen(
        [
            *(IDP, "demo", "--with-province"),
            *("--province-port", str(province_port), "--pki-port", str(pki_port)),
        ],
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Stop with Ctrl-C" in output, output
        wait_until_up(f"http://127.0.0.1:{port}", process)
        yield process, output
    finally:
        _stop_all(process, Path(env["IDP_DATA_DIR"]))
        if process.stdout:
            process.stdout.close()


def idp_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(idp(env, *args))


def _form(page: requests.Response) -> dict[str, str]:
    """The sign-in form's CSRF token and the hidden fields carrying the authorization."""
    token = CSRF.search(page.text)
    assert token, page.text[:2000]
    hidden = {k: v.replace("&amp;", "&") for k, v in HIDDEN.findall(page.text)}
    return {"csrf_token": token.group(1), **hidden}


def sign_in(
    browser: requests.Session, page: requests.Response, user: str, password: str
) -> requests.Response:
    """Post the sign-in form ``page`` shows (following the redirects that follow)."""
    return browser.post(
        page.url, data={**_form(page), "username": user, "password": password}, timeout=20
    )


def city_through_province(city: str, province: str, user: str, password: str) -> requests.Response:
    """A new browser: the city's sign-in page, its link to the province, the province's
    password form, and back to the city."""
    browser = requests.Session()
    page = browser.get(city + "/login", timeout=10)
    assert "/federation/province/login" in page.text
    at_province = browser.get(city + "/federation/province/login", timeout=10)
    assert at_province.url.startswith(province + "/login"), at_province.url
    return sign_in(browser, at_province, user, password)


def test_demo_with_province_federates_two_instances_both_ways(tmp_path: Path) -> None:
    port, province_port, pki_port = _city_port(), free_port(), free_port()
    city = f"http://127.0.0.1:{port}"
    province = f"http://localhost:{province_port}"  # another host: its own cookies
    data = tmp_path / "demo"
    city_env = {"IDP_DATA_DIR": str(data), "IDP_ISSUER": city, "IDP_LOG_LEVEL": "WARNING"}
    province_env = {
        "IDP_DATA_DIR": str(data / "province"),
        "IDP_ISSUER": province,
        "IDP_CONFIG": str(data / "province" / "province.toml"),
    }
    name, number = DEMO_PERSON
    with demo(city_env, port, province_port, pki_port) as (process, output):
        assert (
            f"Provincial hall (own issuer, keys and data: {data / 'province'}) at {province}/"
            in output
        )
        assert "the city gives real-name level 4" in output
        city_match, province_match = CITY_USER.search(output), PROVINCE_USER.search(output)
        assert city_match, output
        assert province_match, output
        _, city_password = city_match.groups()
        _, province_password = province_match.groups()
        assert requests.get(province + "/healthz", timeout=5).status_code == 200
        # its own issuer and keys
        city_keys = requests.get(city + "/.well-known/openid-configuration", timeout=5).json()
        province_keys = requests.get(
            province + "/.well-known/openid-configuration", timeout=5
        ).json()
        assert (city_keys["issuer"], province_keys["issuer"]) == (city, province)
        assert (
            requests.get(city_keys["jwks_uri"], timeout=5).json()
            != requests.get(province_keys["jwks_uri"], timeout=5).json()
        )

        # the city's demo account becomes the demo registry's person at level 3
        browser = requests.Session()
        signed_in = sign_in(
            browser, browser.get(city + "/login", timeout=10), "demo", city_password
        )
        assert signed_in.url == city + "/account", signed_in.url
        form = browser.get(city + "/account/realname", timeout=10)
        raised = browser.post(
            city + "/account/realname",
            data={**_form(form), "name": name, "id_number": number},
            timeout=10,
        )
        assert raised.status_code == 200
        assert idp_json(city_env, "realname", "status", "demo", "--json")["level"] == 3

        # the province signs in with the city (single sign-on there: no password asked);
        # the city's level 3, in the province's vocabulary, links the province's person
        page = browser.get(province + "/login", timeout=10)
        assert "/federation/city/login" in page.text
        at_province = browser.get(province + "/federation/city/login", timeout=20)
        assert at_province.url == province + "/account", at_province.url
        assert "province-demo" in at_province.text
        [at_the_province] = idp_json(province_env, "federation", "links", "--json")
        assert (at_the_province["upstream"], at_the_province["username"]) == (
            "city",
            "province-demo",
        )

        # the city through the province: the province's level 5 counts as 4 here, and the
        # same person's city account is linked and raised
        back = city_through_province(city, province, "province-demo", province_password)
        assert back.url == city + "/account", back.url
        assert "demo" in back.text
        assert idp_json(city_env, "realname", "status", "demo", "--json")["level"] == 4
        [at_the_city] = idp_json(city_env, "federation", "links", "--json")
        assert (at_the_city["upstream"], at_the_city["username"]) == ("province", "demo")

        # Ctrl-C at the demo stops both
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _answers(province_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers(province_port)

    # again on the same data: new passwords and secrets, the upstream replaced, the link kept
    with demo(city_env, port, province_port, pki_port) as (_, output):
        province_match = PROVINCE_USER.search(output)
        assert province_match, output
        assert province_match.group(2) != province_password
        again = city_through_province(city, province, "province-demo", province_match.group(2))
        assert again.url == city + "/account", again.url
        assert len(idp_json(city_env, "federation", "links", "--json")) == 1
