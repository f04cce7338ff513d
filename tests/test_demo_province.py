"""``idp demo --with-province``'s choices that need no running instance (the two
instances federated: ``tests/e2e/test_demo_province.py``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from idp.demo_province import ProvinceError, issuer_for
from tests.test_cli import run


@pytest.mark.parametrize(
    ("city", "province"),
    [
        ("http://127.0.0.1:5000", "http://localhost:5020"),
        ("http://localhost:5000", "http://127.0.0.1:5020"),
        ("http://[::1]:5000", "http://localhost:5020"),
        ("https://id.dg.gov.cn", "http://localhost:5020"),  # behind a proxy
    ],
)
def test_the_province_is_on_the_other_loopback_name(city: str, province: str) -> None:
    # another host to the browser: the two session cookies (one name) never collide
    assert issuer_for(city, 5020) == province


def test_a_plain_http_issuer_off_loopback_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    with pytest.raises(ProvinceError):
        issuer_for("http://192.0.2.10:5000", 5020)
    data = tmp_path / "demo"
    done = run(
        ["demo", "--with-province"],
        {"IDP_DATA_DIR": str(data), "IDP_ISSUER": "http://192.0.2.10:5000"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--with-province needs the issuer on a loopback host" in done.stderr
    assert not data.exists()


def test_a_taken_province_port_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run(
            ["demo", "--with-province", "--province-port", str(port)],
            {"IDP_DATA_DIR": str(data), "IDP_ISSUER": "http://127.0.0.1:5000"},
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the province cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not data.exists()
