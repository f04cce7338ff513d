"""Where a password sign-in's server CPU goes: thread CPU time per step, in-process.

    .venv/bin/python bench/signin_breakdown.py --count 300

Complements bench/signin.py (which measures the whole server under load): here one
thread signs in ``--count`` times, serially, through Flask's test client against an app
on PostgreSQL + Redis (an isolated schema and namespace, removed at the end), with
Prometheus in multi-process mode as under ``idp serve``. Chosen functions are wrapped
to add up their thread CPU time (``time.thread_time``: waiting for PostgreSQL or Redis
is not counted). The WSGI server's share (accepting, parsing, writing) is not included.
Nested steps are indented; a step's time includes its children's.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

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
from signin import BROWSER_HEADERS, CSRF, PASSWORD, argon2_parameters

# (depth, module, attribute path, label): what to time, in display order.
PROBES: list[Probe] = [
    (0, "flask.app", "Flask.wsgi_app", "whole request inside Flask"),
    (1, "flask.app", "Flask.preprocess_request", "before_request hooks"),
    (2, "flask_wtf.csrf", "CSRFProtect.protect", "CSRF check"),
    (1, "accounts.credentials.passwords", "PasswordHasher.verify", "Argon2id verify"),
    (1, "accounts.people.services", "AccountService.find_by_username", "account look-up"),
    (
        2,
        "sqlalchemy.orm.strategies",
        "_SelectInLoader._load_for_path",
        "selectin load of User.totp (2nd SELECT)",
    ),
    (1, "idp.core.throttle", "Throttle.check", "throttle check (Redis GETs)"),
    (1, "idp.core.throttle", "Throttle.success", "throttle reset (Redis DEL)"),
    (1, "idp.core.audit.services", "AuditLog.record", "audit event (AuditLog.record)"),
    (
        2,
        "sqlalchemy.orm.bulk_persistence",
        "_BulkUDCompileState.orm_pre_session_exec",
        "ORM UPDATE set-up (synchronize_session)",
    ),
    (2, "idp.core.audit.services", "chain_mac", "chain MAC (JSON + HMAC)"),
    (1, "sqlalchemy.orm.session", "Session.flush", "ORM flush (unit of work)"),
    (1, "sqlalchemy.orm.session", "Session.commit", "COMMIT"),
    (1, "idp.core.sessions", "complete_sign_in", "complete_sign_in"),
    (1, "idp.core.throttle", "Throttle.issue_device_cookie", "device cookie"),
    (1, "jinja2.environment", "Template.render", "template rendering"),
    (1, "flask_wtf.csrf", "generate_csrf", "CSRF token generation"),
    (1, "flask.app", "Flask.process_response", "after_request hooks"),
    (2, "idp.core.sessions", "StoreSessionInterface.save_session", "session save (Redis)"),
    (1, "idp.core.sessions", "StoreSessionInterface.open_session", "session open (Redis GET)"),
    (1, "sqlalchemy.engine.base", "Connection._execute_context", "SQL statements (Core)"),
    (2, "psycopg", "Cursor.execute", "psycopg execute"),
    (1, "idp.core.store", "RedisStore._call", "Redis commands"),
]


def install(recorder: Recorder) -> None:
    absent = install_probes(recorder, PROBES)
    if absent:
        raise RuntimeError(f"probes not found in the code measured: {absent}")
    # the flow imports complete_sign_in by name: point it at the wrapped one
    flow: Any = importlib.import_module("idp.login.flow")
    flow.complete_sign_in = importlib.import_module("idp.core.sessions").complete_sign_in


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=300, help="measured sign-ins")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured sign-ins first")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000 or not 0 <= args.warmup <= 10_000:
        parser.error("--count must be in 1..100000 and --warmup in 0..10000")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    usernames = [f"bench{index:05d}" for index in range(50)]
    recorder = Recorder()
    with Environment(
        embedded=False,
        database_url=args.database_url,
        redis_url=args.redis_url,
        tag="breakdown",
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

        # before the app exists: the lean layer in front of Flask keeps the (wrapped)
        # Flask.wsgi_app it finds when the app is built
        install(recorder)
        app = create_app(build_settings(environment.settings_values(issuer="http://127.0.0.1")))
        engine = app.extensions["idp.runtime"].database.engine
        event.listen(engine, "before_cursor_execute", lambda *_: recorder.count("SQL statement"))
        event.listen(engine, "commit", lambda *_: recorder.count("SQL COMMIT"))
        totals: defaultdict[str, float] = defaultdict(float)

        def sign_in(index: int) -> None:
            client = app.test_client()  # a new browser: no cookies
            recorder.phase = "GET"
            started = time.thread_time()
            page = client.get("/login", headers=BROWSER_HEADERS)
            totals["GET"] += time.thread_time() - started
            match = CSRF.search(page.data)
            assert page.status_code == 200
            assert match is not None
            form = {
                "csrf_token": match.group(1).decode(),
                "username": usernames[index % len(usernames)],
                "password": PASSWORD,
            }
            recorder.phase = "POST"
            started = time.thread_time()
            answer = client.post("/login", data=form, headers=BROWSER_HEADERS)
            totals["POST"] += time.thread_time() - started
            if answer.status_code != 302:
                raise RuntimeError(f"sign-in answered {answer.status_code}, not 302")

        try:
            for index in range(args.warmup):
                sign_in(index)
            recorder.reset()
            totals.clear()
            for index in range(args.count):
                sign_in(index)
        finally:
            app.extensions["idp.runtime"].database.dispose()
    count = args.count
    steps: dict[str, list[dict[str, Any]]] = {}
    for phase in ("GET", "POST"):
        rows = []
        for depth, _module, _path, label in PROBES:
            key = (phase, label)
            if recorder.calls[key]:
                rows.append(
                    {
                        "step": label,
                        "depth": depth,
                        "cpu_ms": round(recorder.seconds[key] / count * 1000, 3),
                        "calls": round(recorder.calls[key] / count, 2),
                    }
                )
        steps[phase] = rows
    return {
        "benchmark": "signin-breakdown",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "code": code_version(),
        "argon2": argon2_parameters(),
        "signins": count,
        "cpu_ms_per_request": {
            phase: round(totals[phase] / count * 1000, 3) for phase in ("GET", "POST")
        },
        "sql_statements_per_signin": {
            phase: recorder.calls[(phase, "SQL statement")] / count for phase in ("GET", "POST")
        },
        "sql_commits_per_signin": {
            phase: recorder.calls[(phase, "SQL COMMIT")] / count for phase in ("GET", "POST")
        },
        "steps": steps,
    }


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"CPU per request over {report['signins']} serial sign-ins "
        "(thread CPU time, ms; Flask test client, without the WSGI server)"
    )
    for phase in ("GET", "POST"):
        total = report["cpu_ms_per_request"][phase]
        sql = report["sql_statements_per_signin"][phase]
        commits = report["sql_commits_per_signin"][phase]
        print(f"\n  {phase} /login: {total:.2f} ms  ({sql:g} SQL statements, {commits:g} COMMITs)")
        for row in report["steps"][phase]:
            indent = "  " * row["depth"]
            print(f"    {row['cpu_ms']:7.2f}  {row['calls']:4g}x  {indent}{row['step']}")
    inside = {
        phase: next((row["cpu_ms"] for row in report["steps"][phase] if row["depth"] == 0), 0.0)
        for phase in ("GET", "POST")
    }
    verify = next(
        (row["cpu_ms"] for row in report["steps"]["POST"] if row["step"] == "Argon2id verify"),
        0.0,
    )
    flask_total = inside["GET"] + inside["POST"]
    client = sum(report["cpu_ms_per_request"].values()) - flask_total
    print(
        f"\n  sign-in inside Flask (GET + POST): {flask_total:.2f} ms = Argon2id verify "
        f"{verify:.2f} ms + everything else {flask_total - verify:.2f} ms"
        f"\n  (the test client itself adds {client:.2f} ms; the WSGI server's share is not here)"
    )


def main() -> int:
    args = parse_args()
    interrupt_on_sigterm()
    report = run(args)
    print_report(report)
    if not args.no_save:
        path = write_results("signin-breakdown", report, None)
        print(f"  written {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; schema, Redis keys and data dir removed")
        sys.exit(130)
