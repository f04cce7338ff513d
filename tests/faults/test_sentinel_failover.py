"""A Redis Sentinel failover under load (issue 9, section 4): ``idp serve`` (2 workers)
on a primary, a replica and three sentinels; the primary is killed with SIGKILL while
sign-ins, the code flow, refresh, introspection and userinfo run. It must behave as a
Redis outage does (section 3): 503s or answers, never a 500 or a stack trace, no
sign-in without the throttle, the service back by itself once the sentinels promoted
the replica, no revoked token active, no signed-out session usable again."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import LOAD_USERS, OTHER_USERS, require_servers
from tests.faults.harness import (
    CLIENT_ID,
    IdpServer,
    LiveClient,
    PostgresCluster,
    Recorder,
    audit_verify,
    database_problems,
    load,
    problems,
    run_outage,
    seed,
    session_works,
    signed_out_cookie,
    summary,
    wait_warm,
)
from tests.redis_servers import SentinelSet, running_sentinels, wait_until

pytestmark = pytest.mark.faults

# down-after-milliseconds 1000 + the election: the sentinels need about 2-3 s
PROMOTION_TIMEOUT = 15.0
RECOVERY_LIMIT = 5.0


@pytest.fixture
def sentinel_stack() -> Iterator[tuple[SentinelSet, PostgresCluster, IdpServer, LiveClient]]:
    require_servers()
    directory = Path(tempfile.mkdtemp(prefix="idp-faults-sentinel-"))
    postgres = PostgresCluster()
    server: IdpServer | None = None
    try:
        with running_sentinels(directory) as sentinels:
            postgres.start()
            server = IdpServer(directory / "data", postgres.url, sentinels.url)
            server.data_dir.mkdir()
            server.init()
            secrets = seed(server, LOAD_USERS + OTHER_USERS)
            server.start()
            yield (
                sentinels,
                postgres,
                server,
                LiveClient(server.url, secrets[CLIENT_ID], Recorder()),
            )
    finally:
        if server is not None:
            server.stop()
            print("--- idp serve log (tail) ---\n" + server.log_text()[-6000:])
        postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_sentinel_failover_under_load(
    sentinel_stack: tuple[SentinelSet, PostgresCluster, IdpServer, LiveClient],
) -> None:
    sentinels, postgres, server, client = sentinel_stack
    signed_out = signed_out_cookie(client, "leaver")
    revoked = client.full_round("probe")
    assert revoked is not None
    assert client.revoke(revoked.access) == 200
    kept = client.full_round("probe")
    assert kept is not None
    old_primary = sentinels.current_primary()
    promoted: list[float] = []

    def kill() -> None:
        old_primary.kill()

    def during() -> None:
        # the outage lasts until the sentinels have promoted the replica
        started = time.monotonic()
        wait_until(
            lambda: sentinels.primary_port() != old_primary.port,
            timeout=PROMOTION_TIMEOUT,
            what="the sentinels promote the replica",
        )
        promoted.append(time.monotonic() - started)
        # while the primary is gone, a revoked token is never reported active
        answer = client.introspect(revoked.access)
        assert answer is None or answer == {"active": False}

    with load(client, LOAD_USERS) as generator:
        wait_warm(generator, len(LOAD_USERS))
        # "restore" is a no-op: the promotion is the recovery; its time counts from then
        outage = run_outage(generator, server.url, kill, lambda: None, during, seconds=0)
    print(f"sentinels promoted the replica {promoted[0]:.2f} s after the kill")
    print(outage.describe("Sentinel primary killed, replica promoted"))
    print(f"answers: {summary(client.recorder.records)}")
    assert outage.recovered_after is not None
    assert outage.recovered_after < RECOVERY_LIMIT, outage.describe("failover")
    assert problems(client.recorder.records) == []
    # durable revocation: the new primary may have missed the marker; never active
    assert client.introspect(revoked.access) == {"active": False}
    info = client.userinfo(revoked.access)
    assert info is not None
    assert info.status_code == 401
    answer = client.introspect(kept.access)
    assert answer is not None
    assert answer["active"] is True
    assert not session_works(server.url, signed_out)
    assert database_problems(postgres.url) == []
    verified = audit_verify(server)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Traceback" not in server.log_text()
