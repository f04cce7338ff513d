"""Running the service under granian (``idp serve``).

granian (a WSGI server written in Rust) was chosen over gunicorn by measurement: a
trivial Flask endpoint costs about 0.1 ms of server CPU per request under granian and
0.27 ms under gunicorn's sync workers (docs/decisions/0010-granian.md). Each worker
process builds its own app from the environment (``IDP_*``), through ``worker_app``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server import Server

from config import Settings, load_settings


def worker_app() -> Any:
    """The factory each worker process calls (settings come from the environment)."""
    from idp.app import create_app

    return create_app(load_settings(os.environ), background=True)


def prepare_metrics_dir(settings: Settings) -> Path:
    """A fresh directory for prometheus_client's multi-process mode (before import)."""
    directory = (settings.data_dir / "run" / "metrics").resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def serve(settings: Settings, host: str, port: int) -> None:
    # Workers read their settings from the environment: pass on the overrides.
    os.environ["IDP_WORKERS"] = str(settings.workers)
    os.environ["IDP_THREADS"] = str(settings.threads)
    server = Server(
        "idp.server:worker_app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        websockets=False,
        factory=True,
        workers=settings.workers,
        blocking_threads=settings.threads,
        runtime_threads=1,
        backlog=1024,
        log_level=LogLevels(settings.log_level.lower()),
        log_access=False,  # the app writes its own JSON access log
        respawn_failed_workers=True,
        workers_kill_timeout=20,
    )
    server.serve()
