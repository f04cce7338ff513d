"""Benchmark: the OpenID Connect endpoints, per CPU-second of the server's processes.

Scenarios (each against ``idp serve`` on PostgreSQL + Redis, keep-alive connections):

* ``client_credentials``: ``POST /token`` (client_credentials, client_secret_basic);
* ``refresh``: ``POST /token`` (refresh_token with rotation): each virtual client keeps
  its own chain, sending the refresh token the previous answer returned;
* ``introspection``: ``POST /introspect`` (RFC 7662) by a confidential resource-server
  client, of a pool of valid user access tokens reused round-robin;
* ``userinfo``: ``GET /userinfo`` with a Bearer header (same kind of pool);
* ``browser``: the browser flow without the password hash: every virtual browser
  signs in once during set-up (SSO session), then loops ``GET /authorize`` (first-party
  client, PKCE S256) -> 302 with a code -> ``POST /token`` (by the client's back end).

    .venv/bin/python bench/oidc.py --duration 20

and, for comparison, ``healthz``: ``GET /healthz``, the floor every request pays
(granian, Flask, the app's hooks).

Each scenario runs twice: closed-loop (``--concurrency`` clients, each sending its next
request when the previous one is answered) for the operations per server CPU-second
and the peak rate; then open-loop at ``--open-fraction`` (80 %) of that peak, requests
started on schedule whatever the server's state (``--open-threads`` threads, each with
its own connection and state), for latency under a realistic load. ``--wrk`` adds a
closed-loop run by wrk for the scenarios with fixed requests. At the end,
``--sessions`` browsers sign in through the pages (in this process, against a private
redis-server) to measure the Redis memory of an SSO session.

The server is the production one in an isolated schema, Redis namespace and data dir,
all removed at the end. Load generators run in a separate process, on keep-alive
connections of a minimal HTTP/1.1 client (``KeepAlive``); only the server's CPU
(granian main process + workers) is in the figure. Results: a summary on stdout and
JSON in bench/results/oidc-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import itertools
import json
import re
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from _harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    HOST,
    OPEN_LOOP_LAG,
    REQUEST_TIMEOUT,
    Environment,
    LoadPlan,
    LoadResult,
    OpenLoopPlan,
    Sample,
    Scenario,
    Server,
    check_ranges,
    code_version,
    free_port,
    idp_executable,
    interrupt_on_sigterm,
    latency_summary,
    machine_busy_cpu,
    machine_info,
    other_process_cpu,
    redis_server_pids,
    response_times,
    run_load,
    run_open_loop,
    stopping,
    write_results,
)

PASSWORD = "bench oidc passphrase 5c1e"
REDIRECT_URI = "https://rp.bench.example/callback"
WEB_CLIENT = "bench-web"  # first party: authorization_code + refresh_token
M2M_CLIENT = "bench-m2m"  # client_credentials
RS_CLIENT = "bench-rs"  # a resource server that introspects
M2M_SCOPE = "api.read"
BROWSER_SCOPE = "openid profile"
REFRESH_SCOPE = "openid offline_access"

SCENARIOS = ("healthz", "client_credentials", "refresh", "introspection", "userinfo", "browser")
DESCRIPTIONS = {
    "healthz": "GET /healthz: the floor (granian, Flask, our hooks), for comparison",
    "client_credentials": "POST /token grant_type=client_credentials (client_secret_basic)",
    "refresh": "POST /token grant_type=refresh_token, rotated (client_secret_basic)",
    "introspection": "POST /introspect of a user access token (resource server, basic)",
    "userinfo": "GET /userinfo, Authorization: Bearer (scope openid profile)",
    "browser": "GET /authorize (SSO session, PKCE) -> 302 code -> POST /token",
}
# operations per server CPU-second
TARGETS: dict[str, float] = {"client_credentials": 1500, "refresh": 800, "introspection": 3000}
P99_TARGET_MS = 50.0
SESSION_TARGET_BYTES = 2048

CSRF = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')
HIDDEN = re.compile(rb'<input type="hidden" name="(next|reauth|client_id)" value="([^"]*)"')
BROWSER_HEADERS = {
    "User-Agent": "idp-bench/1 (oidc browser)",
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
}
FORM = "application/x-www-form-urlencoded"


# -- HTTP -------------------------------------------------------------------------------


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Head:
    """The status line's code and the headers of a response."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.headers = headers

    def getheader(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1 (reopened after an error).

    A minimal client on a plain socket: about a fifth of ``http.client``'s CPU per
    request, which matters because the load generator shares the server's cores. It
    reads ``Content-Length`` bodies (all this service sends) and chunked ones.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._host = f"Host: {HOST}:{port}\r\n".encode()
        self._sock: socket.socket | None = None
        self._buffer = b""

    def build(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        """A complete request, to send (again and again) with ``send_raw``."""
        lines = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host]
        lines.extend(f"{name}: {value}\r\n".encode() for name, value in headers.items())
        if body is not None:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        return b"".join(lines)

    def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Head, bytes]:
        return self.send_raw(self.build(method, path, body, headers))

    def send_raw(self, request: bytes) -> tuple[int, Head, bytes]:
        """Send a complete request (head and body); the answer's status, head, body."""
        try:
            if self._sock is None:
                self._sock = socket.create_connection((HOST, self.port), timeout=REQUEST_TIMEOUT)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._buffer = b""
            self._sock.sendall(request)
            status, head, body = self._read()
        except (OSError, ValueError, IndexError, http.client.HTTPException):
            self.close()
            raise
        if (head.getheader("connection") or "").lower() == "close":
            self.close()
        return status, head, body

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise http.client.RemoteDisconnected("the server closed the connection")
        self._buffer += chunk

    def _read(self) -> tuple[int, Head, bytes]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        raw_head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        pairs = []
        for line in header_lines:
            name, _, value = line.partition(":")
            pairs.append((name.strip().lower(), value.strip()))
        head = Head(pairs)
        length = head.getheader("content-length")
        if length is not None:
            size = int(length)
            while len(self._buffer) < size:
                self._fill()
            body, self._buffer = self._buffer[:size], self._buffer[size:]
            return status, head, body
        if (head.getheader("transfer-encoding") or "").lower() == "chunked":
            return status, head, self._read_chunked()
        if status in {204, 304} or 100 <= status < 200:
            return status, head, b""
        raise http.client.HTTPException("a response without Content-Length or chunks")

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            while (end := self._buffer.find(b"\r\n")) < 0:
                self._fill()
            size = int(self._buffer[:end].split(b";", 1)[0], 16)
            self._buffer = self._buffer[end + 2 :]
            while len(self._buffer) < size + 2:
                self._fill()
            parts.append(self._buffer[:size])
            self._buffer = self._buffer[size + 2 :]
            if size == 0:
                return b"".join(parts)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""


