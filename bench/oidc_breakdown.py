"""Where the OpenID Connect endpoints' server CPU goes: thread CPU time per step.

    .venv/bin/python bench/oidc_breakdown.py --count 2000

Complements bench/oidc.py (the whole server under load). Here one thread sends
``--count`` requests per scenario, serially, through Flask's test client to an app on
PostgreSQL + Redis (an isolated schema and namespace, removed at the end), with
Prometheus in multi-process mode as under ``idp serve``. Chosen functions, and every
before/after-request and teardown hook, are wrapped to add up their thread CPU time
(``time.thread_time``: waiting for PostgreSQL or Redis is not counted). The WSGI
server's share (granian: accepting, parsing, writing) is not included: it is the
difference between bench/oidc.py's CPU per operation and "whole request". Nested steps
are indented; a step's time includes its children's. The probes themselves cost a
little: each scenario is first run without them, and the report says how much they add.
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib
import os
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    Environment,
    Probe,
    Recorder,
    code_version,
    install_probes,
    interrupt_on_sigterm,
    machine_info,
    write_results,
)
from oidc import (
    BROWSER_HEADERS,
    BROWSER_SCOPE,
    CSRF,
    HIDDEN,
    M2M_CLIENT,
    M2M_SCOPE,
    PASSWORD,
    REDIRECT_URI,
    REFRESH_SCOPE,
    RS_CLIENT,
    WEB_CLIENT,
    authorize_path,
    code_from,
    pkce_pair,
)

# (depth, module, attribute path, label): what to time, in display order. Hooks
# (before_request, after_request, teardown) are found on the app and added under
# their parents.
WHOLE = "whole request (the app's WSGI callable)"
FLASK = "Flask (Flask.wsgi_app)"
# (depth, module, attribute path, label): what to time, in display order. Hooks
# (before_request, after_request, teardown) are found on the app and added under
# their parents; module "" marks the two rows wrapped on the app itself (run()).
# POST /token, /introspect and /revoke may be served by idp.oauth.lean in front of
# Flask: then the "lean" rows replace Flask's. Probes whose target does not exist in
# the code measured are skipped.
PROBES: list[Probe] = [
    (0, "", "", WHOLE),
    (1, "", "", FLASK),
    (2, "flask.ctx", "RequestContext.push", "request context push (incl. session open)"),
    (
        3,
        "idp.core.sessions",
        "StoreSessionInterface.open_session",
        "session open (cookie, Redis GET)",
    ),
    (2, "flask.app", "Flask.preprocess_request", "before_request hooks"),
    (2, "flask.app", "Flask.dispatch_request", "view"),
    (1, "idp.oauth.lean", "check_input", "lean: input check"),
    (1, "idp.oauth.lean", "LeanEndpoints._answer", "lean: app context + Authlib endpoint"),
    (
        3,
        "idp.oauth.server",
        "IdpAuthorizationServer.create_oauth2_request",
        "Authlib request wrapping (FlaskOAuth2Request)",
    ),
    (
        3,
        "authlib.oauth2.rfc6749.authorization_server",
        "AuthorizationServer.get_token_grant",
        "Authlib grant selection",
    ),
    (
        3,
        "authlib.oauth2.rfc6749.authorization_server",
        "AuthorizationServer.authenticate_client",
        "client authentication (Authlib)",
    ),
    (4, "idp.oauth.clients", "ClientRegistry.get", "client look-up (per-worker cache)"),
    (4, "idp.oauth.clients", "ClientInfo.check_client_secret", "client secret HMAC"),
    (3, "idp.oauth.authorize_request", "check", "authorization request validation (Authlib)"),
    (3, "accounts.people.session", "current_user", "current_user (account look-up)"),
    (3, "idp.oauth.server", "OAuthRuntime.tokens", "TokenService() (opens a DB session)"),
    (3, "idp.oauth.tokens", "TokenService.new_code", "new authorization code (Redis SET)"),
    (3, "idp.oauth.tokens", "TokenService.take_code", "take code (Redis GETDEL + SET)"),
    (3, "idp.oauth.tokens", "TokenService.create_grant", "create grant (INSERT, Redis EXISTS)"),
    (
        3,
        "idp.oauth.tokens",
        "TokenService.find_refresh_token",
        "find refresh token (SELECT token JOIN grant)",
    ),
    (3, "idp.oauth.tokens", "TokenService.rotate", "rotate refresh token (UPDATE + new)"),
    (3, "idp.oauth.tokens", "TokenService.new_refresh_token", "new refresh token (INSERT)"),
    (3, "accounts.people.services", "AccountService.get", "account look-up (ORM SELECT)"),
    (3, "accounts.people.services", "AccountService.is_active", "account active? (SELECT status)"),
    (3, "idp.oauth.tokens", "TokenService.grant", "grant look-up (ORM SELECT)"),
    (3, "idp.oauth.tokens", "TokenService.access_token", "access token (claims + JWT)"),
    (3, "idp.oauth.tokens", "TokenService.id_token", "ID token (claims + JWT)"),
    (4, "idp.oauth.keys", "SigningKeys.sign", "JWT signing (joserfc, ES256)"),
    (
        5,
        "joserfc._rfc7518.jws_algs",
        "ESAlgorithm.sign",
        "ECDSA P-256 signature (cryptography)",
    ),
    (3, "idp.oauth.tokens", "AccessTokenVerifier.claims", "access token check (cached)"),
    (4, "idp.oauth.keys", "SigningKeys.verify", "JWT verification (joserfc, uncached)"),
    (4, "idp.oauth.tokens", "AccessTokenVerifier.is_revoked", "revocation check (one Redis MGET)"),
    (
        3,
        "authlib.oauth2.rfc7662.introspection",
        "IntrospectionEndpoint.create_introspection_payload",
        "introspection payload",
    ),
    (3, "json", "dumps", "json.dumps"),
    (3, "json", "loads", "json.loads"),
    (2, "flask.app", "Flask.process_response", "after_request hooks + session save"),
    (3, "idp.core.sessions", "StoreSessionInterface.save_session", "session save"),
    (2, "flask.ctx", "RequestContext.pop", "request context pop (incl. teardown)"),
    (1, "idp.oauth.lean", "finish_response", "lean: security headers, request id"),
    (1, "idp.oauth.lean", "observe_request", "lean: metrics"),
    (1, "idp.oauth.lean", "log_access", "lean: access log (filtered at WARNING)"),
    (1, "sqlalchemy.orm.session", "sessionmaker.__call__", "ORM Session created"),
    (1, "sqlalchemy.orm.session", "Session.close", "ORM Session closed"),
    (1, "sqlalchemy.engine.base", "Connection._execute_context", "SQL statements (Core)"),
    (2, "psycopg", "Cursor.execute", "psycopg execute"),
    (1, "sqlalchemy.orm.session", "Session.flush", "ORM flush (unit of work)"),
    (1, "sqlalchemy.orm.session", "Session.commit", "COMMIT"),
    (1, "idp.core.store", "RedisStore._call", "Redis commands"),
    (1, "werkzeug.wrappers.request", "Request._load_form_data", "form parsing (Werkzeug)"),
    (1, "werkzeug.wrappers.response", "Response.__init__", "Response objects"),
    (1, "logging", "Logger.info", "logging: Logger.info (filtered at WARNING)"),
    (1, "uuid", "uuid4", "uuid4 (request id, jti, grant id)"),
]
HOOK_PARENTS = {
    "before": "before_request hooks",
    "after": "after_request hooks + session save",
    "teardown": "request context pop (incl. teardown)",
}


def install(app: Any, recorder: Recorder) -> list[str]:
    """Wrap the probes' targets; the labels of those absent from the code measured."""
    absent = install_probes(recorder, PROBES)
    # modules that imported these by name: point them at the wrapped ones
    authorize: Any = importlib.import_module("idp.oauth.authorize")
    auth: Any = importlib.import_module("accounts.people.session")
    authorize_request: Any = importlib.import_module("idp.oauth.authorize_request")
    authorize.current_user = auth.current_user
    authorize.check = authorize_request.check
    # the app's WSGI callable (Flask's, or middleware in front of it holding Flask's)
    outer = app.wsgi_app
    if hasattr(outer, "_downstream"):
        outer._downstream = recorder.wrap(outer._downstream, FLASK)
        app.wsgi_app = recorder.wrap(outer, WHOLE)
    else:
        app.wsgi_app = recorder.wrap(recorder.wrap(outer, FLASK), WHOLE)
    return absent


