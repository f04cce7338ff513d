"""Revocation survives losing the store (issue 9): every way a token is revoked is
recorded in the database, and a store that lost its markers (restarted empty, failed
over to a replica that missed the last writes, flushed) is restored before another
answer is trusted. Tried from the outside (introspection, userinfo), on both back ends,
on a real Redis killed and restarted, and as a state machine over any order of
revocations, losses and checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import event, insert, select

from accounts.people.models import UserStatus
from idp.app import create_app
from idp.core.clock import FrozenClock
from idp.core.db import Database
from idp.core.runtime import Runtime, db
from idp.core.store import MemoryStore, RedisStore, Store
from idp.oauth.models import RevokedAccessToken
from idp.oauth.revocation import EPOCH_KEY, Revocations, jti_key
from idp.oauth.server import OAuthRuntime
from tests.conftest import Backend, EnglishClient, make_settings
from tests.oauth_support import RP, Flow, register
from tests.redis_servers import RedisProcess, running_redis
from tests.support import create_user, csrf_token, text


@pytest.fixture
def rp(app: Flask) -> RP:
    create_user(app)
    _, secret = register(
        app,
        "rp",
        first_party=True,
        scope="openid profile offline_access api.read",
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
    )
    return RP(app, "rp", secret)


def lose_everything(store: Store) -> None:
    """What a Redis restarted without persistence (or a FLUSHALL) leaves: nothing."""
    if isinstance(store, MemoryStore):
        store._data.clear()
        return
    assert isinstance(store, RedisStore)
    keys = list(store._redis.scan_iter(match=store._namespace + "*", count=1000))
    if keys:
        store._redis.delete(*keys)


def active(rp: RP, client: FlaskClient, token: str) -> bool:
    answer = rp.post(client, "/introspect", {"token": token})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return bool(answer.get_json()["active"])


def userinfo_status(client: FlaskClient, token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code


# -- every way of revoking, then the store loses everything


def _revoke_access_token(rp: RP, client: FlaskClient, _app: Flask, tokens: dict[str, Any]) -> None:
    assert rp.post(client, "/revoke", {"token": tokens["access_token"]}).status_code == 200


def _revoke_refresh_token(rp: RP, client: FlaskClient, _app: Flask, tokens: dict[str, Any]) -> None:
    response = rp.post(
        client, "/revoke", {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200


def _reuse_refresh_token(rp: RP, client: FlaskClient, _app: Flask, tokens: dict[str, Any]) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert rp.token_request(client, form).status_code == 200
    assert rp.token_request(client, form).get_json()["error"] == "invalid_grant"


def _disable_account(_rp: RP, _client: FlaskClient, app: Flask, _tokens: dict[str, Any]) -> None:
    from accounts.container import Accounts

    with app.app_context():
        accounts = Accounts.of().account_service(actor="test")
        user = accounts.find_by_username("alice")
        assert user is not None
        accounts.set_status(user, UserStatus.DISABLED)


REVOCATIONS = {
    "revoked access token": _revoke_access_token,
    "revoked refresh token": _revoke_refresh_token,
    "refresh token reused": _reuse_refresh_token,
    "account disabled": _disable_account,
}


@pytest.mark.parametrize("how", list(REVOCATIONS))
def test_a_revoked_token_stays_revoked_when_the_store_loses_everything(
    app: Flask, client: FlaskClient, rp: RP, store: Store, how: str
) -> None:
    tokens, _ = rp.tokens(client, scope="openid offline_access")
    kept, _ = rp.tokens(client, scope="openid offline_access")
    REVOCATIONS[how](rp, client, app, tokens)
    assert not active(rp, client, tokens["access_token"])

    lose_everything(store)

    assert not active(rp, client, tokens["access_token"])
    assert userinfo_status(client, tokens["access_token"]) == 401
    if how != "account disabled":
        # the other grant was never revoked: still good (nothing was over-revoked)
        assert active(rp, client, kept["access_token"])


def test_a_replayed_code_revokes_for_good(
    app: Flask, client: FlaskClient, rp: RP, store: Store
) -> None:
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow, scope="openid")
    tokens = rp.redeem(client, callback["code"], flow).get_json()
    assert rp.redeem(client, callback["code"], flow).status_code == 400  # the replay
    lose_everything(store)
    assert not active(rp, client, tokens["access_token"])
    assert userinfo_status(client, tokens["access_token"]) == 401


def test_withdrawn_consent_revokes_for_good(app: Flask, client: FlaskClient, store: Store) -> None:
    create_user(app)
    _, secret = register(app, "thirdparty", scope="openid profile")
    third = RP(app, "thirdparty", secret)
    tokens, _ = third.tokens(client)
    from tests.support import submit

    response = submit(
        client,
        "/account/services/revoke",
        {"client_id": "thirdparty"},
        form_url="/account/services",
    )
    assert response.status_code in (200, 302, 303)
    lose_everything(store)
    assert not active(third, client, tokens["access_token"])


def test_signing_out_ends_the_sessions_grants_but_not_offline_ones(
    client: FlaskClient, rp: RP, store: Store
) -> None:
    """OpenID Connect Back-Channel Logout 2.7: what was granted in the session ends
    with it; ``offline_access`` outlives it. Durably: the store then loses everything."""
    online, _ = rp.tokens(client, scope="openid")
    offline, _ = rp.tokens(client, scope="openid offline_access")  # the same SSO session
    other_browser = rp.app.test_client()
    elsewhere, _ = rp.tokens(other_browser, scope="openid")
    page = client.get("/logout")
    assert client.post("/logout", data={"csrf_token": csrf_token(text(page))}).status_code == 302
    lose_everything(store)
    assert not active(rp, client, online["access_token"])
    assert userinfo_status(client, online["access_token"]) == 401
    assert active(rp, client, offline["access_token"])
    refreshed = rp.token_request(
        client, {"grant_type": "refresh_token", "refresh_token": offline["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert active(rp, client, elsewhere["access_token"])  # another session: untouched


def test_one_token_revoked_twice_at_once(app: Flask, rp: RP, store: Store) -> None:
    """A client that retries its revocation while the first is under way: both calls
    succeed, one row is kept."""
    import threading

    client = app.test_client()
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def revoke() -> None:
        browser = app.test_client()
        barrier.wait()
        statuses.append(rp.post(browser, "/revoke", {"token": token["access_token"]}).status_code)

    threads = [threading.Thread(target=revoke) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200, 200, 200]
    with app.app_context():
        rows = db().scalars(select(RevokedAccessToken.jti)).all()
    assert len(rows) == 1
    lose_everything(store)
    assert not active(rp, client, token["access_token"])


# -- the common case stays fast


def test_the_common_check_asks_the_database_nothing(
    app: Flask, client: FlaskClient, rp: RP
) -> None:
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    assert active(rp, client, token["access_token"])  # the first check copies, once
    engine = Runtime.of(app).database.engine
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            assert active(rp, client, token["access_token"])
            assert client.get(
                "/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
            ).status_code in (401, 403)  # no openid scope: refused, after the check
    finally:
        event.remove(engine, "before_cursor_execute", count)
    revocation_queries = [s for s in statements if "revoked" in s]
    assert revocation_queries == []


def test_a_database_revocation_the_store_missed_arrives_within_the_sync_interval(
    app: Flask, client: FlaskClient, rp: RP, clock: FrozenClock
) -> None:
    """A node cut off from the store committed a revocation but could not mark it: the
    other nodes copy it from the database within ``revocation_sync_seconds``."""
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    assert active(rp, client, token["access_token"])
    with app.app_context():
        claims = OAuthRuntime.of().verifier.claims(token["access_token"])
        assert claims is not None
        db().execute(
            insert(RevokedAccessToken).values(
                jti=claims["jti"],
                revoked_at=clock.now(),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        )
        db().commit()
        seconds = OAuthRuntime.of().core.settings.revocation_sync_seconds
    clock.advance(seconds + 1)
    assert not active(rp, client, token["access_token"])


def test_a_revocation_the_store_could_not_take_is_a_503_and_still_holds(
    app: Flask, client: FlaskClient, rp: RP, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idp.core.store import StoreUnavailable

    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    assert active(rp, client, token["access_token"])
    original_set = store.set

    def refuse_markers(key: str, value: bytes, ttl: float) -> None:
        if key.startswith("{rv}:j:"):
            raise StoreUnavailable("cannot reach the store")
        original_set(key, value, ttl)

    monkeypatch.setattr(store, "set", refuse_markers)
    response = rp.post(client, "/revoke", {"token": token["access_token"]})
    assert response.status_code == 503  # RFC 7009 2.2.1: the client retries
    monkeypatch.setattr(store, "set", original_set)
    # durable all the same: this worker copies again before its next answer
    assert not active(rp, client, token["access_token"])
    assert rp.post(client, "/revoke", {"token": token["access_token"]}).status_code == 200


# -- a real Redis, killed and restarted empty


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.mark.parametrize("backend", ["production"], indirect=True)
@pytest.mark.parametrize("replica_had_the_epoch", [False, True])
def test_redis_killed_and_restarted_empty(
    tmp_path: Path,
    backend: Backend,
    own_redis: RedisProcess,
    clock: FrozenClock,
    replica_had_the_epoch: bool,
) -> None:
    """SIGKILL, then a new empty server on the same port. With the epoch key planted in
    the new server, it plays a replica that received the epoch long ago but not the
    last revocations: the new server identity alone must trigger the restore."""
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    settings = make_settings(tmp_path, backend, redis_url=url)
    store = RedisStore(url, namespace="idp:")
    app = create_app(settings, store=store, clock=clock)
    app.test_client_class = EnglishClient
    try:
        client = app.test_client()
        create_user(app)
        _, secret = register(
            app,
            "rp",
            first_party=True,
            scope="openid offline_access",
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
        )
        rp = RP(app, "rp", secret)
        revoked, _ = rp.tokens(client, scope="openid offline_access")
        grant_revoked, _ = rp.tokens(client, scope="openid offline_access")
        kept, _ = rp.tokens(client, scope="openid offline_access")
        assert rp.post(client, "/revoke", {"token": revoked["access_token"]}).status_code == 200
        assert (
            rp.post(client, "/revoke", {"token": grant_revoked["refresh_token"]}).status_code == 200
        )
        assert not active(rp, client, revoked["access_token"])

        own_redis.kill()
        own_redis.start()
        if replica_had_the_epoch:
            own_redis.ask("SET", "idp:" + EPOCH_KEY, "replicated-long-ago")

        for token in (revoked, grant_revoked):
            assert not active(rp, client, token["access_token"])
            assert userinfo_status(client, token["access_token"]) == 401
        assert active(rp, client, kept["access_token"])
        assert userinfo_status(client, kept["access_token"]) == 200
        assert store.disruptions == 1
    finally:
        Runtime.of(app).database.dispose()
        store.close()


# -- any order of revocations, losses and checks


class _ChangingStore:
    """A real store whose server can be swapped under it: ``lose_everything`` (a
    restart without persistence) or ``fail_over`` (a replica that has the epoch but
    not the newest markers, reached through a new server identity)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.disruptions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def restart_empty(self) -> None:
        lose_everything(self._inner)
        self.disruptions += 1

    def flush(self) -> None:
        lose_everything(self._inner)

    def fail_over(self, lost_jtis: list[str]) -> None:
        self._inner.delete(*(jti_key(jti) for jti in lost_jtis))
        self.disruptions += 1