def _store_cookies(response: Head, jar: dict[str, str]) -> None:
    for header in response.get_all("Set-Cookie"):
        name, _, rest = header.partition("=")
        value = rest.split(";", 1)[0]
        if "max-age=0" in header.lower() or "expires=thu, 01 jan 1970" in header.lower():
            jar.pop(name.strip(), None)
        else:
            jar[name.strip()] = value


def _cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in jar.items())


def authorize_path(client_id: str, scope: str, state: str, challenge: str) -> str:
    return "/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )


def code_from(location: str, state: str) -> str | None:
    if not location.startswith(REDIRECT_URI + "?"):
        return None
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if query.get("state") != state:
        return None
    return query.get("code")


def token_body(code: str, verifier: str) -> bytes:
    return urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
    ).encode()


# -- set-up: signed-in browsers and what they obtain ------------------------------------


@dataclass
class Credentials:
    web_secret: str
    m2m_secret: str
    rs_secret: str


class SetupError(RuntimeError):
    pass


@dataclass
class Browser:
    """A browser with an SSO session, and its relying party's back end (set-up only)."""

    port: int
    credentials: Credentials
    jar: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.page = KeepAlive(self.port)
        self.backend = KeepAlive(self.port)

    def get(self, path: str) -> tuple[int, Head, bytes]:
        headers = dict(BROWSER_HEADERS)
        if self.jar:
            headers["Cookie"] = _cookie_header(self.jar)
        status, response, body = self.page.send("GET", path, None, headers)
        _store_cookies(response, self.jar)
        return status, response, body

    def sign_in(self, username: str) -> dict[str, Any]:
        """The first authorization request: through the sign-in page (one hash)."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(12)
        status, response, _ = self.get(authorize_path(WEB_CLIENT, BROWSER_SCOPE, state, challenge))
        location = response.getheader("Location") or ""
        if status != 302 or not location.startswith("/login"):
            raise SetupError(f"GET /authorize: {status} {location}")
        status, _, page = self.get(location)
        token = CSRF.search(page)
        if status != 200 or token is None:
            raise SetupError(f"GET {location}: {status}")
        form = {
            "csrf_token": token.group(1).decode(),
            "username": username,
            "password": PASSWORD,
            **{k.decode(): v.decode().replace("&amp;", "&") for k, v in HIDDEN.findall(page)},
        }
        origin = f"http://{HOST}:{self.port}"
        headers = {
            **BROWSER_HEADERS,
            "Content-Type": FORM,
            "Cookie": _cookie_header(self.jar),
            "Origin": origin,
            "Referer": origin + location,
        }
        status, response, _ = self.page.send("POST", "/login", urlencode(form).encode(), headers)
        _store_cookies(response, self.jar)
        location = response.getheader("Location") or ""
        if status != 302 or not location.startswith("/authorize/continue"):
            raise SetupError(f"POST /login: {status} {location}")
        status, response, _ = self.get(location)
        code = code_from(response.getheader("Location") or "", state)
        if status != 302 or code is None:
            raise SetupError(f"GET /authorize/continue: {status}")
        return self.redeem(code, verifier)

    def tokens(self, scope: str) -> dict[str, Any]:
        """A new grant through the SSO session: authorize -> code -> token."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(12)
        status, response, _ = self.get(authorize_path(WEB_CLIENT, scope, state, challenge))
        code = code_from(response.getheader("Location") or "", state)
        if status != 302 or code is None:
            raise SetupError(f"GET /authorize: {status} {response.getheader('Location')}")
        return self.redeem(code, verifier)

    def redeem(self, code: str, verifier: str) -> dict[str, Any]:
        headers = {
            "Authorization": basic_auth(WEB_CLIENT, self.credentials.web_secret),
            "Content-Type": FORM,
        }
        status, _, body = self.backend.send("POST", "/token", token_body(code, verifier), headers)
        if status != 200:
            raise SetupError(f"POST /token: {status} {body[:200]!r}")
        tokens: dict[str, Any] = json.loads(body)
        return tokens

    def close(self) -> None:
        self.page.close()
        self.backend.close()


