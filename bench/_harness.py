"""Shared machinery of the benchmarks in bench/ (not a test suite).

* ``Environment``: an isolated data directory, PostgreSQL schema and Redis namespace
  (or the embedded SQLite + in-process store), removed again at the end.
* ``Server``: the production server (``.venv/bin/idp serve``) in its own session, and
  the CPU time of its process tree (granian main process + workers).
* ``run_load``: a closed-loop load generator in a separate process (its CPU is not the
  server's), with an unmeasured warm-up, then a measured phase bounded in time and,
  optionally, in count. Scenarios are picklable callables doing one iteration.
* ``Recorder`` and ``install_probes``: thread CPU time per wrapped function, for the
  breakdown scripts.
* ``run_open_loop``: the same, open-loop: iterations start on a fixed schedule
  (``rate`` per second) whether or not earlier ones have finished, and each sample
  records how late it started, so latency counts queueing (no coordinated omission).

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import importlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol

import psutil

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HOST = "127.0.0.1"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REQUEST_TIMEOUT = 30.0


def idp_executable() -> str:
    candidate = REPO / ".venv" / "bin" / "idp"
    if candidate.exists():
        return str(candidate)
    return str(Path(sys.executable).with_name("idp"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the files that differed from it (others may be editing)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip()  # not strip(): porcelain lines start with a space

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:]]
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "uncommitted_files": [path for path in changed if not path.startswith("bench/")],
    }


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# -- interrupts -------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C, so every clean-up step runs.

    SIGINT is set explicitly: a shell without job control starts background commands
    with it ignored, and Python then leaves it ignored.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


# -- isolated environment ---------------------------------------------------------------


class Environment:
    """A temp data dir, a fresh PostgreSQL schema and a unique Redis namespace.

    Use as a context manager; everything made is removed on exit, also on errors and
    Ctrl-C. ``embedded=True`` uses SQLite in the data dir and the in-process store.
    """

    def __init__(
        self,
        *,
        embedded: bool,
        database_url: str = DEFAULT_DATABASE_URL,
        redis_url: str = DEFAULT_REDIS_URL,
        tag: str = "bench",
    ) -> None:
        self.embedded = embedded
        self.admin_database_url = database_url
        self.redis_base_url = redis_url
        self.run_id = f"{tag}_{secrets.token_hex(4)}"
        self.schema = f"idp_{self.run_id}"
        self.application_name = f"idp-{self.run_id}"
        self.redis_namespace = f"idp-bench:{self.run_id}:"
        self.secret_key = secrets.token_hex(32)
        self.data_dir = Path()
        self.database_url: str | None = None
        self.redis_url: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Environment:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _setup(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"idp-{self.run_id}-"))
        self._stack.callback(shutil.rmtree, self.data_dir, ignore_errors=True)
        if self.embedded:
            return
        self._create_schema()
        self._stack.callback(self._drop_schema)
        self.redis_url = self.redis_base_url
        self._stack.callback(self._delete_redis_keys)

    # PostgreSQL

    def _admin_engine(self) -> Any:
        from sqlalchemy import create_engine

        return create_engine(self.admin_database_url, poolclass=_null_pool())

    def _create_schema(self) -> None:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        engine = self._admin_engine()
        try:
            with engine.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        finally:
            engine.dispose()
        url = make_url(self.admin_database_url).update_query_dict(
            {"options": f"-csearch_path={self.schema}", "application_name": self.application_name}
        )
        self.database_url = url.render_as_string(hide_password=False)

    def _drop_schema(self) -> None:
        from sqlalchemy import text

        engine = self._admin_engine()
        try:
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            engine.dispose()

    def database_backend_pids(self) -> list[int]:
        """PostgreSQL backends serving this run's connections (by application_name)."""
        if self.embedded:
            return []
        from sqlalchemy import text

        engine = self._admin_engine()
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": self.application_name},
                )
                return [int(row[0]) for row in rows]
        finally:
            engine.dispose()

    # Redis

    def _delete_redis_keys(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_base_url)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=self.redis_namespace + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        finally:
            client.close()

    # the service

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for ``idp`` subprocesses: only this run's IDP_* settings."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        settings = {
            "IDP_DATA_DIR": str(self.data_dir),
            "IDP_SECRET_KEY": self.secret_key,
            "IDP_LOG_LEVEL": "WARNING",
            "IDP_LOG_FORMAT": "text",
            "IDP_REDIS_NAMESPACE": self.redis_namespace,
        }
        if self.database_url:
            settings["IDP_DATABASE_URL"] = self.database_url
        if self.redis_url:
            settings["IDP_REDIS_URL"] = self.redis_url
        return {**base, **settings, **extra}

    def settings_values(self, **extra: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "secret_key": self.secret_key,
            "log_level": "WARNING",
            "log_format": "text",
            "redis_namespace": self.redis_namespace,
            "database_url": self.database_url,
            "redis_url": self.redis_url,
        }
        values.update(extra)
        return values

    def init(self) -> None:
        """``idp init``: key files and schema."""
        subprocess.run(
            [idp_executable(), "init"],
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def create_users(self, usernames: Sequence[str], password: str) -> None:
        """Register accounts in this process (one app, no HTTP, no throttles)."""
        from accounts.container import Accounts
        from config.settings import build_settings
        from idp.app import create_app
        from idp.core.store import MemoryStore

        settings = build_settings(self.settings_values())
        # registration needs no short-lived state; a private store keeps Redis and the
        # embedded store's process lock out of it
        app = create_app(settings, store=MemoryStore())
        try:
            with app.app_context():
                service = Accounts.of().account_service(actor="bench")
                for username in usernames:
                    service.register(username, password)
        finally:
            app.extensions["idp.runtime"].database.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


# -- the server and its CPU time --------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    at: float  # time.monotonic()
    seconds: float  # user + system
    system: float  # the system part of it
    pids: frozenset[int]
    # (pid, user + system seconds) of the main process and of each worker
    per_process: tuple[tuple[int, float], ...] = ()


def process_cpu(process: psutil.Process, *, reaped_children: bool = False) -> float:
    return sum(process_cpu_split(process, reaped_children=reaped_children))


def process_cpu_split(
    process: psutil.Process, *, reaped_children: bool = False
) -> tuple[float, float]:
    """(user, system) CPU seconds; optionally with the children it has waited for."""
    times = process.cpu_times()
    user, system = float(times.user), float(times.system)
    if reaped_children:
        user += times.children_user
        system += times.children_system
    return user, system


class Server:
    """``idp serve`` (granian); started in its own session so Ctrl-C reaches us first."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int,
        threads: int,
        log_path: Path,
        port: int | None = None,
    ) -> None:
        self.env = env
        self.workers = workers
        self.threads = threads
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.master: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60) -> None:
        args = [
            idp_executable(),
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args,
                env={**self.env, "IDP_ISSUER": self.url},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.master = psutil.Process(self.process.pid)
        self._wait_until_up(timeout)

    def _wait_until_up(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited early ({self.process.returncode}):\n{self.log_tail()}"
                )
            if self._healthy() and len(self.worker_processes()) >= self.workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"server at {self.url} did not come up:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def worker_processes(self) -> list[psutil.Process]:
        assert self.master is not None
        try:
            return list(self.master.children(recursive=True))
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> CpuSnapshot:
        """User + system CPU of the master and all workers (living and already reaped)."""
        assert self.master is not None
        at = time.monotonic()
        user, system = process_cpu_split(self.master, reaped_children=True)
        pids = set()
        per_process = [(self.master.pid, user + system)]
        for worker in self.worker_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                worker_user, worker_system = process_cpu_split(worker)
                user += worker_user
                system += worker_system
                pids.add(worker.pid)
                per_process.append((worker.pid, worker_user + worker_system))
        return CpuSnapshot(at, user + system, system, frozenset(pids), tuple(per_process))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # graceful shutdown
        try:
            self.process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines of the server's log that report something wrong (it logs at WARNING)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()]


def other_process_cpu(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of processes outside our tree (database backends, Redis)."""
    result: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            result[pid] = process_cpu(psutil.Process(pid))
    return result


def machine_busy_cpu() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, not idle or iowait)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def redis_server_pids() -> list[int]:
    return [
        int(process.pid)
        for process in psutil.process_iter(["name"])
        if process.info["name"] == "redis-server"
    ]


