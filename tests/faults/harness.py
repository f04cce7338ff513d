"""A harness for fault tests: real dependency processes that a test may kill, the
production server on them, and a load generator that records every answer.

Meant for reuse (a Redis Sentinel failover test drives the same pieces):

* ``RedisServer``: one ``redis-server`` on a free port, nothing on disk; ``kill()``
  (SIGKILL) and ``start()`` again on the same port, empty.
* ``PostgresCluster``: ``initdb`` + ``pg_ctl`` in a temporary directory (as the
  ``postgres`` user when running as root); ``kill()`` (SIGKILL of the postmaster and
  its children, like a crashed machine) and ``start()`` again (crash recovery).
* ``IdpServer``: ``idp init`` and ``idp serve`` (2 workers) against given URLs.
* ``LoadGenerator``: a few threads, each repeating a full round (sign-in through
  ``/login`` with its CSRF token, the authorization code flow with PKCE, token,
  refresh, introspection, userinfo) and probing the previous round's tokens and
  signed-in browser (introspection, userinfo, refresh, authorize); every
  answer is kept as a ``Record`` (time, endpoint, status, content type, body snippet).

Every process is started in its own process group and stopped by ``stop()`` (also
when a test fails: use them as context managers or from fixtures with ``finally``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlencode

import psutil
import requests

from tests.conftest import TEST_SECRET
from tests.e2e.servers import IDP, clean_env, free_port, wait_until_up
from tests.oauth_support import Flow, query_of
from tests.redis_servers import RedisProcess, data_server_args
from tests.support import STRONG_PASSWORD, csrf_token

CALLBACK = "http://127.0.0.1:9/callback"
CLIENT_ID = "faults-rp"
BACKCHANNEL_CLIENT_ID = "faults-backchannel"
SCOPE = "openid profile offline_access"
REQUEST_TIMEOUT = 10.0
TRACE_MARKERS = ("Traceback (most recent call last)", 'File "/', "sqlalchemy.exc", "psycopg.")
# endpoints whose errors are JSON; every other one answers with an HTML page
JSON_ENDPOINTS = frozenset({"token", "refresh", "introspect", "revoke", "userinfo"})


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout} s")


def _stop_group(process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM) -> None:
    """Stop a process started with ``start_new_session`` and everything it started."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group


# -- Redis


class RedisServer(RedisProcess):
    """One data server of ``tests/redis_servers`` (nothing kept on disk) in a
    directory of its own, removed by ``stop``; ``kill`` is a SIGKILL (everything in
    memory is lost) and ``start`` brings up an empty server on the same port."""

    def __init__(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="idp-faults-redis-"))
        port = free_port()
        super().__init__(port, directory, data_server_args(port, directory))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


# -- PostgreSQL


def postgres_bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        found = shutil.which("pg_ctl")
        if found is None:
            raise RuntimeError("no PostgreSQL server binaries (pg_ctl) found")
        return Path(found).parent
    return candidates[-1].parent