def register_clients(environment: Environment) -> Credentials:
    """``idp clients create --json`` for the three clients; their secrets."""

    def create(*args: str) -> str:
        done = subprocess.run(
            [idp_executable(), "clients", "create", *args, "--json"],
            env=environment.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise SetupError(f"idp clients create {' '.join(args)}: {done.stderr.strip()}")
        secret: str = json.loads(done.stdout)["client_secret"]
        return secret

    web = create(
        "--client-id",
        WEB_CLIENT,
        "--name",
        "Bench web application",
        "--redirect-uri",
        REDIRECT_URI,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid profile offline_access",
        "--first-party",
    )
    m2m = create(
        "--client-id", M2M_CLIENT, "--grant-type", "client_credentials", "--scope", M2M_SCOPE
    )
    rs = create(
        "--client-id", RS_CLIENT, "--grant-type", "client_credentials", "--scope", M2M_SCOPE
    )
    return Credentials(web, m2m, rs)


# -- scenarios (picklable; per-thread state is made in the load generator) --------------


class PerThread:
    """Base of the scenarios: each generator thread gets an index and its own state."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in {"_local", "_indexes"}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def local(self, port: int) -> Any:
        if "_local" not in self.__dict__:
            with _INIT_LOCK:
                if "_local" not in self.__dict__:
                    self._indexes = itertools.count()
                    self._local = threading.local()
        local = self._local
        if not hasattr(local, "index"):
            local.index = next(self._indexes)
            local.connection = KeepAlive(port)
            self.setup(local, port)
        return local

    def setup(self, local: Any, port: int) -> None:
        """Per-thread state beyond the connection."""


_INIT_LOCK = threading.Lock()


def _failed(start: float, error: str) -> Sample:
    return Sample(start, time.monotonic(), ok=False, error=error)


class Prebuilt(PerThread):
    """A scenario that sends prebuilt requests in turn (``requests``, built per thread)
    and expects 200 with ``marker`` in the body."""

    marker = b""

    def requests(self, connection: KeepAlive) -> list[bytes]:
        raise NotImplementedError

    def setup(self, local: Any, port: int) -> None:  # noqa: ARG002
        local.requests = self.requests(local.connection)

    def __call__(self, port: int, sequence: int) -> Sample:
        local = self.local(port)
        request = local.requests[sequence % len(local.requests)]
        start = time.monotonic()
        try:
            status, _, body = local.connection.send_raw(request)
        except (OSError, http.client.HTTPException) as exc:
            return _failed(start, f"{type(exc).__name__}: {exc}")
        end = time.monotonic()
        ok = status == 200 and self.marker in body
        return Sample(start, end, ok, error=None if ok else f"{status} {body[:120]!r}")


class Healthz(Prebuilt):
    def requests(self, connection: KeepAlive) -> list[bytes]:
        return [connection.build("GET", "/healthz", None, {})]


class ClientCredentials(Prebuilt):
    marker = b'"access_token"'

    def __init__(self, secret: str) -> None:
        self.headers = {"Authorization": basic_auth(M2M_CLIENT, secret), "Content-Type": FORM}
        self.body = urlencode({"grant_type": "client_credentials", "scope": M2M_SCOPE}).encode()

    def requests(self, connection: KeepAlive) -> list[bytes]:
        return [connection.build("POST", "/token", self.body, self.headers)]


class Refresh(PerThread):
    """Each thread owns one chain: the refresh token of the last answer is the next one."""

    def __init__(self, secret: str, chains: list[str]) -> None:
        self.headers = {"Authorization": basic_auth(WEB_CLIENT, secret), "Content-Type": FORM}
        self.chains = chains

    def setup(self, local: Any, port: int) -> None:  # noqa: ARG002
        local.token = self.chains[local.index] if local.index < len(self.chains) else None

    def __call__(self, port: int, sequence: int) -> Sample:  # noqa: ARG002
        local = self.local(port)
        start = time.monotonic()
        if local.token is None:
            time.sleep(0.01)  # a broken chain: do not spin
            return _failed(start, "no refresh token (chain broken or too few chains)")
        body = urlencode({"grant_type": "refresh_token", "refresh_token": local.token}).encode()
        try:
            status, _, answer = local.connection.send("POST", "/token", body, self.headers)
        except (OSError, http.client.HTTPException) as exc:
            local.token = None  # rotated or not? The chain cannot be trusted any more
            return _failed(start, f"{type(exc).__name__}: {exc}")
        end = time.monotonic()
        if status != 200:
            local.token = None
            return Sample(start, end, ok=False, error=f"{status} {answer[:120]!r}")
        tokens = json.loads(answer)
        local.token = tokens.get("refresh_token")
        ok = local.token is not None and "id_token" in tokens
        return Sample(start, end, ok, error=None if ok else "no refresh_token in the answer")


class Introspection(Prebuilt):
    marker = b'"active":true'

    def __init__(self, secret: str, tokens: list[str]) -> None:
        self.headers = {"Authorization": basic_auth(RS_CLIENT, secret), "Content-Type": FORM}
        self.bodies = [
            urlencode({"token": token, "token_type_hint": "access_token"}).encode()
            for token in tokens
        ]

    def requests(self, connection: KeepAlive) -> list[bytes]:
        return [connection.build("POST", "/introspect", body, self.headers) for body in self.bodies]


class Userinfo(Prebuilt):
    marker = b'"sub"'

    def __init__(self, tokens: list[str]) -> None:
        self.headers = [{"Authorization": f"Bearer {token}"} for token in tokens]

    def requests(self, connection: KeepAlive) -> list[bytes]:
        return [connection.build("GET", "/userinfo", None, headers) for headers in self.headers]


class BrowserFlow(PerThread):
    """Thread i is browser i (its SSO cookies); the RP's back end has its own connection."""

    def __init__(self, secret: str, jars: list[dict[str, str]]) -> None:
        self.token_headers = {"Authorization": basic_auth(WEB_CLIENT, secret), "Content-Type": FORM}
        self.jars = jars

    def setup(self, local: Any, port: int) -> None:
        local.jar = dict(self.jars[local.index]) if local.index < len(self.jars) else None
        local.backend = KeepAlive(port)

    def __call__(self, port: int, sequence: int) -> Sample:  # noqa: ARG002
        local = self.local(port)
        start = time.monotonic()
        if local.jar is None:
            time.sleep(0.01)
            return _failed(start, "no signed-in browser for this thread")
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(12)
        headers = {**BROWSER_HEADERS, "Cookie": _cookie_header(local.jar)}
        path = authorize_path(WEB_CLIENT, BROWSER_SCOPE, state, challenge)
        start = time.monotonic()
        try:
            status, response, _ = local.connection.send("GET", path, None, headers)
            _store_cookies(response, local.jar)
            location = response.getheader("Location") or ""
            code = code_from(location, state)
            middle = time.monotonic()
            if status != 302 or code is None:
                return Sample(start, middle, ok=False, error=f"authorize {status} {location[:80]}")
            status, _, answer = local.backend.send(
                "POST", "/token", token_body(code, verifier), self.token_headers
            )
        except (OSError, http.client.HTTPException) as exc:
            return _failed(start, f"{type(exc).__name__}: {exc}")
        end = time.monotonic()
        ok = status == 200 and b'"id_token"' in answer
        return Sample(
            start,
            end,
            ok,
            phases={"authorize": middle - start, "token": end - middle},
            error=None if ok else f"token {status} {answer[:120]!r}",
        )


# -- Redis memory of an SSO session -----------------------------------------------------


SESSION_CLIENT = "bench-sessions"


def _sign_in_in_process(app: Any, username: str) -> None:
    """A new browser (Flask's test client) signs in for a relying party, as in a real
    flow: /authorize -> /login (page, then form) -> /authorize/continue -> code."""
    browser = app.test_client()
    _, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    answer = browser.get(
        authorize_path(SESSION_CLIENT, BROWSER_SCOPE, state, challenge), headers=BROWSER_HEADERS
    )
    page = browser.get(answer.headers.get("Location", ""), headers=BROWSER_HEADERS)
    token = CSRF.search(page.data)
    if token is None:
        raise SetupError(f"session sign-in: GET /login {page.status_code}")
    hidden = {k.decode(): v.decode().replace("&amp;", "&") for k, v in HIDDEN.findall(page.data)}
    form = {
        "csrf_token": token.group(1).decode(),
        "username": username,
        "password": PASSWORD,
        **hidden,
    }
    answer = browser.post("/login", data=form, headers=BROWSER_HEADERS)
    if answer.status_code != 302:
        raise SetupError(f"session sign-in: POST /login {answer.status_code}")
    answer = browser.get(answer.headers["Location"], headers=BROWSER_HEADERS)
    if code_from(answer.headers.get("Location", ""), state) is None:
        raise SetupError(f"session sign-in: no code ({answer.status_code})")


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[str]:
    """A redis-server of our own on 127.0.0.1 (same binary as the shared one, no
    persistence), so that nobody else's keys move ``used_memory``; stopped at the end."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        import redis

        url = f"redis://{HOST}:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SetupError("the private redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_session_memory(
    environment: Environment, usernames: list[str], redis_url: str
) -> dict[str, Any]:
    """One new browser per account signs in through the pages, in this process (Flask's
    test client on an app using ``redis_url``, in a namespace of its own). What stays
    in Redis per signed-in user: the session (``s:<sha256>``) and the account's index of
    its sessions (``us:<uid>``, a set). Authorization codes (60 s) are deleted before
    the second reading: (used_memory after - before) / sessions, and MEMORY USAGE."""
    import redis

    from config.settings import build_settings
    from idp.app import create_app
    from idp.core.runtime import db
    from idp.oauth.clients import Registration
    from idp.oauth.server import OAuthRuntime

    namespace = environment.redis_namespace + "sessions:"
    app = create_app(
        build_settings(
            environment.settings_values(
                redis_namespace=namespace, redis_url=redis_url, issuer="http://127.0.0.1"
            )
        )
    )
    client = redis.Redis.from_url(redis_url)
    count = len(usernames) - 1
    try:
        with app.app_context():
            OAuthRuntime.of().clients.create(
                db(),
                Registration(
                    client_id=SESSION_CLIENT,
                    redirect_uris=[REDIRECT_URI],
                    public=True,
                    first_party=True,
                    scope="openid profile",
                ),
            )
        _sign_in_in_process(app, usernames[-1])  # first-use costs before the baseline
        _delete_namespace(client, namespace)
        dbsize_before = int(client.dbsize())
        before = int(client.info("memory")["used_memory"])
        began = time.monotonic()
        for username in usernames[:count]:
            _sign_in_in_process(app, username)
        elapsed = time.monotonic() - began
        keys = list(client.scan_iter(match=namespace + "*", count=1000))
        kinds: dict[str, list[bytes]] = {"s:": [], "us:": [], "other": []}
        for key in keys:
            rest = key[len(namespace) :].decode()
            kinds[
                "s:" if rest.startswith("s:") else "us:" if rest.startswith("us:") else "other"
            ].append(key)
        deleted = kinds.pop("other")
        if deleted:  # authorization codes (60 s); nothing else should be left
            client.delete(*deleted)
        after = int(client.info("memory")["used_memory"])
        dbsize_after = int(client.dbsize())
        usage = {
            kind: [int(client.memory_usage(key) or 0) for key in found]
            for kind, found in kinds.items()
        }
        kept = len(kinds["s:"]) + len(kinds["us:"])
        return {
            "sessions": count,
            "accounts": count,
            "session_keys": len(kinds["s:"]),
            "user_index_keys": len(kinds["us:"]),
            "other_keys_deleted": len(deleted),
            "seconds": round(elapsed, 1),
            "used_memory_before": before,
            "used_memory_after": after,
            "bytes_per_session_used_memory": round((after - before) / count, 1),
            "memory_usage_mean_session_key": _mean(usage["s:"]),
            "memory_usage_mean_user_index_key": _mean(usage["us:"]),
            "dbsize_change": dbsize_after - dbsize_before,
            "other_writers": (dbsize_after - dbsize_before) != kept,
            **_sample_session(client, kinds["s:"][0] if kinds["s:"] else None),
        }
    finally:
        _delete_namespace(client, namespace)
        client.close()
        app.extensions["idp.runtime"].database.dispose()


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _sample_session(client: Any, key: bytes | None) -> dict[str, Any]:
    if key is None:
        return {}
    value: bytes | None = client.get(key)
    return {
        "memory_usage_sample_key": int(client.memory_usage(key) or 0),
        "sample_key": key.decode(),
        "sample_key_length": len(key),
        "sample_value_bytes": len(value) if value else None,
        "sample_value_fields": _redact_session(value),
        "ttl_seconds": client.ttl(key),
    }


def _delete_namespace(client: Any, namespace: str) -> None:
    keys = list(client.scan_iter(match=namespace + "*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def _redact_session(raw: bytes | None) -> dict[str, Any] | None:
    """The sample session's fields, with the values' lengths instead of the values."""
    if not raw:
        return None
    data = json.loads(raw)
    return {key: f"{type(value).__name__}:{len(json.dumps(value))}" for key, value in data.items()}


# -- the run ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="all",
        help="one scenario, or all (default)",
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (1)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="closed loop: simultaneous clients, one keep-alive connection each (8)",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds per run (20)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (5)")
    parser.add_argument(
        "--open-fraction",
        type=float,
        default=0.8,
        help="open loop: this fraction of the closed loop's peak rate (0.8; 0: skip)",
    )
    parser.add_argument(
        "--open-threads",
        type=int,
        default=16,
        help="open loop: threads (and connections) available to start requests (16)",
    )
    parser.add_argument(
        "--token-pool", type=int, default=200, help="access tokens introspected/used (200)"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=1000,
        help="SSO sessions made to measure Redis memory (1000; 0: skip)",
    )
    parser.add_argument(
        "--session-redis",
        choices=["private", "shared"],
        default="private",
        help="session memory in a private redis-server of ours (default; others' keys do "
        "not disturb used_memory) or in --redis-url",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="SQLite + in-process store, 1 worker (for comparison; no session memory)",
    )
    parser.add_argument(
        "--log-level",
        choices=["WARNING", "INFO"],
        default="WARNING",
        help="the server's IDP_LOG_LEVEL (default WARNING, as bench/signin.py; the service's "
        "default, INFO, writes a JSON access-log line per request)",
    )
    parser.add_argument(
        "--wrk",
        action="store_true",
        help=f"also run the closed loop of {', '.join(WRK_SCENARIOS)} with wrk (a cheaper "
        "load generator, for comparison)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.wrk and not Path(WRK).exists():
        parser.error(f"--wrk needs {WRK}")
    limits = {
        "workers": (1, 64),
        "threads": (1, 64),
        "concurrency": (1, 256),
        "open_threads": (1, 256),
        "token_pool": (1, 10_000),
        "sessions": (0, 100_000),
    }
    check_ranges(parser, args, limits)
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("--duration must be in (0, 3600] and --warmup in [0, 600]")
    if not 0 <= args.open_fraction <= 1.5:
        parser.error("--open-fraction must be in [0, 1.5]")
    if args.embedded:
        args.workers = 1  # the in-process store serves one process only
        args.sessions = 0
    args.scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    return args


@dataclass
class Fixture:
    """What the scenarios need, made through the running server."""

    server: Server
    credentials: Credentials
    browsers: list[Browser]

    def _grants(self, count: int, scope: str, kind: str) -> list[str]:
        """``count`` new grants through the browsers' SSO sessions: their ``kind`` tokens."""
        try:
            return [
                str(self.browsers[index % len(self.browsers)].tokens(scope)[kind])
                for index in range(count)
            ]
        finally:
            for browser in self.browsers:
                browser.close()  # no idle connections left on the server

    def access_tokens(self, count: int) -> list[str]:
        return self._grants(count, BROWSER_SCOPE, "access_token")

    def refresh_chains(self, count: int) -> list[str]:
        return self._grants(count, REFRESH_SCOPE, "refresh_token")

    def scenario(self, name: str, threads: int, pool: int) -> Scenario:
        secrets_ = self.credentials
        if name == "healthz":
            return Healthz()
        if name == "client_credentials":
            return ClientCredentials(secrets_.m2m_secret)
        if name == "refresh":
            return Refresh(secrets_.web_secret, self.refresh_chains(threads))
        if name == "introspection":
            return Introspection(secrets_.rs_secret, self.access_tokens(pool))
        if name == "userinfo":
            return Userinfo(self.access_tokens(pool))
        if name == "browser":
            if threads > len(self.browsers):
                raise SetupError("fewer signed-in browsers than threads")
            return BrowserFlow(secrets_.web_secret, [dict(b.jar) for b in self.browsers])
        raise ValueError(name)


# -- wrk: the same closed loop from a C load generator (fixed requests only) -----------

WRK = "/usr/bin/wrk"
WRK_SCENARIOS = ("healthz", "client_credentials", "introspection", "userinfo")
_WRK_COMMON = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if check ~= nil and not string.find(body, check, 1, true) then
    unexpected = (unexpected or 0) + 1
  end
end
done = function(summary, latency, requests)
  local unexpected_total = 0
  for _, thread in ipairs(threads) do
    unexpected_total = unexpected_total + (thread:get("unexpected") or 0)
  end
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,' ..
    '"socket_errors":%d,"unexpected_bodies":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    unexpected_total, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _lua(value: str) -> str:
    return json.dumps(value)  # ASCII only here: a valid Lua string literal too


def _lua_headers(headers: dict[str, str]) -> str:
    return "".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}\n" for k, v in headers.items())