# -- load generation --------------------------------------------------------------------


@dataclass
class Sample:
    """One iteration of a scenario: monotonic start/end, phase durations in seconds."""

    start: float
    end: float
    ok: bool
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class Scenario(Protocol):
    """One iteration (e.g. one complete sign-in) against the server at ``port``."""

    def __call__(self, port: int, sequence: int) -> Sample: ...


@dataclass(frozen=True)
class LoadPlan:
    concurrency: int
    warmup: float
    duration: float
    count: int | None = None


@dataclass
class LoadResult:
    samples: list[Sample]
    measure_start: CpuSnapshot
    measure_end: CpuSnapshot
    client_cpu_seconds: float
    database_cpu_seconds: float | None
    redis_cpu_seconds: float | None
    machine_busy_cpu_seconds: float
    worker_pids_changed: bool

    @property
    def wall_seconds(self) -> float:
        return self.measure_end.at - self.measure_start.at

    @property
    def server_cpu_seconds(self) -> float:
        return self.measure_end.seconds - self.measure_start.seconds

    @property
    def server_system_cpu_seconds(self) -> float:
        return self.measure_end.system - self.measure_start.system

    def measured(self) -> list[Sample]:
        """Iterations that finished inside the measured window."""
        low, high = self.measure_start.at, self.measure_end.at
        return [s for s in self.samples if low <= s.end <= high]

    def cpu_by_process(self) -> dict[int, float]:
        """Server CPU seconds in the window per process (main process first): shows
        whether the workers shared the load (keep-alive connections stick to one)."""
        before = dict(self.measure_start.per_process)
        return {
            pid: round(seconds - before.get(pid, 0.0), 3)
            for pid, seconds in self.measure_end.per_process
        }


