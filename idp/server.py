"""Running the service under gunicorn (``idp serve``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from config import Settings


class IdpServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with options from settings; each worker builds its own app."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from idp.app import create_app

        return create_app(self.settings)


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def prepare_metrics_dir(settings: Settings) -> Path:
    """A fresh directory for prometheus_client's multi-process mode (before import)."""
    directory = (settings.data_dir / "run" / "metrics").resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def serve(settings: Settings, host: str, port: int) -> None:
    workers = settings.workers
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": settings.threads,
        "worker_class": "gthread" if settings.threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "idp",
        "control_socket": str((settings.data_dir / "run" / "gunicorn.ctl").resolve()),
        "child_exit": _child_exit,
        "forwarded_allow_ips": "127.0.0.1,::1" if settings.trusted_proxy_count else "",
    }
    IdpServer(settings, options).run()