class PostgresCluster:
    """A throw-away PostgreSQL cluster (trust authentication on 127.0.0.1, database
    ``idp``). As root, the server runs as the ``postgres`` user, which owns the
    temporary directory."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = postgres_bin_dir()
        self.directory = Path(tempfile.mkdtemp(prefix="idp-faults-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._initialised = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/idp"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(
            command, check=True, capture_output=True, timeout=timeout, cwd=self.directory
        )

    def start(self) -> None:
        if not self._initialised:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            )
        # fsync off: a killed server's writes are still in the OS's cache (only a crash
        # of the machine loses them). synchronous_commit stays on: with it off, the
        # last commits before a kill would be lost, which production does not do.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=60"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        if not self._initialised:
            self._run("createdb", "-h", str(self.directory), "-p", str(self.port), "idp")
            self._initialised = True

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and every child at once (a crash, not a shutdown);
        the next ``start()`` runs crash recovery."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            postmaster = psutil.Process(pid)
            processes = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(processes, timeout=10)

    def stop(self) -> None:
        if self.postmaster_pid() is not None and self.data.exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- the service


class IdpServer:
    """``idp serve`` (the production server, granian) on the given database and Redis."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        redis_url: str,
        *,
        workers: int = 2,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "IDP_DATA_DIR": str(data_dir),
            "IDP_DATABASE_URL": database_url,
            "IDP_REDIS_URL": redis_url,
            "IDP_SECRET_KEY": TEST_SECRET,
            "IDP_ISSUER": self.url,
            "IDP_WORKERS": str(workers),
            "IDP_LOG_LEVEL": "WARNING",
            # cheap hashing: the load is about the dependencies, not Argon2
            "IDP_ARGON2_MEMORY_KIB": "1024",
            "IDP_ARGON2_TIME_COST": "1",
            "IDP_ALLOW_WEAK_PASSWORD_HASHING": "true",
            "IDP_CLIENT_CACHE_SECONDS": "0",
            **(settings or {}),
        }
        self.log = data_dir / "idp.log"
        self.process: subprocess.Popen[str] | None = None

    def settings_values(self) -> dict[str, Any]:
        """The same settings as the server's environment, for ``build_settings``."""
        return {key[4:].lower(): value for key, value in self.env.items()}

    def init(self) -> None:
        subprocess.run(
            [IDP, "init"], env=clean_env(self.env), check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [IDP, "serve", "--port", str(self.port)],
                env=clean_env(self.env),
                text=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_up(self.url, self.process, timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def seed(
    server: IdpServer, usernames: list[str], *, backchannel_uri: str | None = None
) -> dict[str, str]:
    """Accounts (password ``STRONG_PASSWORD``) and a first-party client allowed to use
    refresh tokens (``CLIENT_ID``), and with ``backchannel_uri`` a second one that wants
    back-channel logout notices there (``BACKCHANNEL_CLIENT_ID``); written through the
    application's own services. Returns each client's secret."""
    from config.settings import build_settings
    from idp.app import create_app
    from idp.core.runtime import Runtime
    from tests.oauth_support import register
    from tests.support import create_user

    app = create_app(build_settings(server.settings_values()))
    try:
        for username in usernames:
            create_user(app, username)
        secrets = {}
        clients = {CLIENT_ID: None, BACKCHANNEL_CLIENT_ID: backchannel_uri}
        for client_id, uri in clients.items():
            if client_id == BACKCHANNEL_CLIENT_ID and uri is None:
                continue
            _, secret = register(
                app,
                client_id,
                redirect_uris=[CALLBACK],
                first_party=True,
                scope=SCOPE,
                backchannel_logout_uri=uri,
            )
            assert secret
            secrets[client_id] = secret
    finally:
        with app.app_context():
            Runtime.of().database.dispose()
            Runtime.of().store.close()
    return secrets


class LogoutReceiver:
    """A relying party's back-channel logout endpoint on 127.0.0.1: keeps the
    ``logout_token`` of every POST and answers 200."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        received = self.tokens

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                received.extend(form.get("logout_token", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/backchannel-logout"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.tokens) >= count:
                return True
            time.sleep(0.05)
        return False


# -- talking to the service like a browser and a relying party


@dataclass(frozen=True)
class Record:
    """One answer (``status`` 0: no answer at all, e.g. a refused connection)."""

    at: float  # time.monotonic() when the answer arrived
    endpoint: str
    status: int
    content_type: str
    snippet: str
    traced: bool  # the body looked like a stack trace or named internal modules
    thread: int = 0

    @property
    def is_json_endpoint(self) -> bool:
        return self.endpoint in JSON_ENDPOINTS


class Recorder:
    """Thread-safe list of records; ``call`` makes one request and records it."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def call(
        self,
        http: requests.Session,
        endpoint: str,
        method: str,
        url: str,
        *,
        thread: int = 0,
        **kwargs: Any,
    ) -> requests.Response | None:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        try:
            response = http.request(method, url, **kwargs)
        except requests.RequestException as exc:
            self.add(
                Record(
                    time.monotonic(), endpoint, 0, "", repr(exc)[:200], traced=False, thread=thread
                )
            )
            return None
        body = response.text
        self.add(
            Record(
                time.monotonic(),
                endpoint,
                response.status_code,
                response.headers.get("Content-Type", ""),
                body[:300],
                any(marker in body for marker in TRACE_MARKERS),
                thread,
            )
        )
        return response

    def add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def between(self, start: float, end: float) -> list[Record]:
        with self._lock:
            return [r for r in self.records if start <= r.at <= end]


@dataclass
class Tokens:
    access: str
    refresh: str | None
    id_token: str | None


@dataclass
class LiveClient:
    """The seeded relying party against a running server: every call is recorded."""

    base: str
    secret: str
    recorder: Recorder
    client_id: str = CLIENT_ID
    redirect_uri: str = CALLBACK

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.secret)

    def sign_in(
        self,
        http: requests.Session,
        username: str,
        password: str = STRONG_PASSWORD,
        thread: int = 0,
    ) -> requests.Response | None:
        """GET /login for the form's CSRF token, then POST it; None without a form."""
        page = self.recorder.call(http, "login_form", "GET", self.base + "/login", thread=thread)
        if page is None or page.status_code != 200:
            return None
        data = {"csrf_token": csrf_token(page.text), "username": username, "password": password}
        return self.recorder.call(
            http, "login", "POST", self.base + "/login", data=data, thread=thread
        )

    def authorize(self, http: requests.Session, flow: Flow, thread: int = 0) -> str | None:
        """The code, for a browser that is signed in (a first-party client: no consent)."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": SCOPE,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        response = self.recorder.call(
            http, "authorize", "GET", f"{self.base}/authorize?{urlencode(params)}", thread=thread
        )
        if response is None or response.status_code != 302:
            return None
        location = response.headers.get("Location", "")
        if not location.startswith(self.redirect_uri):
            return None
        callback = query_of(location)
        if callback.get("state") != flow.state:
            return None
        return callback.get("code")

    def redeem(self, code: str, flow: Flow, thread: int = 0) -> Tokens | None:
        return self._tokens(
            "token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": flow.verifier,
            },
            thread,
        )

    def refresh(self, refresh_token: str, thread: int = 0) -> Tokens | None:
        return self._tokens(
            "refresh", {"grant_type": "refresh_token", "refresh_token": refresh_token}, thread
        )

    def _tokens(self, endpoint: str, data: dict[str, str], thread: int) -> Tokens | None:
        response = self.recorder.call(
            requests.Session(),
            endpoint,
            "POST",
            self.base + "/token",
            data=data,
            auth=self.auth,
            thread=thread,
        )
        if response is None or response.status_code != 200:
            return None
        body = response.json()
        return Tokens(body["access_token"], body.get("refresh_token"), body.get("id_token"))

    def introspect(self, token: str, thread: int = 0) -> dict[str, Any] | None:
        response = self.recorder.call(
            requests.Session(),
            "introspect",
            "POST",
            self.base + "/introspect",
            data={"token": token},
            auth=self.auth,
            thread=thread,
        )
        if response is None or response.status_code != 200:
            return None
        answer: dict[str, Any] = response.json()
        return answer

    def revoke(self, token: str, thread: int = 0) -> int:
        response = self.recorder.call(
            requests.Session(),
            "revoke",
            "POST",
            self.base + "/revoke",
            data={"token": token},
            auth=self.auth,
            thread=thread,
        )
        return 0 if response is None else response.status_code

    def userinfo(self, token: str, thread: int = 0) -> requests.Response | None:
        return self.recorder.call(
            requests.Session(),
            "userinfo",
            "GET",
            self.base + "/userinfo",
            headers={"Authorization": f"Bearer {token}"},
            thread=thread,
        )

    def full_round(
        self, username: str, thread: int = 0, http: requests.Session | None = None
    ) -> Tokens | None:
        """Sign in, get a code, redeem it, refresh, introspect and read userinfo: the
        new tokens when every step succeeded, else None. ``http``: the browser (new)."""
        http = http or requests.Session()
        signed_in = self.sign_in(http, username, thread=thread)
        if signed_in is None or signed_in.status_code != 302:
            return None
        flow = Flow()
        code = self.authorize(http, flow, thread)
        if code is None:
            return None
        tokens = self.redeem(code, flow, thread)
        if tokens is None or tokens.refresh is None:
            return None
        refreshed = self.refresh(tokens.refresh, thread)
        if refreshed is None:
            return None
        answer = self.introspect(refreshed.access, thread)
        if answer is None or answer.get("active") is not True:
            return None
        info = self.userinfo(refreshed.access, thread)
        if info is None or info.status_code != 200 or info.json().get("sub") is None:
            return None
        return refreshed


@dataclass(frozen=True)
class Round:
    thread: int
    started: float
    finished: float
    ok: bool


@dataclass
class LoadGenerator:
    """One thread per username repeating ``LiveClient.full_round``, and before each
    round probing what the previous good round left (``_probe``, and an authorization
    request in its signed-in browser), until ``stop()`` or ``max_seconds``. Bounded in
    time and count."""

    client: LiveClient
    usernames: list[str]
    max_seconds: float = 60
    max_rounds: int = 5000
    pause: float = 0.02
    rounds: list[Round] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for index, username in enumerate(self.usernames):
            thread = threading.Thread(
                target=self._run, args=(index, username, deadline), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _run(self, index: int, username: str, deadline: float) -> None:
        last: Tokens | None = None
        browser: requests.Session | None = None  # signed in by the last good round
        count = 0
        while not self._stop.is_set() and time.monotonic() < deadline and count < self.max_rounds:
            count += 1
            if last is not None:
                self._probe(index, last)
            if browser is not None:
                self.client.authorize(browser, Flow(), index)  # a code nobody redeems
            started = time.monotonic()
            http = requests.Session()
            tokens = self.client.full_round(username, index, http)
            with self._lock:
                self.rounds.append(Round(index, started, time.monotonic(), tokens is not None))
            if tokens is not None:
                last, browser = tokens, http
            self._stop.wait(self.pause if tokens else self.pause * 5)

    def _probe(self, index: int, last: Tokens) -> None:
        """The previous round's tokens, used again: introspection, userinfo, a refresh
        (its successor replaces it)."""
        self.client.introspect(last.access, index)
        self.client.userinfo(last.access, index)
        if last.refresh is not None:
            refreshed = self.client.refresh(last.refresh, index)
            if refreshed is not None:
                last.refresh = refreshed.refresh

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)

    def wait_for_good_round(self, after: float, timeout: float) -> float | None:
        """The end of the first successful round started at or after ``after``
        (monotonic), waiting at most ``timeout`` seconds for one; None if none came."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                good = [r.finished for r in self.rounds if r.ok and r.started >= after]
            if good:
                return min(good)
            if time.monotonic() >= deadline or self._stop.is_set():
                return None
            time.sleep(0.02)

    def good_rounds(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for r in self.rounds if r.ok and start <= r.started <= end)

    def median_round_seconds(self) -> float | None:
        """How long a successful round takes (what a recovery time includes)."""
        with self._lock:
            durations = sorted(r.finished - r.started for r in self.rounds if r.ok)
        return durations[len(durations) // 2] if durations else None


@contextlib.contextmanager
def load(
    client: LiveClient, usernames: list[str], max_seconds: float = 60
) -> Iterator[LoadGenerator]:
    generator = LoadGenerator(client, usernames, max_seconds=max_seconds)
    generator.start()
    try:
        yield generator
    finally:
        generator.stop()


# -- judging what was recorded


def problems(records: list[Record]) -> list[str]:
    """What no answer may ever be: a 500 (or any 5xx but 503), no answer at all, a stack
    trace, or a 503 in the wrong form (JSON ``temporarily_unavailable`` at the JSON
    endpoints, an HTML page at the others)."""
    found = []
    for record in records:
        where = f"{record.endpoint} {record.status}: {record.snippet[:160]!r}"
        if record.status == 0:
            found.append(f"no answer from {where}")
        elif record.status >= 500 and record.status != 503:
            found.append(f"server error at {where}")
        if record.traced:
            found.append(f"internals in the body of {where}")
        if record.status == 503:
            if record.is_json_endpoint:
                if not record.content_type.startswith("application/json") or (
                    '"temporarily_unavailable"' not in record.snippet
                ):
                    found.append(f"503 without the JSON error at {where}")
            elif not record.content_type.startswith("text/html"):
                found.append(f"503 without a page at {where}")
    return found


# -- checks a fault test makes around the load


def readyz(base: str) -> int:
    """The status of ``/readyz`` (0 when the server does not answer)."""
    try:
        return requests.get(base + "/readyz", timeout=REQUEST_TIMEOUT).status_code
    except requests.RequestException:
        return 0


def wait_ready(base: str, timeout: float) -> float | None:
    """When (monotonic) ``/readyz`` first answered 200, or None within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if readyz(base) == 200:
            return time.monotonic()
        time.sleep(0.05)
    return None


SESSION_COOKIE = "idp_session"


def signed_out_cookie(client: LiveClient, username: str) -> str:
    """Sign ``username`` in, check the session works, sign out through ``/logout``;
    returns the (now signed-out) session cookie, which must never work again."""
    http = requests.Session()
    signed_in = client.sign_in(http, username)
    assert signed_in is not None
    assert signed_in.status_code == 302, signed_in.text[:300]
    cookie = http.cookies[SESSION_COOKIE]
    assert session_works(client.base, cookie)
    page = http.get(client.base + "/logout", timeout=REQUEST_TIMEOUT)
    assert page.status_code == 200, page.text[:300]
    out = http.post(
        client.base + "/logout",
        data={"csrf_token": csrf_token(page.text)},
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT,
    )
    assert out.status_code == 302, out.text[:300]
    assert not session_works(client.base, cookie)
    return cookie


def sign_out(base: str, cookie: str) -> int:
    """Sign a session out through ``/logout`` (its form, then the POST): the status."""
    http = requests.Session()
    http.cookies.set(SESSION_COOKIE, cookie)
    page = http.get(base + "/logout", allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert page.status_code == 200, page.text[:300]
    out = http.post(
        base + "/logout",
        data={"csrf_token": csrf_token(page.text)},
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT,
    )
    return out.status_code


def session_works(base: str, cookie: str) -> bool:
    """True when this session cookie opens ``/account`` (a page that needs a session)."""
    return account_status(base, cookie) == 200


def account_status(base: str, cookie: str) -> int:
    """The status of ``/account`` with this session cookie (200: signed in)."""
    http = requests.Session()
    http.cookies.set(SESSION_COOKIE, cookie)
    response = http.get(base + "/account", allow_redirects=False, timeout=REQUEST_TIMEOUT)
    return response.status_code


def signed_in_cookie(client: LiveClient, username: str) -> str:
    """A live session cookie of ``username`` (signed in through ``/login``)."""
    http = requests.Session()
    signed_in = client.sign_in(http, username)
    assert signed_in is not None
    assert signed_in.status_code == 302, signed_in.text[:300]
    cookie = http.cookies[SESSION_COOKIE]
    assert session_works(client.base, cookie)
    return cookie


def summary(records: list[Record]) -> str:
    """``endpoint status xcount`` for each kind of answer, for the test's output."""
    counts = Counter((r.endpoint, r.status) for r in records)
    return ", ".join(
        f"{endpoint} {status} x{n}" for (endpoint, status), n in sorted(counts.items())
    )


def database_problems(url: str) -> list[str]:
    """Half-written or duplicated OAuth rows: a grant with offline access but no refresh
    token, a grant with two live refresh tokens, a grant missing what every grant has."""
    from sqlalchemy import create_engine, text

    queries = {
        "grant with offline_access and no refresh token": """
            SELECT g.id FROM oauth_grants g
            WHERE g.scope LIKE '%offline_access%'
              AND NOT EXISTS (SELECT 1 FROM oauth_refresh_tokens r WHERE r.grant_id = g.id)
        """,
        "grant with more than one unused refresh token": """
            SELECT grant_id FROM oauth_refresh_tokens WHERE used_at IS NULL
            GROUP BY grant_id HAVING count(*) > 1
        """,
        "grant without user, scope or methods": """
            SELECT id FROM oauth_grants
            WHERE user_public_id = '' OR scope = '' OR amr IS NULL
        """,
        "refresh token with the same hash twice": """
            SELECT token_hash FROM oauth_refresh_tokens GROUP BY token_hash HAVING count(*) > 1
        """,
    }
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as connection:
            for what, query in queries.items():
                rows = connection.execute(text(query)).all()
                found += [f"{what}: {row[0]}" for row in rows]
    finally:
        engine.dispose()
    return found


def count_rows(url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608 - a table name of the test's own
    finally:
        engine.dispose()


def audit_verify(server: IdpServer) -> subprocess.CompletedProcess[str]:
    """``idp audit verify`` against the server's database (exit code 0: chain intact)."""
    return subprocess.run(
        [IDP, "audit", "verify"],
        env=clean_env(server.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class Outage:
    """Monotonic times of one outage: the kill, the start of the restore (the
    dependency may answer from then on), the restore done (the dependency is back),
    ``/readyz`` 200 again, the end of the first fully successful round after it."""

    killed_at: float
    restoring_at: float
    back_at: float
    ready_at: float | None
    recovered_at: float | None

    @property
    def ready_after(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.back_at

    @property
    def recovered_after(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.back_at

    def describe(self, what: str) -> str:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.2f} s"

        return (
            f"{what}: down for {self.restoring_at - self.killed_at:.2f} s, restored in "
            f"{self.back_at - self.restoring_at:.2f} s; after it was back, "
            f"/readyz 200 in {seconds(self.ready_after)}, first full round in "
            f"{seconds(self.recovered_after)}"
        )


def run_outage(
    generator: LoadGenerator,
    base: str,
    kill: Callable[[], None],
    restore: Callable[[], None],
    during: Callable[[], None],
    *,
    seconds: float = 2.0,
    recovery_timeout: float = 15.0,
) -> Outage:
    """Under the generator's load: ``kill``, run ``during`` (checks while the dependency
    is down), keep the outage ``seconds`` long, ``restore``, then wait for ``/readyz``
    and for the first fully successful round after the dependency is back."""
    kill()
    killed_at = time.monotonic()
    during()
    remaining = seconds - (time.monotonic() - killed_at)
    if remaining > 0:
        time.sleep(remaining)
    restoring_at = time.monotonic()
    restore()
    back_at = time.monotonic()
    ready_at = wait_ready(base, recovery_timeout)
    # rounds are recorded as they finish: this finds the first even if it came earlier
    recovered_at = generator.wait_for_good_round(back_at, recovery_timeout)
    return Outage(killed_at, restoring_at, back_at, ready_at, recovered_at)


def wait_warm(generator: LoadGenerator, threads: int, timeout: float = 30) -> None:
    """Until every load thread has finished one successful round."""

    def warm() -> bool:
        with generator._lock:
            return len({r.thread for r in generator.rounds if r.ok}) >= threads

    _wait(warm, timeout, "a successful round in every load thread")