def _generator_main(
    scenario: Scenario,
    port: int,
    concurrency: int,
    hard_deadline: float,
    measure_from: Any,
    count: int | None,
    count_reached: Event,
    stop: Event,
    ready: Event,
    results: Connection,
) -> None:
    """The load generator's process: ``concurrency`` threads, each a closed loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, after clean-up
    samples: list[Sample] = []
    sequence = itertools.count()
    lock = threading.Lock()
    measured = 0

    def loop() -> None:
        nonlocal measured
        while not stop.is_set() and time.monotonic() < hard_deadline:
            sample = scenario(port, next(sequence))
            samples.append(sample)
            if count is not None and sample.ok and sample.end >= measure_from.value:
                with lock:
                    measured += 1
                    if measured >= count:
                        count_reached.set()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.set()
    for thread in threads:
        thread.join(timeout=max(0.0, hard_deadline - time.monotonic()) + REQUEST_TIMEOUT * 2)
    results.send(samples)
    results.close()


def run_load(
    server: Server,
    scenario: Scenario,
    plan: LoadPlan,
    *,
    database_pids: Callable[[], list[int]] | None = None,
) -> LoadResult:
    """Warm up, then measure; CPU of the server tree is read at both ends of the window."""
    context = multiprocessing.get_context("spawn")
    measure_from = context.Value("d", math.inf)
    count_reached = context.Event()
    stop = context.Event()
    ready = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    cap = plan.warmup + plan.duration
    hard_deadline = time.monotonic() + cap + 60  # the generator stops by itself then
    generator = context.Process(
        target=_generator_main,
        args=(
            scenario,
            server.port,
            plan.concurrency,
            hard_deadline,
            measure_from,
            plan.count,
            count_reached,
            stop,
            ready,
            sender,
        ),
        name="bench-load",
        daemon=True,
    )
    return _measure(
        server,
        generator,
        plan.warmup,
        plan.duration,
        measure_from=measure_from,
        count_reached=count_reached,
        stop=stop,
        ready=ready,
        receiver=receiver,
        sender=sender,
        database_pids=database_pids,
    )


def _measure(
    server: Server,
    generator: Any,
    warmup: float,
    duration: float,
    *,
    measure_from: Any,
    count_reached: Event,
    stop: Event,
    ready: Event,
    receiver: Connection,
    sender: Connection,
    database_pids: Callable[[], list[int]] | None,
) -> LoadResult:
    """Start the generator process, wait out the warm-up, measure, collect the samples."""
    generator.start()
    sender.close()
    try:
        if not ready.wait(timeout=60):
            raise RuntimeError("the load generator did not start")
        client = psutil.Process(generator.pid)
        time.sleep(warmup)
        db_before = other_process_cpu(database_pids()) if database_pids else None
        redis_before = other_process_cpu(redis_server_pids())
        client_before = process_cpu(client)
        busy_before = machine_busy_cpu()
        start = server.cpu()
        measure_from.value = start.at
        count_reached.wait(timeout=duration)
        end = server.cpu()
        busy_after = machine_busy_cpu()
        client_after = process_cpu(client)
        db_after = other_process_cpu(database_pids()) if database_pids else None
        redis_after = other_process_cpu(redis_server_pids())
        stop.set()
        samples: list[Sample] = receiver.recv() if receiver.poll(REQUEST_TIMEOUT * 3) else []
        generator.join(timeout=10)
    finally:
        stop.set()
        if generator.is_alive():
            generator.terminate()
            generator.join(timeout=5)
        receiver.close()
    return LoadResult(
        samples=samples,
        measure_start=start,
        measure_end=end,
        client_cpu_seconds=client_after - client_before,
        database_cpu_seconds=_delta(db_before, db_after),
        redis_cpu_seconds=_delta(redis_before, redis_after),
        machine_busy_cpu_seconds=busy_after - busy_before,
        worker_pids_changed=start.pids != end.pids,
    )


# -- open-loop load ---------------------------------------------------------------------

OPEN_LOOP_LAG = "start_lag"  # the phase an open-loop sample adds: actual - scheduled start


@dataclass(frozen=True)
class OpenLoopPlan:
    """``rate`` iterations per second, started on schedule by up to ``threads`` threads
    (each with its own state: connection, refresh-token chain...)."""

    rate: float
    threads: int
    warmup: float
    duration: float


def _open_loop_main(
    scenario: Scenario,
    port: int,
    rate: float,
    threads_count: int,
    hard_deadline: float,
    stop: Event,
    ready: Event,
    results: Connection,
) -> None:
    """The open-loop generator's process.

    Iteration ``i`` is due at ``t0 + i / rate``. The next free thread takes the next
    due iteration, sleeps until it is due (if it is not late already) and runs it; the
    sample's ``start_lag`` phase is how late it actually started. When every thread is
    busy, iterations fall behind schedule and the lag shows it: response time (lag +
    service time) is what a client arriving on schedule would see.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, after clean-up
    sys.setswitchinterval(0.0005)  # a woken thread gets the GIL sooner than after 5 ms
    samples: list[Sample] = []
    slots = itertools.count()
    interval = 1.0 / rate
    t0 = time.monotonic() + 0.05

    def loop() -> None:
        while not stop.is_set():
            index = next(slots)  # atomic under the GIL
            due = t0 + index * interval
            if due >= hard_deadline:
                return
            wait = due - time.monotonic()
            # stop.wait sleeps, yet wakes at once when the run ends
            if wait > 0 and stop.wait(wait):
                return
            sample = scenario(port, index)
            sample.phases[OPEN_LOOP_LAG] = max(0.0, sample.start - due)
            samples.append(sample)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    ready.set()
    for thread in threads:
        thread.join(timeout=max(0.0, hard_deadline - time.monotonic()) + REQUEST_TIMEOUT * 2)
    results.send(samples)
    results.close()