def wrap_hooks(app: Any, recorder: Recorder) -> list[tuple[int, str, str]]:
    """Wrap every app-wide before/after-request and teardown hook; their rows."""
    rows: list[tuple[int, str, str]] = []
    groups = (
        ("before", app.before_request_funcs),
        ("after", app.after_request_funcs),
        ("teardown", app.teardown_request_funcs),
    )
    for kind, registry in groups:
        hooks = registry.get(None, [])
        for index, hook in enumerate(hooks):
            label = f"{kind} hook {hook.__module__}.{hook.__qualname__}"
            hooks[index] = recorder.wrap(hook, label)
            rows.append(((kind == "teardown" and 2) or 2, HOOK_PARENTS[kind], label))
    teardown = app.teardown_appcontext_funcs
    for index, hook in enumerate(teardown):
        label = f"teardown hook {hook.__module__}.{hook.__qualname__}"
        teardown[index] = recorder.wrap(hook, label)
        rows.append((3, HOOK_PARENTS["teardown"], label))
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="measured requests per scenario")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--token-pool", type=int, default=200)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000 or not 0 <= args.warmup <= 10_000:
        parser.error("--count must be in 1..100000 and --warmup in 0..10000")
    if not 1 <= args.token_pool <= 10_000:
        parser.error("--token-pool must be in 1..10000")
    return args


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