def test_no_revoked_token_is_ever_active_whatever_the_order(
    backend: Backend, tmp_path: Path, store: Store
) -> None:
    settings_ = make_settings(tmp_path, backend)
    database = Database(settings_.effective_database_url, pool_size=2)
    clock = FrozenClock()
    changing = _ChangingStore(store)
    lifetime = 600

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.revocations = Revocations(
                database,
                changing,
                clock,
                access_token_lifetime=lifetime,
                sync_seconds=30,
            )
            self.tokens: dict[str, bool] = {}  # jti -> revoked
            self.session = database.sessions()

        def teardown(self) -> None:
            self.session.close()

        @rule()
        def issue(self) -> None:
            self.tokens[uuid.uuid4().hex] = False

        @rule(data=st.data())
        def revoke(self, data: st.DataObject) -> None:
            live = [jti for jti, revoked in self.tokens.items() if not revoked]
            if not live:
                return
            jti = data.draw(st.sampled_from(live))
            expires = clock.now() + timedelta(seconds=lifetime)
            self.revocations.revoke_access_token(self.session, jti, expires)
            self.tokens[jti] = True

        @rule()
        def restart_empty(self) -> None:
            changing.restart_empty()

        @rule()
        def flush(self) -> None:
            changing.flush()

        @rule()
        def fail_over(self) -> None:
            # the replica missed the newest revocation (or all of them)
            revoked = [jti for jti, is_revoked in self.tokens.items() if is_revoked]
            changing.fail_over(revoked[-1:])

        @rule()
        def fail_over_far_behind(self) -> None:
            changing.fail_over([jti for jti, is_revoked in self.tokens.items() if is_revoked])

        @rule(seconds=st.integers(min_value=0, max_value=40))
        def time_passes(self, seconds: int) -> None:
            clock.advance(seconds)

        @invariant()
        def every_answer_is_right(self) -> None:
            for jti, revoked in self.tokens.items():
                assert self.revocations.is_revoked(jti, None) is revoked, jti

    try:
        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=25,
                stateful_step_count=15,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    finally:
        database.dispose()


def test_a_replay_racing_the_redemption_still_wins(app: Flask, client: FlaskClient, rp: RP) -> None:
    """The replay marks a grant that is not in the database yet: the redemption under
    way sees the marker, records the grant as revoked and issues nothing."""
    flow = Flow()
    callback = rp.sign_in_and_get_code(client, flow, scope="openid")
    with app.app_context():
        from idp.oauth.tokens import token_mac

        secrets_ = OAuthRuntime.of().core.keys.secrets
        raw = OAuthRuntime.of().core.store.get(f"code:{token_mac(secrets_, callback['code'])}")
        assert raw is not None
        grant_id = json.loads(raw)["grant_id"]
        OAuthRuntime.of().revocations.grants_revoked([grant_id])  # the replay got there first
    answer = rp.redeem(client, callback["code"], flow)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_grant"
    with app.app_context():
        grant = OAuthRuntime.of().tokens().grant(grant_id)
        assert grant is not None
        assert grant.revoked_reason == "code_replay"
