"""Benchmark: complete password sign-ins per CPU-second of the server's processes.

One sign-in is what a new browser does: GET /login (a session cookie and a CSRF token),
then POST /login with the token, username and password, answered by 302 to /account.
Every iteration uses a fresh cookie jar and connection, so each does the full work.

    .venv/bin/python bench/signin.py --duration 20

The server is the production one (``idp serve``: granian on PostgreSQL + Redis) in an
isolated schema, namespace and data dir, all removed at the end. The load generator is
a separate process, so only the server's CPU (granian main process + workers) is counted.
Results: a summary on stdout and JSON in bench/results/signin-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    HOST,
    REQUEST_TIMEOUT,
    Environment,
    LoadPlan,
    LoadResult,
    Sample,
    Server,
    check_ranges,
    code_version,
    interrupt_on_sigterm,
    latency_summary,
    machine_info,
    run_load,
    stopping,
    write_results,
)

PASSWORD = "bench sign-in passphrase 7f3a"
CSRF = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')
BROWSER_HEADERS = {
    "User-Agent": "idp-bench/1 (signin)",
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
}


def _cookies(response: http.client.HTTPResponse, jar: dict[str, str]) -> None:
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]


def _cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in jar.items())


class SignIn:
    """One complete password sign-in by a new browser (fresh cookies and connection)."""

    def __init__(self, usernames: list[str], password: str) -> None:
        self.usernames = usernames
        self.password = password

    def __call__(self, port: int, sequence: int) -> Sample:
        username = self.usernames[sequence % len(self.usernames)]
        jar: dict[str, str] = {}
        connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        start = time.monotonic()
        post_start = start
        try:
            connection.request("GET", "/login", headers=BROWSER_HEADERS)
            page = connection.getresponse()
            body = page.read()
            _cookies(page, jar)
            match = CSRF.search(body)
            if page.status != 200 or match is None:
                return Sample(start, time.monotonic(), ok=False, error=f"GET {page.status}")
            form = urlencode(
                {
                    "csrf_token": match.group(1).decode(),
                    "username": username,
                    "password": self.password,
                }
            )
            post_start = time.monotonic()
            connection.request(
                "POST",
                "/login",
                body=form,
                headers={
                    **BROWSER_HEADERS,
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": _cookie_header(jar),
                    "Origin": f"http://{HOST}:{port}",
                    "Referer": f"http://{HOST}:{port}/login",
                },
            )
            answer = connection.getresponse()
            answer.read()
            end = time.monotonic()
            location = answer.getheader("Location") or ""
            ok = answer.status == 302 and location.endswith("/account")
            return Sample(
                start,
                end,
                ok=ok,
                phases={"get": post_start - start, "post": end - post_start},
                error=None if ok else f"POST {answer.status} {location}".strip(),
            )
        except (OSError, http.client.HTTPException) as exc:
            return Sample(start, time.monotonic(), ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()


# -- the cost of one password hash ------------------------------------------------------


def argon2_parameters() -> dict[str, int]:
    from config.settings import build_settings

    defaults = build_settings({})
    return {
        "memory_kib": defaults.argon2_memory_kib,
        "time_cost": defaults.argon2_time_cost,
        "parallelism": defaults.argon2_parallelism,
    }


def measure_argon2(samples: int) -> dict[str, Any]:
    """CPU and wall time of hash() and verify() with the service's default parameters."""
    from accounts.credentials.passwords import PasswordHasher

    parameters = argon2_parameters()
    hasher = PasswordHasher(**parameters)
    stored = hasher.hash(PASSWORD)  # first call pays one-off costs
    result: dict[str, Any] = {"parameters": parameters, "samples": samples}
    for name in ("hash", "verify"):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(samples):
            if name == "hash":
                hasher.hash(PASSWORD)
            else:
                assert hasher.verify(stored, PASSWORD)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        result[f"{name}_cpu_ms"] = round(cpu / samples * 1000, 2)
        result[f"{name}_wall_ms"] = round(wall / samples * 1000, 2)
    return result