def run_open_loop(
    server: Server,
    scenario: Scenario,
    plan: OpenLoopPlan,
    *,
    database_pids: Callable[[], list[int]] | None = None,
) -> LoadResult:
    """Like ``run_load``, but open-loop at ``plan.rate`` iterations per second.

    Latency of a sample as a client sees it: ``end - start + phases["start_lag"]``
    (``response_times``).
    """
    if not 0 < plan.rate <= 100_000 or not 1 <= plan.threads <= 1024:
        raise ValueError("rate must be in (0, 100000] and threads in [1, 1024]")
    context = multiprocessing.get_context("spawn")
    measure_from = context.Value("d", math.inf)
    never = context.Event()  # no count bound: the window lasts plan.duration
    stop = context.Event()
    ready = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    hard_deadline = time.monotonic() + plan.warmup + plan.duration + 60
    generator = context.Process(
        target=_open_loop_main,
        args=(scenario, server.port, plan.rate, plan.threads, hard_deadline, stop, ready, sender),
        name="bench-open-loop",
        daemon=True,
    )
    return _measure(
        server,
        generator,
        plan.warmup,
        plan.duration,
        measure_from=measure_from,
        count_reached=never,
        stop=stop,
        ready=ready,
        receiver=receiver,
        sender=sender,
        database_pids=database_pids,
    )