def wrk_script(name: str, scenario: Any) -> tuple[str, str]:
    """(path, Lua script) doing what the scenario's requests do, for wrk."""
    if name == "healthz":
        return "/healthz", "check = '\"ok\"'\n" + _WRK_COMMON
    if name == "client_credentials":
        lua = (
            'wrk.method = "POST"\n'
            f"wrk.body = {_lua(scenario.body.decode())}\n"
            + _lua_headers(scenario.headers)
            + "check = '\"access_token\"'\n"
        )
        return "/token", lua + _WRK_COMMON
    if name == "introspection":
        bodies = ",\n".join(_lua(body.decode()) for body in scenario.bodies)
        lua = (
            f"bodies = {{{bodies}}}\ni = 0\n"
            'wrk.method = "POST"\n' + _lua_headers(scenario.headers) + "check = '\"active\":true'\n"
            "request = function()\n  i = i + 1\n"
            "  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])\nend\n"
        )
        return "/introspect", lua + _WRK_COMMON
    if name == "userinfo":
        values = ",\n".join(_lua(h["Authorization"]) for h in scenario.headers)
        lua = (
            f"authorizations = {{{values}}}\ni = 0\n"
            "check = '\"sub\"'\n"
            "request = function()\n  i = i + 1\n"
            '  return wrk.format("GET", nil, {Authorization = authorizations[(i % '
            "#authorizations) + 1]}, nil)\nend\n"
        )
        return "/userinfo", lua + _WRK_COMMON
    raise ValueError(f"wrk cannot run {name}")


