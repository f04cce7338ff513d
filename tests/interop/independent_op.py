"""An independent OpenID provider for the federation tests: panva's ``oidc-provider``
(OpenID-certified; ``op.mjs``), run by Node.js on a free port, as the upstream the city
signs in with. Accounts sign in through the library's development interactions (any
password); ``sign_in_at`` drives its login and consent forms like a browser.
``token_proxy`` stands between the city and the OP's token endpoint and can change the
OP's answers (the attacker's side: a tampered or swapped ID token)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import requests
from werkzeug.wrappers import Request, Response

from tests.e2e.servers import free_port, stop
from tests.interop.support import HERE, page_forms, serving

OP_SCRIPT = HERE / "op.mjs"
START_TIMEOUT = 30.0
START_ATTEMPTS = 2
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningOp:
    issuer: str
    log: Path


@contextmanager
def independent_op(
    node: str, log: Path, clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]
) -> Iterator[RunningOp]:
    """Start ``op.mjs`` with these clients (oidc-provider's client metadata) and
    accounts (id -> claims); stopped on exit. A start that fails (the free port taken
    meanwhile by another test's server, a loaded machine) is tried once more."""
    started = None
    for _attempt in range(START_ATTEMPTS):
        started = _start(node, log, clients, accounts)
        if started is not None:
            break
    if started is None:
        raise RuntimeError(f"oidc-provider did not start:\n{log.read_text()}")
    process, issuer, handle = started
    try:
        yield RunningOp(issuer, log)
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()
        handle.close()


def _start(
    node: str, log: Path, clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]
) -> tuple[subprocess.Popen[str], str, IO[str]] | None:
    """The OP process, its issuer and its log handle once it said "ready"; None (the
    process stopped) when it did not within START_TIMEOUT."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = {"port": port, "issuer": issuer, "clients": clients, "accounts": accounts}
    handle = log.open("a")
    process = subprocess.Popen(
        [node, str(OP_SCRIPT), json.dumps(config)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=handle,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        line = ""
    if line.strip() == "ready":
        return process, issuer, handle
    stop(process)
    stdout.close()
    handle.write(f"[test] no 'ready' from port {port} (exit code {process.returncode})\n")
    handle.close()
    return None


def sign_in_at(http: requests.Session, url: str, account: str, stop_at: str) -> str:
    """Follow ``url`` (an authorization request at the OP) like a browser: sign in as
    ``account``, approve, and return the first redirect to a URL starting with
    ``stop_at`` (not followed)."""
    response = http.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    for _ in range(12):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(stop_at):
                return location
            response = http.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT)
            continue
        assert response.status_code == 200, (response.status_code, response.text[:800])
        (form,) = page_forms(response.text).values()
        data = dict(form.fields)
        if data.get("prompt") == "login":
            data.update(login=account, password="any")
        response = http.post(
            urljoin(response.url, form.action),
            data=data,
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
    raise AssertionError(f"the OP's flow did not reach {stop_at}")


# -- a man in the middle of the token endpoint ------------------------------------------

TokenTamper = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class TokenProxy:
    """Forwards the city's token requests to the OP's token endpoint and hands back what
    ``tamper`` makes of the OP's JSON answer (unchanged by default). ``passed`` holds the
    OP's own answers, in order."""

    url: str
    target: str
    tamper: TokenTamper | None = None
    passed: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in {"authorization", "content-type", "accept"}
        }
        answer = requests.post(
            self.target, data=request.get_data(), headers=headers, timeout=HTTP_TIMEOUT
        )
        body = answer.content
        if answer.status_code == 200:
            original = answer.json()
            self.passed.append(original)
            if self.tamper is not None:
                body = json.dumps(self.tamper(dict(original))).encode()
        response = Response(body, status=answer.status_code, mimetype="application/json")
        return response(environ, start_response)


@contextmanager
def token_proxy(target: str) -> Iterator[TokenProxy]:
    """A ``TokenProxy`` to ``target`` on a free loopback port, stopped on exit."""
    proxy = TokenProxy(url="", target=target)
    with serving(proxy) as url:
        proxy.url = url + "/token"
        yield proxy