class Bench:
    """The app, its clients and signed-in browsers, and one request per scenario."""

    def __init__(self, app: Any, usernames: list[str]) -> None:
        from idp.core.runtime import db
        from idp.oauth.clients import Registration
        from idp.oauth.server import OAuthRuntime

        self.app = app
        with app.app_context():
            registry = OAuthRuntime.of().clients
            _, web = registry.create(
                db(),
                Registration(
                    client_id=WEB_CLIENT,
                    redirect_uris=[REDIRECT_URI],
                    grant_types=["authorization_code", "refresh_token"],
                    scope="openid profile offline_access",
                    first_party=True,
                ),
            )
            _, m2m = registry.create(
                db(),
                Registration(
                    client_id=M2M_CLIENT, grant_types=["client_credentials"], scope=M2M_SCOPE
                ),
            )
            _, rs = registry.create(
                db(),
                Registration(
                    client_id=RS_CLIENT, grant_types=["client_credentials"], scope=M2M_SCOPE
                ),
            )
        assert web
        assert m2m
        assert rs
        self.web = _basic(WEB_CLIENT, web)
        self.m2m = _basic(M2M_CLIENT, m2m)
        self.rs = _basic(RS_CLIENT, rs)
        self.browsers = [self._signed_in(name) for name in usernames]
        self.refresh_token = ""
        self.tokens: list[str] = []
        self.sequence = 0

    def _signed_in(self, username: str) -> Any:
        browser = self.app.test_client()
        _, challenge = pkce_pair()
        answer = browser.get(
            authorize_path(WEB_CLIENT, BROWSER_SCOPE, "s", challenge), headers=BROWSER_HEADERS
        )
        page = browser.get(answer.headers["Location"], headers=BROWSER_HEADERS)
        token = CSRF.search(page.data)
        assert token is not None
        form = {
            "csrf_token": token.group(1).decode(),
            "username": username,
            "password": PASSWORD,
            **{k.decode(): v.decode().replace("&amp;", "&") for k, v in HIDDEN.findall(page.data)},
        }
        answer = browser.post("/login", data=form, headers=BROWSER_HEADERS)
        assert answer.status_code == 302, answer.status_code
        browser.get(answer.headers["Location"], headers=BROWSER_HEADERS)
        return browser

    def code_flow(self, browser: Any, scope: str, phase: Callable[[str], None]) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(8)
        phase("authorize")
        answer = browser.get(
            authorize_path(WEB_CLIENT, scope, state, challenge), headers=BROWSER_HEADERS
        )
        code = code_from(answer.headers.get("Location", ""), state)
        assert code is not None, answer.status_code
        phase("token (code)")
        response = self.app.test_client().post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            headers=self.web,
        )
        assert response.status_code == 200, response.data
        tokens: dict[str, Any] = response.get_json()
        return tokens

    def prepare(self, pool: int) -> None:
        client = self.app.test_client()
        self.client = client
        self.tokens = [
            self.code_flow(self.browsers[i % len(self.browsers)], BROWSER_SCOPE, _ignore)[
                "access_token"
            ]
            for i in range(pool)
        ]
        self.refresh_token = self.code_flow(self.browsers[0], REFRESH_SCOPE, _ignore)[
            "refresh_token"
        ]

    def healthz(self, phase: Callable[[str], None]) -> None:
        phase("healthz")
        answer = self.client.get("/healthz")
        assert answer.status_code == 200, answer.data

    def client_credentials(self, phase: Callable[[str], None]) -> None:
        phase("client_credentials")
        answer = self.client.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": M2M_SCOPE},
            headers=self.m2m,
        )
        assert answer.status_code == 200, answer.data

    def refresh(self, phase: Callable[[str], None]) -> None:
        phase("refresh")
        answer = self.client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
            headers=self.web,
        )
        assert answer.status_code == 200, answer.data
        self.refresh_token = answer.get_json()["refresh_token"]

    def introspection(self, phase: Callable[[str], None]) -> None:
        self.sequence += 1
        phase("introspection")
        answer = self.client.post(
            "/introspect",
            data=urlencode(
                {
                    "token": self.tokens[self.sequence % len(self.tokens)],
                    "token_type_hint": "access_token",
                }
            ),
            headers={**self.rs, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200, answer.data
        assert b'"active":true' in answer.data, answer.data

    def userinfo(self, phase: Callable[[str], None]) -> None:
        self.sequence += 1
        phase("userinfo")
        token = self.tokens[self.sequence % len(self.tokens)]
        answer = self.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.data

    def browser(self, phase: Callable[[str], None]) -> None:
        self.sequence += 1
        browser = self.browsers[self.sequence % len(self.browsers)]
        self.code_flow(browser, BROWSER_SCOPE, phase)


def _ignore(_phase: str) -> None:
    return


SCENARIOS = {
    "healthz": ["healthz"],
    "client_credentials": ["client_credentials"],
    "refresh": ["refresh"],
    "introspection": ["introspection"],
    "userinfo": ["userinfo"],
    "browser": ["authorize", "token (code)"],
}


class Phases:
    """Thread CPU time per request type (the test client included)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.totals: defaultdict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()
        self.current: str | None = None
        self.started = 0.0

    def __call__(self, name: str) -> None:
        self.end()
        self.current = name
        self.recorder.phase = name
        self.started = time.thread_time()

    def end(self) -> None:
        if self.current is not None:
            self.totals[self.current] += time.thread_time() - self.started
            self.counts[self.current] += 1
        self.current = None
        self.recorder.phase = "setup"

    def forget(self, names: list[str]) -> None:
        for name in names:
            self.totals.pop(name, None)
            self.counts.pop(name, None)
            for key in [k for k in self.recorder.seconds if k[0] == name]:
                del self.recorder.seconds[key]
            for key in [k for k in self.recorder.calls if k[0] == name]:
                del self.recorder.calls[key]


def measure(bench: Bench, phases: Phases, count: int, warmup: int) -> None:
    for name, names in SCENARIOS.items():
        step: Callable[[Callable[[str], None]], None] = getattr(bench, name)
        for _ in range(warmup):
            step(_ignore)
        phases.forget(names)
        for _ in range(count):
            step(phases)
            phases.end()


def run(args: argparse.Namespace) -> dict[str, Any]:
    usernames = [f"oidc{index:05d}" for index in range(8)]
    recorder = Recorder()
    with Environment(
        embedded=False,
        database_url=args.database_url,
        redis_url=args.redis_url,
        tag="oidcbreak",
    ) as environment:
        # as under `idp serve`: prometheus_client in multi-process mode (set before import)
        metrics_dir = environment.data_dir / "run" / "metrics"
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        environment.init()
        environment.create_users(usernames, PASSWORD)

        from sqlalchemy import event

        from config.settings import build_settings
        from idp.app import create_app

        app = create_app(build_settings(environment.settings_values(issuer="http://127.0.0.1")))
        try:
            bench = Bench(app, usernames)
            # the pool's tokens are verified once per worker: warm up past them
            warmup = max(args.warmup, args.token_pool + 10)
            bench.prepare(args.token_pool)
            # first without probes: what a request costs with the test client, unmeasured
            plain = Phases(recorder)
            gc_watch = GcWatch(recorder)
            gc.callbacks.append(gc_watch)
            try:
                measure(bench, plain, args.count, warmup)
            finally:
                gc.callbacks.remove(gc_watch)
            engine = app.extensions["idp.runtime"].database.engine
            event.listen(
                engine, "before_cursor_execute", lambda *_: recorder.count("SQL statement")
            )
            event.listen(engine, "commit", lambda *_: recorder.count("SQL COMMIT"))
            count_redis_commands(app, recorder)
            absent = install(app, recorder)
            hook_rows = wrap_hooks(app, recorder)
            probed = Phases(recorder)
            measure(bench, probed, args.count, warmup)
        finally:
            app.extensions["idp.runtime"].database.dispose()
    result = report(args, recorder, plain, probed, hook_rows, gc_watch)
    result["probes_absent"] = absent
    return result


class GcWatch:
    """Collections per generation and their thread CPU, per phase (``gc.callbacks``)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.started = 0.0
        self.pauses: defaultdict[tuple[str, int], list[float]] = defaultdict(list)

    def __call__(self, stage: str, info: dict[str, Any]) -> None:
        if stage == "start":
            self.started = time.thread_time()
        else:
            key = (self.recorder.phase, int(info["generation"]))
            self.pauses[key].append(time.thread_time() - self.started)

    def summary(self, phase: str, count: int) -> dict[str, Any]:
        result = {}
        for generation in (0, 1, 2):
            pauses = self.pauses.get((phase, generation), [])
            result[f"gen{generation}"] = {
                "per_1000_requests": round(len(pauses) / count * 1000, 2),
                "cpu_ms_per_request": round(sum(pauses) / count * 1000, 4),
                "longest_ms": round(max(pauses) * 1000, 2) if pauses else None,
            }
        return result


def count_redis_commands(app: Any, recorder: Recorder) -> None:
    client = app.extensions["idp.runtime"].store._redis
    original = client.execute_command

    def counted(*args: Any, **kwargs: Any) -> Any:
        recorder.count("Redis command")
        return original(*args, **kwargs)

    client.execute_command = counted


def report(
    args: argparse.Namespace,
    recorder: Recorder,
    plain: Phases,
    probed: Phases,
    hook_rows: list[tuple[int, str, str]],
    gc_watch: GcWatch,
) -> dict[str, Any]:
    layout: list[tuple[int, str]] = []
    for depth, _module, _path, label in PROBES:
        layout.append((depth, label))
        layout.extend(
            (hook_depth, hook) for hook_depth, parent, hook in hook_rows if parent == label
        )
    requests: dict[str, Any] = {}
    for phases in SCENARIOS.values():
        for phase_name in phases:
            count = probed.counts[phase_name] or 1
            rows = []
            for depth, label in layout:
                key = (phase_name, label)
                if recorder.calls[key]:
                    rows.append(
                        {
                            "step": label,
                            "depth": depth,
                            "cpu_ms": round(recorder.seconds[key] / count * 1000, 4),
                            "calls": round(recorder.calls[key] / count, 2),
                        }
                    )
            plain_count = plain.counts[phase_name] or 1
            requests[phase_name] = {
                "requests": probed.counts[phase_name],
                "cpu_ms_with_test_client_unprobed": round(
                    plain.totals[phase_name] / plain_count * 1000, 4
                ),
                "cpu_ms_with_test_client_probed": round(
                    probed.totals[phase_name] / count * 1000, 4
                ),
                "garbage_collection_unprobed": gc_watch.summary(phase_name, plain_count),
                "sql_statements": recorder.calls[(phase_name, "SQL statement")] / count,
                "sql_commits": recorder.calls[(phase_name, "SQL COMMIT")] / count,
                "redis_commands": recorder.calls[(phase_name, "Redis command")] / count,
                "steps": rows,
            }
    return {
        "benchmark": "oidc-breakdown",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "code": code_version(),
        "count": args.count,
        "requests": requests,
    }


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"CPU per request over {report['count']} serial requests per scenario "
        "(thread CPU time, ms; Flask test client, without the WSGI server)"
    )
    for name, entry in report["requests"].items():
        inside = next((row["cpu_ms"] for row in entry["steps"] if row["depth"] == 0), 0.0)
        overhead = (
            entry["cpu_ms_with_test_client_probed"] - entry["cpu_ms_with_test_client_unprobed"]
        )
        print(
            f"\n  {name}: {inside:.3f} ms in the app  ({entry['sql_statements']:g} SQL "
            f"statements, {entry['sql_commits']:g} COMMITs, {entry['redis_commands']:g} Redis "
            f"commands); the probes add ~{overhead:.3f} ms, so unprobed ~{inside - overhead:.3f}"
        )
        collections = ", ".join(
            f"{name} {values['per_1000_requests']:g}/1000 requests "
            f"({values['cpu_ms_per_request']:.3f} ms/request, longest {values['longest_ms']} ms)"
            for name, values in entry["garbage_collection_unprobed"].items()
            if values["per_1000_requests"]
        )
        print(f"    garbage collection: {collections or 'none'}")
        for row in entry["steps"]:
            indent = "  " * row["depth"]
            print(f"    {row['cpu_ms']:7.3f}  {row['calls']:5g}x  {indent}{row['step']}")


def main() -> int:
    args = parse_args()
    interrupt_on_sigterm()
    result = run(args)
    print_report(result)
    if not args.no_save:
        path = write_results("oidc-breakdown", result, None)
        print(f"  written {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; schema, Redis keys and data dir removed")
        sys.exit(130)