def response_times(samples: Sequence[Sample]) -> list[float]:
    """Seconds from the scheduled start (open loop) or the actual start to the end."""
    return [s.end - s.start + s.phases.get(OPEN_LOOP_LAG, 0.0) for s in samples]


def _delta(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    if before is None or after is None:
        return None
    # a process that appeared during the window spent all its CPU inside it
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# -- statistics and reports -------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values_seconds: Sequence[float]) -> dict[str, float]:
    if not values_seconds:
        return {}
    ms = [v * 1000 for v in values_seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def write_results(name: str, report: dict[str, Any], server_log: Path | None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{timestamp()}"
    path = RESULTS / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    if server_log is not None and server_log.exists() and server_log.stat().st_size:
        shutil.copyfile(server_log, RESULTS / f"{stem}.server.log")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Sample):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def stopping(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# -- arguments ---------------------------------------------------------------------------


def check_ranges(
    parser: argparse.ArgumentParser, args: argparse.Namespace, limits: dict[str, tuple[int, int]]
) -> None:
    """Stop with a usage error if an integer option is out of its range."""
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}")


# -- CPU breakdowns -------------------------------------------------------------------


class Recorder:
    """Adds up thread CPU time per (phase, label) for wrapped functions."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.calls: Counter[tuple[str, str]] = Counter()

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                key = (self.phase, label)
                self.seconds[key] += time.thread_time() - started
                self.calls[key] += 1

        return timed

    def count(self, label: str) -> None:
        self.calls[(self.phase, label)] += 1

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


# (depth, module, attribute path, label): what to time, in display order; an empty
# module is a label filled in some other way
Probe = tuple[int, str, str, str]


def install_probes(recorder: Recorder, probes: Sequence[Probe]) -> list[str]:
    """Wrap each probe's target; the labels of those absent from the code measured."""
    absent = []
    for _depth, module_name, path, label in probes:
        if not module_name:
            continue
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            original = getattr(owner, name)
        except (ImportError, AttributeError):
            absent.append(label)
            continue
        setattr(owner, name, recorder.wrap(original, label))
    return absent
