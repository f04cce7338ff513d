"""The database handle across a PostgreSQL crash (its own cluster, killed and started
again): no error escapes from closing a session, no request fails on a dead pooled
connection."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from idp.core.db import Database
from tests.faults.conftest import require_servers
from tests.faults.harness import PostgresCluster

pytestmark = pytest.mark.faults


def test_sessions_survive_a_postgres_crash() -> None:
    require_servers()
    with PostgresCluster() as postgres:
        database = Database(postgres.url, pool_size=2)
        try:
            idle = [database.sessions() for _ in range(2)]
            for session in idle:
                assert session.execute(text("SELECT 1")).scalar_one() == 1
            idle[1].close()  # back in the pool, connected
            postgres.kill()
            postgres.start()
            # idle[0] still has its transaction open on a connection the crash closed:
            # the ROLLBACK of close() fails, but there is nothing to undo
            idle[0].close()
            # the pooled connection is dead too: it is replaced before use
            with database.session() as session:
                assert session.execute(text("SELECT 2")).scalar_one() == 2
            with database.session() as session:
                assert session.execute(text("SELECT 3")).scalar_one() == 3
        finally:
            database.dispose()