def run_wrk(
    server: Server,
    name: str,
    scenario: Any,
    args: argparse.Namespace,
    directory: Path,
    database_pids: Callable[[], list[int]] | None,
) -> dict[str, Any]:
    """wrk (one thread, ``--concurrency`` keep-alive connections): warm-up, then the
    measured run with the server's CPU read before and after."""
    path, lua = wrk_script(name, scenario)
    script = directory / f"wrk-{name}.lua"
    script.write_text(lua)
    command = [WRK, "-t1", f"-c{args.concurrency}", "--timeout", "10s", "-s", str(script)]
    url = server.url + path
    if args.warmup >= 1:
        subprocess.run(
            [*command, "-d", f"{round(args.warmup)}s", url],
            capture_output=True,
            timeout=args.warmup + 60,
            check=False,
        )
    seconds = max(1, round(args.duration))
    db_before = other_process_cpu(database_pids()) if database_pids else None
    redis_before = other_process_cpu(redis_server_pids())
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_cpu()
    start = server.cpu()
    done = subprocess.run(
        [*command, "-d", f"{seconds}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    end = server.cpu()
    busy = machine_busy_cpu() - busy_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    db_after = other_process_cpu(database_pids()) if database_pids else None
    redis_after = other_process_cpu(redis_server_pids())
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        return {"error": (done.stdout + done.stderr)[-500:]}
    figures = json.loads(line.removeprefix("WRKJSON "))
    ok = figures["requests"] - figures["status_errors"] - figures["unexpected_bodies"]
    cpu = end.seconds - start.seconds
    wall = end.at - start.at
    client = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    database = _cpu_delta(db_before, db_after)
    redis_cpu = _cpu_delta(redis_before, redis_after)
    return {
        "operations": ok,
        "requests": figures["requests"],
        "failed": figures["status_errors"] + figures["unexpected_bodies"],
        "socket_errors": figures["socket_errors"],
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_utilisation": round(cpu / wall, 3) if wall else None,
        "per_server_cpu_s": round(ok / cpu, 1) if cpu else None,
        "server_cpu_ms_per_operation": round(cpu / ok * 1000, 3) if ok else None,
        "per_wall_s": round(ok / (figures["duration_us"] / 1e6), 1),
        "latency": {f"p{p}_ms": round(figures[f"p{p}_us"] / 1000, 2) for p in (50, 95, 99)}
        | {"max_ms": round(figures["max_us"] / 1000, 2)},
        "load_generator_cpu_s": round(client, 3),
        "postgres_backends_cpu_s": None if database is None else round(database, 3),
        "redis_server_cpu_s": None if redis_cpu is None else round(redis_cpu, 3),
        "other_processes_cpu_s": round(
            busy - cpu - client - (database or 0.0) - (redis_cpu or 0.0), 3
        ),
    }


def _cpu_delta(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    if before is None or after is None:
        return None
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def summarise_run(
    result: LoadResult, *, machine_cpus: int, open_rate: float | None
) -> dict[str, Any]:
    measured = result.measured()
    ok = [s for s in measured if s.ok]
    failed = [s for s in measured if not s.ok]
    all_failed = [s for s in result.samples if not s.ok]
    wall = result.wall_seconds
    cpu = result.server_cpu_seconds
    other = (
        result.machine_busy_cpu_seconds
        - cpu
        - result.client_cpu_seconds
        - (result.database_cpu_seconds or 0.0)
        - (result.redis_cpu_seconds or 0.0)
    )
    summary: dict[str, Any] = {
        "operations": len(ok),
        "failed": len(failed),
        "failed_including_warmup": len(all_failed),
        "failure_examples": sorted({s.error or "?" for s in all_failed})[:10],
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "server_system_cpu_s": round(result.server_system_cpu_seconds, 3),
        "server_cpu_utilisation": round(cpu / wall, 3) if wall else None,
        "server_cpu_by_process": result.cpu_by_process(),
        "per_server_cpu_s": round(len(ok) / cpu, 1) if cpu else None,
        "server_cpu_ms_per_operation": round(cpu / len(ok) * 1000, 3) if ok else None,
        "per_wall_s": round(len(ok) / wall, 1) if wall else None,
        "latency": latency_summary(response_times(ok)),
        "load_generator_cpu_s": round(result.client_cpu_seconds, 3),
        "load_generator_cpu_ms_per_operation": round(result.client_cpu_seconds / len(ok) * 1000, 3)
        if ok
        else None,
        "postgres_backends_cpu_s": None
        if result.database_cpu_seconds is None
        else round(result.database_cpu_seconds, 3),
        "redis_server_cpu_s": None
        if result.redis_cpu_seconds is None
        else round(result.redis_cpu_seconds, 3),
        "machine_busy_cpu_s": round(result.machine_busy_cpu_seconds, 3),
        "other_processes_cpu_s": round(other, 3),
        "other_processes_share": round(other / (wall * machine_cpus), 3) if wall else None,
        "worker_pids_changed": result.worker_pids_changed,
    }
    phases = sorted({name for s in ok for name in s.phases if name != OPEN_LOOP_LAG})
    if phases:
        summary["latency_phases"] = {
            name: latency_summary([s.phases[name] for s in ok if name in s.phases])
            for name in phases
        }
    if open_rate is not None:
        lags = [s.phases.get(OPEN_LOOP_LAG, 0.0) for s in ok]
        summary["target_rate_per_s"] = round(open_rate, 1)
        summary["service_time"] = latency_summary([s.end - s.start for s in ok])
        summary["start_lag"] = latency_summary(lags)
        summary["started_late_over_1ms"] = sum(lag > 0.001 for lag in lags)
    return summary


def run_scenario(
    name: str,
    args: argparse.Namespace,
    fixture: Fixture,
    database_pids: Callable[[], list[int]] | None,
) -> dict[str, Any]:
    server = fixture.server
    cpus = machine_info()["nproc"] or 1
    print(f"\n[{name}] {DESCRIPTIONS[name]}", flush=True)
    print(f"  closed loop, {args.concurrency} clients: preparing ...", flush=True)
    scenario = fixture.scenario(name, args.concurrency, args.token_pool)
    closed = run_load(
        server,
        scenario,
        LoadPlan(args.concurrency, args.warmup, args.duration),
        database_pids=database_pids,
    )
    report: dict[str, Any] = {
        "scenario": name,
        "description": DESCRIPTIONS[name],
        "closed_loop": summarise_run(closed, machine_cpus=cpus, open_rate=None),
    }
    _print_run("closed loop", report["closed_loop"])
    if args.wrk and name in WRK_SCENARIOS:
        wrk = run_wrk(server, name, scenario, args, args.work_dir, database_pids)
        report["wrk_closed_loop"] = wrk
        if "error" in wrk:
            print(f"  wrk         failed: {wrk['error']}")
        else:
            lat = wrk["latency"]
            print(
                f"  wrk         {wrk['operations']} ok, {wrk['failed']} failed in "
                f"{wrk['wall_s']} s; server CPU {wrk['server_cpu_s']} s => "
                f"{wrk['per_server_cpu_s']} per server CPU-s "
                f"({wrk['server_cpu_ms_per_operation']} ms), {wrk['per_wall_s']} per wall-s; "
                f"p50 {lat['p50_ms']} / p95 {lat['p95_ms']} / p99 {lat['p99_ms']} ms; "
                f"wrk {wrk['load_generator_cpu_s']} s CPU"
            )
    peak = report["closed_loop"]["per_wall_s"] or 0.0
    if args.open_fraction > 0 and peak > 0:
        rate = peak * args.open_fraction
        print(
            f"  open loop at {rate:.0f}/s ({args.open_fraction:.0%} of {peak:.0f}/s), "
            f"{args.open_threads} threads: preparing ...",
            flush=True,
        )
        scenario = fixture.scenario(name, args.open_threads, args.token_pool)
        opened = run_open_loop(
            server,
            scenario,
            OpenLoopPlan(rate, args.open_threads, args.warmup, args.duration),
            database_pids=database_pids,
        )
        report["open_loop"] = summarise_run(opened, machine_cpus=cpus, open_rate=rate)
        _print_run("open loop", report["open_loop"])
    target = TARGETS.get(name)
    per_cpu = report["closed_loop"]["per_server_cpu_s"]
    p99 = report.get("open_loop", {}).get("latency", {}).get("p99_ms")
    report["targets"] = {
        "per_server_cpu_s": target,
        "per_server_cpu_s_met": None if target is None or per_cpu is None else per_cpu >= target,
        "open_loop_p99_ms": P99_TARGET_MS,
        "open_loop_p99_met": None if p99 is None else p99 < P99_TARGET_MS,
    }
    return report


def _print_run(label: str, run: dict[str, Any]) -> None:
    lat = run["latency"] or {}
    line = (
        f"  {label:11} {run['operations']} ok, {run['failed']} failed in {run['wall_s']} s; "
        f"server CPU {run['server_cpu_s']} s ({run['server_cpu_utilisation']} cores) "
        f"=> {run['per_server_cpu_s']} per server CPU-s "
        f"({run['server_cpu_ms_per_operation']} ms), {run['per_wall_s']} per wall-s"
    )
    print(line)
    if lat:
        print(
            f"  {'':11} latency p50 {lat['p50_ms']} / p95 {lat['p95_ms']} / p99 {lat['p99_ms']} ms "
            f"(max {lat['max_ms']}); load generator {run['load_generator_cpu_ms_per_operation']} "
            f"ms CPU/op; PostgreSQL {run['postgres_backends_cpu_s']} s, "
            f"redis {run['redis_server_cpu_s']} s; other processes "
            f"{run['other_processes_cpu_s']} s"
        )
    for phase, values in (run.get("latency_phases") or {}).items():
        if values:
            print(
                f"  {'':11} {phase}: p50 {values['p50_ms']} / p95 {values['p95_ms']} / "
                f"p99 {values['p99_ms']} ms"
            )
    if run.get("start_lag"):
        lag, service = run["start_lag"], run["service_time"]
        print(
            f"  {'':11} service time p99 {service['p99_ms']} ms; started late (>1 ms): "
            f"{run['started_late_over_1ms']}, lag p99 {lag['p99_ms']} ms"
        )
    if (run["other_processes_share"] or 0) > 0.1:
        print(
            f"  WARNING: unrelated processes used {run['other_processes_share']:.0%} of the "
            "machine during the window; figures are disturbed"
        )
    if run["worker_pids_changed"]:
        print("  WARNING: a worker was replaced during the measured phase")
    if run["failure_examples"]:
        print(f"  failures: {run['failure_examples'][:3]}")


def print_summary(report: dict[str, Any]) -> None:
    config = report["config"]
    print()
    print(
        f"OpenID Connect endpoints — {config['backend']}, {config['workers']} workers x "
        f"{config['threads']} threads, log level {config['log_level']}"
    )
    print(
        f"  {'scenario':20} {'per CPU-s':>10} {'target':>7} {'ms CPU':>7} {'peak/s':>7}  "
        f"{'closed p50/p95/p99 ms':>22}  {'open rate':>9} {'open p50/p95/p99 ms':>22}"
    )
    for entry in report["scenarios"]:
        closed = entry["closed_loop"]
        opened = entry.get("open_loop") or {}
        lat, olat = closed["latency"] or {}, opened.get("latency") or {}
        target = entry["targets"]["per_server_cpu_s"]

        def triple(values: dict[str, float]) -> str:
            if not values:
                return "-"
            return f"{values['p50_ms']}/{values['p95_ms']}/{values['p99_ms']}"

        print(
            f"  {entry['scenario']:20} {closed['per_server_cpu_s'] or '-':>10} "
            f"{target or '-':>7} {closed['server_cpu_ms_per_operation'] or '-':>7} "
            f"{closed['per_wall_s'] or '-':>7}  {triple(lat):>22}  "
            f"{opened.get('target_rate_per_s', '-'):>9} {triple(olat):>22}"
        )
    sessions = report.get("sessions")
    if sessions:
        print(
            f"  SSO session in Redis: {sessions['bytes_per_session_used_memory']} bytes of "
            f"used_memory per signed-in account ({sessions['sessions']} accounts, one session "
            f"each); MEMORY USAGE: session key {sessions['memory_usage_mean_session_key']} "
            f"+ index set us:<uid> {sessions['memory_usage_mean_user_index_key']} bytes; "
            f"session value {sessions.get('sample_value_bytes')} bytes; target <= "
            f"{SESSION_TARGET_BYTES}"
        )
        if sessions["other_writers"]:
            print("  WARNING: other keys appeared in Redis meanwhile; used_memory is disturbed")
    if report["server_log_lines"]:
        print(f"  server log: {len(report['server_log_lines'])} line(s), first:")
        for line in report["server_log_lines"][:5]:
            print(f"    {line}")


def server_problems(server: Server) -> list[str]:
    """Log lines above INFO (at WARNING every line is one; at INFO most are access logs)."""
    return [
        line
        for line in server.log_problems()
        if '"level": "INFO"' not in line
        and '"level": "DEBUG"' not in line
        and not line.startswith("[INFO]")  # granian's own start-up lines
    ]


def session_memory(args: argparse.Namespace, environment: Environment) -> dict[str, Any]:
    print(f"\n{args.sessions} accounts sign in, in-process (session memory) ...", flush=True)
    # one account per session, as most users have one browser: each session brings
    # its own index set (us:<uid>)
    accounts = [f"sess{index:05d}" for index in range(args.sessions + 1)]
    environment.create_users(accounts, PASSWORD)
    if args.session_redis == "private" and shutil.which("redis-server"):
        with private_redis(environment.data_dir) as url:
            sessions = measure_session_memory(environment, accounts, url)
        sessions["redis"] = "private redis-server (same binary), nothing else in it"
    else:
        assert environment.redis_url is not None
        sessions = measure_session_memory(environment, accounts, environment.redis_url)
        sessions["redis"] = f"shared: {environment.redis_url}"
    return sessions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    began = time.monotonic()
    code_at_start = code_version()  # others may edit the code while this runs
    browsers_needed = max(args.concurrency, args.open_threads)
    usernames = [f"oidc{index:05d}" for index in range(browsers_needed)]
    with Environment(
        embedded=args.embedded,
        database_url=args.database_url,
        redis_url=args.redis_url,
        tag="oidc",
    ) as environment:
        print(f"setting up in {environment.data_dir} ...", flush=True)
        environment.init()
        environment.create_users(usernames, PASSWORD)
        credentials = register_clients(environment)
        server_env = environment.env()
        if args.log_level != "WARNING":
            server_env.update(IDP_LOG_LEVEL=args.log_level, IDP_LOG_FORMAT="json")
        server = Server(
            server_env,
            workers=args.workers,
            threads=args.threads,
            log_path=environment.data_dir / "server.log",
        )
        browsers: list[Browser] = []
        reports: list[dict[str, Any]] = []
        sessions: dict[str, Any] | None = None
        with stopping(server):
            server.start()
            try:
                for username in usernames:
                    browser = Browser(server.port, credentials)
                    browser.sign_in(username)
                    browsers.append(browser)
            finally:
                for browser in browsers:
                    browser.close()  # the cookies stay; connections are the generator's
            setup_seconds = time.monotonic() - began
            print(
                f"server up at {server.url}; {len(browsers)} browsers signed in "
                f"({setup_seconds:.0f} s); warm-up {args.warmup:g} s, then {args.duration:g} s "
                "measured per run",
                flush=True,
            )
            fixture = Fixture(server, credentials, browsers)
            args.work_dir = environment.data_dir
            database_pids = None if args.embedded else environment.database_backend_pids
            reports.extend(
                run_scenario(name, args, fixture, database_pids) for name in args.scenarios
            )
        if args.sessions:
            sessions = session_memory(args, environment)
        report: dict[str, Any] = {
            "benchmark": "oidc",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info(),
            "code": code_version(),
            "code_at_start": code_at_start,
            "config": {
                "backend": "embedded (SQLite + in-process store)"
                if args.embedded
                else "production (PostgreSQL + Redis)",
                "workers": args.workers,
                "threads": args.threads,
                "concurrency": args.concurrency,
                "open_fraction": args.open_fraction,
                "open_threads": args.open_threads,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "token_pool": args.token_pool,
                "log_level": args.log_level,
            },
            "scenarios": reports,
            "sessions": sessions,
            "session_target_bytes": SESSION_TARGET_BYTES,
            "server_log_lines": server_problems(server)[:50],
            "setup_s": round(setup_seconds, 1),
        }
        print_summary(report)
        if report["code"] != code_at_start:
            print(
                "  WARNING: the code changed during the run (see code and code_at_start in "
                "the JSON); the server ran what was there when it started"
            )
        if not args.no_save:
            # at INFO the log holds a line per request: keep only the problems (above)
            log = server.log_path if args.log_level == "WARNING" else None
            path = write_results("oidc", report, log)
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            print(f"  written {shown}")
    failed = sum(
        entry[kind]["failed_including_warmup"]
        for entry in reports
        for kind in ("closed_loop", "open_loop")
        if kind in entry
    )
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; server stopped, schema, Redis keys and data dir removed")
        sys.exit(130)
