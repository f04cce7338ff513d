"""Redis and PostgreSQL lost under load (issue 9, section 3).

Each test runs the production server (``idp serve``, 2 workers) on its own Redis and
PostgreSQL, drives sign-ins, the code flow, refresh, introspection and userinfo from a
few threads, kills a dependency, checks the answers while it is down, brings it back
and measures how long the service takes to serve a full round again by itself.
Measured times are printed (``pytest -m faults -s``) for docs/operations.md.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.faults.conftest import LOAD_USERS, Stack
from tests.faults.harness import (
    SESSION_COOKIE,
    LoadGenerator,
    Outage,
    Record,
    account_status,
    audit_verify,
    count_rows,
    database_problems,
    load,
    problems,
    readyz,
    run_outage,
    session_works,
    sign_out,
    signed_in_cookie,
    signed_out_cookie,
    summary,
    wait_ready,
    wait_warm,
)
from tests.oauth_support import Flow

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 2.5
RECOVERY_LIMIT = 5.0


def _outage_records(stack: Stack, outage: Outage) -> list[Record]:
    """Answers to requests made well inside the outage (not racing the kill)."""
    return stack.recorder.between(outage.killed_at + 0.5, outage.restoring_at)


def _check_recovery(stack: Stack, outage: Outage, generator: LoadGenerator, what: str) -> None:
    print(outage.describe(what))
    print(f"a successful round takes {generator.median_round_seconds() or 0:.2f} s (median)")
    print(f"answers during the outage: {summary(_outage_records(stack, outage))}")
    assert outage.ready_after is not None, f"/readyz never came back after {what}"
    assert outage.recovered_after is not None, f"no successful round after {what}"
    assert outage.recovered_after < RECOVERY_LIMIT, outage.describe(what)
    assert outage.ready_after < RECOVERY_LIMIT, outage.describe(what)


def _check_after(stack: Stack, signed_out: str) -> None:
    assert problems(stack.recorder.records) == []
    assert not session_works(stack.server.url, signed_out)
    assert database_problems(stack.postgres.url) == []
    verified = audit_verify(stack.server)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Traceback" not in stack.server.log_text()


def test_redis_killed_and_restarted_empty_under_load(stack: Stack) -> None:
    client = stack.client
    signed_out = signed_out_cookie(client, "leaver")
    live = signed_in_cookie(client, "probe")
    revoked = client.full_round("probe")
    assert revoked is not None
    assert client.revoke(revoked.access) == 200
    assert client.introspect(revoked.access) == {"active": False}
    unrevoked = client.full_round("probe")
    assert unrevoked is not None
    # a browser that has the sign-in form (and its session) when Redis goes
    pending = requests.Session()
    form = pending.get(client.base + "/login", timeout=10)
    assert form.status_code == 200
    revocation: list[int] = []

    def during() -> None:
        time.sleep(0.3)
        assert readyz(stack.server.url) == 503
        # the form's session cannot be read: no sign-in, and not without the throttle
        from tests.support import csrf_token

        attempt = pending.post(
            client.base + "/login",
            data={
                "csrf_token": csrf_token(form.text),
                "username": "probe",
                "password": "correct horse battery staple",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert attempt.status_code == 503, attempt.text[:300]
        assert "text/html" in attempt.headers["Content-Type"]
        # a new browser gets no form it could not submit
        assert client.sign_in(requests.Session(), "probe") is None
        # the revocation list is out of reach: never "active" for the revoked token
        answer = client.introspect(revoked.access)
        assert answer is None or answer == {"active": False}
        info = client.userinfo(revoked.access)
        assert info is not None
        assert info.status_code in {401, 503}
        # a page that needs a session: not served without the session store
        assert account_status(stack.server.url, live) == 503
        # a revocation is confirmed only when it is recorded (checked once Redis is back)
        revocation.append(client.revoke(unrevoked.access))
        assert revocation[0] in {200, 503}

    with load(client, LOAD_USERS) as generator:
        wait_warm(generator, len(LOAD_USERS))
        outage = run_outage(
            generator,
            stack.server.url,
            stack.redis.kill,
            stack.redis.start,
            during,
            seconds=OUTAGE_SECONDS,
        )
        during_outage = _outage_records(stack, outage)
    _check_recovery(stack, outage, generator, "Redis killed, restarted empty")
    # while Redis was down nothing signed in, and the pages said so with a 503
    assert [r for r in during_outage if r.endpoint == "login" and r.status == 302] == []
    assert {r.status for r in during_outage if r.endpoint == "login_form"} <= {503}
    # valid tokens: 503, or active when the answer did not need the lost store
    assert {r.status for r in during_outage if r.endpoint == "introspect"} <= {200, 503}
    assert any(r.status == 503 for r in during_outage)
    if revocation == [200]:
        assert client.introspect(unrevoked.access) == {"active": False}
    # every session was in the lost store: a sign-in is needed again
    assert not session_works(stack.server.url, live)
    _check_after(stack, signed_out)


def test_postgres_killed_and_restarted_under_load(stack: Stack) -> None:
    client = stack.client
    signed_out = signed_out_cookie(client, "leaver")
    live = signed_in_cookie(client, "probe")
    revoked = client.full_round("probe")
    assert revoked is not None
    assert client.revoke(revoked.access) == 200
    # a session in which the back-channel client got a code: its end is owed a notice
    notified = requests.Session()
    signed_in = stack.backchannel.sign_in(notified, "notified")
    assert signed_in is not None
    assert signed_in.status_code == 302
    assert stack.backchannel.authorize(notified, Flow()) is not None

    def during() -> None:
        time.sleep(0.3)
        assert readyz(stack.server.url) == 503
        signed_in = client.sign_in(requests.Session(), "probe")
        assert signed_in is not None
        assert signed_in.status_code == 503, signed_in.text[:300]
        answer = client.introspect(revoked.access)
        assert answer is None or answer == {"active": False}
        # the session is readable, but its account cannot be checked: no page
        assert account_status(stack.server.url, live) == 503

    with load(client, LOAD_USERS) as generator:
        wait_warm(generator, len(LOAD_USERS))
        grants_before = count_rows(stack.postgres.url, "oauth_grants")
        outage = run_outage(
            generator,
            stack.server.url,
            stack.postgres.kill,
            stack.postgres.start,
            during,
            seconds=OUTAGE_SECONDS,
        )
        during_outage = _outage_records(stack, outage)
    _check_recovery(stack, outage, generator, "PostgreSQL killed, restarted")
    assert [r for r in during_outage if r.endpoint == "login" and r.status == 302] == []
    unexpected = [
        r for r in during_outage if r.endpoint in {"token", "userinfo"} and r.status != 503
    ]
    assert unexpected == []
    assert any(r.status == 503 for r in during_outage)
    assert count_rows(stack.postgres.url, "oauth_grants") > grants_before
    # sessions live in Redis: nobody was signed out by the database's crash
    assert session_works(stack.server.url, live)
    # the workers' back-channel deliverers lived through it
    assert sign_out(stack.server.url, notified.cookies[SESSION_COOKIE]) == 302
    assert stack.receiver.wait_for(1, timeout=10), "no back-channel logout notice"
    _check_after(stack, signed_out)


def test_a_revoked_access_token_stays_revoked_after_redis_restarts_empty(stack: Stack) -> None:
    client = stack.client
    tokens = client.full_round("probe")
    assert tokens is not None
    assert client.revoke(tokens.access) == 200
    assert client.introspect(tokens.access) == {"active": False}
    stack.redis.kill()
    stack.redis.start()
    assert wait_ready(stack.server.url, RECOVERY_LIMIT) is not None
    assert client.introspect(tokens.access) == {"active": False}
    info = client.userinfo(tokens.access)
    assert info is not None
    assert info.status_code == 401
