"""``idp`` commands, each in a process of its own, without paying for the imports each
time: a fork server (one per test process) imports ``idp.cli`` once and forks a child
per command. The child takes the command's environment, working directory and standard
streams, runs ``idp.cli.main`` as the console script does, and exits with its code, so
a test sees what an operator's shell would: the exit code, stdout and stderr.

What a fork cannot show (that the ``idp`` script is installed and starts) the tests that
start ``idp serve`` and ``idp demo`` as real programs show (tests/e2e/servers.py).

``python -m tests.cli_process`` is the server: one JSON request per line on stdin
(args, env, cwd, the paths for the child's stdout and stderr), answered with the
child's pid, then its exit code, one JSON line each.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from idp.cli import main  # the imports every child shares, made once

ROOT = Path(__file__).resolve().parent.parent


def _child(request: dict[str, Any]) -> int:
    """In the forked child: become the command's process and run it; its exit code."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_TRUNC),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = Path(os.devnull).open(encoding="utf-8")  # noqa: SIM115 - the process's own
    code: Any = 0
    try:
        main(args=request["args"], prog_name="idp")
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught one
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return int(code)


def serve() -> None:
    requests, answers = sys.stdin, sys.stdout
    for line in requests:
        request = json.loads(line)
        answers.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(request))
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


class _Server:
    """This test process's fork server, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._answers = _Lines(-1)

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.cli_process"],
                cwd=ROOT,
                env=clean,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert self._process.stdout is not None
            self._answers = _Lines(self._process.stdout.fileno())
            atexit.register(self.stop)
        return self._process

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def run(
        self, args: list[str], env: dict[str, str], *, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        with self._lock, tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            out.touch()
            err.touch()
            server = self._started()
            assert server.stdin is not None
            request = {
                "args": args,
                "env": env,
                "cwd": str(cwd),
                "stdout": str(out),
                "stderr": str(err),
            }
            server.stdin.write(json.dumps(request).encode() + b"\n")
            server.stdin.flush()
            pid = int(json.loads(self._answers.next(30))["pid"])
            try:
                answer = json.loads(self._answers.next(timeout))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._answers.next(30)
                raise subprocess.TimeoutExpired(["idp", *args], timeout) from None
            return subprocess.CompletedProcess(
                ["idp", *args],
                int(answer["returncode"]),
                out.read_text(encoding="utf-8", errors="replace"),
                err.read_text(encoding="utf-8", errors="replace"),
            )


class _Lines:
    """Lines from a pipe, each awaited at most ``timeout`` seconds (a buffered text
    stream could hold a line that select() no longer sees)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def next(self, timeout: float) -> str:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                raise TimeoutError
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise RuntimeError("the idp fork server ended")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


_SERVER = _Server()


def run_idp(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``idp ARGS`` in a process of its own with the environment variables of the test
    process but its ``IDP_*`` ones replaced by ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return _SERVER.run(args, {**clean, **env}, cwd=cwd or Path.cwd(), timeout=timeout)


if __name__ == "__main__":
    serve()
