"""A whole stack per test: its own Redis and PostgreSQL, ``idp serve`` with 2 workers
on them, seeded accounts and a relying party. Always torn down, also on failure."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.harness import (
    BACKCHANNEL_CLIENT_ID,
    CLIENT_ID,
    IdpServer,
    LiveClient,
    LogoutReceiver,
    PostgresCluster,
    Recorder,
    RedisServer,
    seed,
)

LOAD_USERS = ["load0", "load1", "load2"]
OTHER_USERS = ["leaver", "probe", "notified"]


def require_servers() -> None:
    """The fault tests need the real servers: fail (never skip) in CI without them."""
    missing = [tool for tool in ("redis-server", "runuser") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)}", pytrace=False)


@dataclass
class Stack:
    redis: RedisServer
    postgres: PostgresCluster
    server: IdpServer
    client: LiveClient
    # a second client, whose back-channel logout notices ``receiver`` gets
    backchannel: LiveClient
    receiver: LogoutReceiver

    @property
    def recorder(self) -> Recorder:
        return self.client.recorder


@pytest.fixture
def stack() -> Iterator[Stack]:
    require_servers()
    data_dir = Path(tempfile.mkdtemp(prefix="idp-faults-data-"))
    redis_server = RedisServer()
    postgres = PostgresCluster()
    server: IdpServer | None = None
    receiver = LogoutReceiver()
    try:
        receiver.__enter__()
        redis_server.start()
        postgres.start()
        server = IdpServer(data_dir, postgres.url, redis_server.url)
        server.init()
        secrets = seed(server, LOAD_USERS + OTHER_USERS, backchannel_uri=receiver.url)
        server.start()
        recorder = Recorder()
        yield Stack(
            redis_server,
            postgres,
            server,
            LiveClient(server.url, secrets[CLIENT_ID], recorder),
            LiveClient(server.url, secrets[BACKCHANNEL_CLIENT_ID], recorder, BACKCHANNEL_CLIENT_ID),
            receiver,
        )
    finally:
        if server is not None:
            server.stop()
            # shown by pytest only when the test failed
            print("--- idp serve log (tail) ---\n" + server.log_text()[-6000:])
            keep = os.environ.get("IDP_FAULTS_KEEP_LOG")
            if keep:
                shutil.copyfile(server.log, keep)
        redis_server.stop()
        postgres.stop()
        receiver.__exit__()
        shutil.rmtree(data_dir, ignore_errors=True)
