"""Start real server processes (``idp serve``) for end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.cli_process import run_idp

IDP = str(Path(sys.executable).with_name("idp"))
# runs several `idp` commands in one process (one start-up instead of one per command)
_BATCH = """
import json, sys
from click.testing import CliRunner
from idp.cli import main
outputs = []
for args in json.load(sys.stdin):
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    if result.exit_code != 0:
        sys.exit(f"idp {' '.join(args[:2])} failed ({result.exit_code}):\\n{result.output}")
    outputs.append(result.stdout)
json.dump(outputs, sys.stdout)
"""


def instance_env(data_dir: Path, issuer: str, **extra: str) -> dict[str, str]:
    """The ``IDP_*`` settings of one instance of the service under test: its data
    directory and issuer, logs as text from WARNING up; ``extra`` adds or replaces."""
    return {
        "IDP_DATA_DIR": str(data_dir),
        "IDP_ISSUER": issuer,
        "IDP_LOG_FORMAT": "text",
        "IDP_LOG_LEVEL": "WARNING",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return {**base, **extra}


def idp(env: dict[str, str], *args: str) -> str:
    """``idp ARGS`` in a process of its own (tests/cli_process.py); its output, which
    must be a success."""
    done = run_idp(list(args), env)
    assert done.returncode == 0, f"idp {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def idp_batch(commands: list[list[str]], env: dict[str, str]) -> list[str]:
    """Run ``idp`` commands one after the other in one process; their outputs."""
    done = subprocess.run(
        [sys.executable, "-c", _BATCH],
        input=json.dumps(commands),
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outputs: list[str] = json.loads(done.stdout)
    return outputs


def wait_until_up(url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"server exited early ({process.returncode}):\n{output}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


@contextmanager
def running(
    args: list[str], env: dict[str, str], port: int, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    handle = log.open("w") if log else None
    process = subprocess.Popen(
        [IDP, *args],
        env=clean_env(env),
        text=True,
        stdout=handle or subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield url, process
    finally:
        stop(process, timeout=20)
        if handle:
            handle.close()
        if process.stdout and not handle:
            process.stdout.close()


def stop(process: subprocess.Popen[str], timeout: float = 10) -> None:
    """Terminate a process, killing it when it does not end within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