# -- the run ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--workers", type=int, default=2, help="server worker processes (default 2)"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="simultaneous simulated browsers (default 4)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="measured seconds (default 20; with --count, the upper bound, default 600)",
    )
    parser.add_argument(
        "--count", type=int, default=None, help="end the measured phase after this many sign-ins"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--users", type=int, default=200, help="accounts to sign in as")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="SQLite + in-process store, 1 worker, --workers ignored (for comparison)",
    )
    parser.add_argument(
        "--hash-samples",
        type=int,
        default=50,
        help="Argon2id hashes and verifications timed before the run (0: skip)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 600.0 if args.count else 20.0
    limits = {
        "workers": (1, 64),
        "threads": (1, 64),
        "concurrency": (1, 256),
        "users": (1, 100_000),
    }
    check_ranges(parser, args, limits)
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("--duration must be in (0, 3600] and --warmup in [0, 600]")
    if args.count is not None and not 1 <= args.count <= 10_000_000:
        parser.error("--count must be positive")
    if args.embedded and args.workers != 1:
        args.workers = 1  # the in-process store serves one process only
    return args


def summarise(
    args: argparse.Namespace,
    result: LoadResult,
    argon2: dict[str, Any] | None,
    server: Server,
    setup_seconds: float,
) -> dict[str, Any]:
    measured = result.measured()
    ok = [s for s in measured if s.ok]
    failed = [s for s in measured if not s.ok]
    all_failed = [s for s in result.samples if not s.ok]
    wall = result.wall_seconds
    cpu = result.server_cpu_seconds
    per_signin_cpu_ms = cpu / len(ok) * 1000 if ok else None
    # in embedded mode nothing of ours runs in redis-server: its CPU is someone else's
    redis_cpu = None if args.embedded else result.redis_cpu_seconds
    report: dict[str, Any] = {
        "benchmark": "signin",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "code": code_version(),
        "config": {
            "backend": "embedded (SQLite + in-process store)"
            if args.embedded
            else "production (PostgreSQL + Redis)",
            "workers": args.workers,
            "threads": args.threads,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "count": args.count,
            "users": args.users,
        },
        "argon2": argon2,
        "results": {
            "signins": len(ok),
            "failed": len(failed),
            "failed_including_warmup": len(all_failed),
            "failure_examples": sorted({s.error or "?" for s in all_failed})[:10],
            "wall_s": round(wall, 3),
            "server_cpu_s": round(cpu, 3),
            "server_system_cpu_s": round(result.server_system_cpu_seconds, 3),
            "server_cpu_utilisation": round(cpu / wall, 3) if wall else None,
            "signins_per_server_cpu_s": round(len(ok) / cpu, 2) if cpu else None,
            "signins_per_wall_s": round(len(ok) / wall, 2) if wall else None,
            "server_cpu_ms_per_signin": round(per_signin_cpu_ms, 2) if per_signin_cpu_ms else None,
            "load_generator_cpu_s": round(result.client_cpu_seconds, 3),
            "postgres_backends_cpu_s": None
            if result.database_cpu_seconds is None
            else round(result.database_cpu_seconds, 3),
            "redis_server_cpu_s": None if redis_cpu is None else round(redis_cpu, 3),
            "machine_busy_cpu_s": round(result.machine_busy_cpu_seconds, 3),
            "other_processes_cpu_s": round(
                result.machine_busy_cpu_seconds
                - cpu
                - result.client_cpu_seconds
                - (result.database_cpu_seconds or 0.0)
                - (redis_cpu or 0.0),
                3,
            ),
            "worker_pids_changed": result.worker_pids_changed,
            "latency_post": latency_summary([s.phases["post"] for s in ok]),
            "latency_get": latency_summary([s.phases["get"] for s in ok]),
            "latency_signin": latency_summary([s.end - s.start for s in ok]),
        },
        "server_log_lines": server.log_problems()[:50],
        "setup_s": round(setup_seconds, 1),
    }
    if argon2 and per_signin_cpu_ms:
        report["results"]["argon2_verify_share_of_signin_cpu"] = round(
            argon2["verify_cpu_ms"] / per_signin_cpu_ms, 3
        )
    return report


def print_summary(report: dict[str, Any]) -> None:
    config, results, argon2 = report["config"], report["results"], report["argon2"]
    machine = report["machine"]
    print()
    print(f"Password sign-in benchmark — {config['backend']}")
    print(
        f"  machine      {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}"
    )
    print(
        f"  server       {config['workers']} workers x {config['threads']} threads; "
        f"load: {config['concurrency']} concurrent browsers, {config['users']} accounts"
    )
    if argon2:
        p = argon2["parameters"]
        print(
            f"  Argon2id     m={p['memory_kib']} KiB t={p['time_cost']} p={p['parallelism']}: "
            f"hash {argon2['hash_cpu_ms']} ms CPU, verify {argon2['verify_cpu_ms']} ms CPU"
        )
    print(
        f"  sign-ins     {results['signins']} in {results['wall_s']} s "
        f"({results['failed']} failed; {results['failed_including_warmup']} incl. warm-up)"
    )
    print(
        f"  server CPU   {results['server_cpu_s']} s "
        f"({results['server_system_cpu_s']} s system; "
        f"{results['server_cpu_utilisation']} cores busy), "
        f"{results['server_cpu_ms_per_signin']} ms per sign-in"
    )
    print(f"  => {results['signins_per_server_cpu_s']} sign-ins per server CPU-second")
    print(f"     {results['signins_per_wall_s']} sign-ins per wall-second")
    if "argon2_verify_share_of_signin_cpu" in results:
        share = results["argon2_verify_share_of_signin_cpu"]
        print(f"     Argon2 verify is {share:.0%} of the server CPU per sign-in")
    for label, key in (
        ("POST /login", "latency_post"),
        ("GET /login ", "latency_get"),
        ("GET+POST   ", "latency_signin"),
    ):
        lat = results[key]
        if lat:
            print(
                f"  {label}  p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  "
                f"p99 {lat['p99_ms']} ms  (max {lat['max_ms']} ms)"
            )
    other = [f"load generator {results['load_generator_cpu_s']} s"]
    if results["postgres_backends_cpu_s"] is not None:
        other.append(f"PostgreSQL backends {results['postgres_backends_cpu_s']} s")
    if results["redis_server_cpu_s"] is not None:
        other.append(f"redis-server {results['redis_server_cpu_s']} s")
    print(f"  other CPU    {', '.join(other)} (not counted above)")
    print(
        f"  noise        the machine was busy {results['machine_busy_cpu_s']} CPU-s in the window, "
        f"{results['other_processes_cpu_s']} s of it by unrelated processes"
    )
    capacity = results["wall_s"] * (report["machine"]["nproc"] or 1)
    disturbed = results["other_processes_cpu_s"] / capacity if capacity else 0.0
    if disturbed > 0.1:
        print(
            f"  WARNING: unrelated processes used {disturbed:.0%} of the machine "
            "during the window; wall-clock figures and latencies are disturbed"
        )
    if results["worker_pids_changed"]:
        print("  WARNING: a worker was replaced during the measured phase")
    if results["failure_examples"]:
        print(f"  failures: {results['failure_examples']}")
    if report["server_log_lines"]:
        print(f"  server log: {len(report['server_log_lines'])} line(s), first:")
        for line in report["server_log_lines"][:5]:
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    argon2 = measure_argon2(args.hash_samples) if args.hash_samples else None
    began = time.monotonic()
    usernames = [f"bench{index:05d}" for index in range(args.users)]
    with Environment(
        embedded=args.embedded,
        database_url=args.database_url,
        redis_url=args.redis_url,
        tag="signin",
    ) as environment:
        print(f"setting up in {environment.data_dir} ...", flush=True)
        environment.init()
        environment.create_users(usernames, PASSWORD)
        server = Server(
            environment.env(),
            workers=args.workers,
            threads=args.threads,
            log_path=environment.data_dir / "server.log",
        )
        with stopping(server):
            server.start()
            setup_seconds = time.monotonic() - began
            print(
                f"server up at {server.url}; warm-up {args.warmup:g} s, then "
                f"{'up to ' if args.count else ''}{args.duration:g} s measured ...",
                flush=True,
            )
            result = run_load(
                server,
                SignIn(usernames, PASSWORD),
                LoadPlan(args.concurrency, args.warmup, args.duration, args.count),
                database_pids=None if args.embedded else environment.database_backend_pids,
            )
        report = summarise(args, result, argon2, server, setup_seconds)
        print_summary(report)
        if not args.no_save:
            path = write_results("signin", report, server.log_path)
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            print(f"  written      {shown}")
    failed = report["results"]["failed_including_warmup"]
    return 1 if failed or not report["results"]["signins"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; server stopped, schema, Redis keys and data dir removed")
        sys.exit(130)
