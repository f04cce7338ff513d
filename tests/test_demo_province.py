"""``idp demo --with-province``'s choices that need no running instance (the two
instances federated: ``tests/e2e/test_demo_province.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from idp.demo_province import ProvinceError, issuer_for, pid_file, stop_leftover
from tests.e2e.servers import free_port, instance_env, wait_until_up
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


def test_a_province_a_killed_demo_left_running_is_stopped_and_nothing_else(
    tmp_path: Path,
) -> None:
    """The province runs in a session of its own, so a SIGKILLed demo leaves it
    behind: the next demo stops it by its pid file, but never a process that merely
    has that pid now."""
    data = (tmp_path / "province").resolve()
    env = instance_env(data, "http://localhost:5020")
    assert run(["init"], env).returncode == 0
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    left = subprocess.Popen(
        [sys.executable, "-m", "idp.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", left)  # type: ignore[arg-type]
        pid_file(data).parent.mkdir(parents=True, exist_ok=True)
        pid_file(data).write_text(f"{other.pid}\n")  # a pid that is not a province
        assert stop_leftover(data) is None
        assert other.poll() is None
        pid_file(data).write_text(f"{left.pid}\n")
        assert stop_leftover(data, timeout=20) == left.pid
        assert left.wait(timeout=5) is not None
        assert not pid_file(data).exists()
        assert stop_leftover(data) is None  # nothing left to stop
    finally:
        for process in (left, other):
            if process.poll() is None:
                process.kill()
                process.wait()
