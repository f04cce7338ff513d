"""Security Event Tokens with a peer (issue 13, item 5): what is sent when an account is
disabled or its level changes, the push with retries and failures, and what a peer's
pushed SET does here, from the attacker's side too (forged, replayed, misaddressed).

The peer is a real HTTP server on a free port: its discovery document, its keys (a
joserfc EC key), and a push endpoint that answers as the test says."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey
from sqlalchemy import select

from accounts.container import Accounts
from accounts.people.models import UserStatus
from accounts.realname.services import DocumentClaim, VerificationMethod
from federation.upstream.container import Upstreams
from federation.upstream.models import UpstreamLink
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.models import ReceivedSet, SetDelivery
from idp.oauth.security_events import (
    ACCOUNT_DISABLED,
    LEVEL_CHANGE,
    LEVEL_NAMESPACE,
    LINK_REMOVED,
    SESSION_REVOKED,
    SET_MEDIA_TYPE,
    SecurityEvents,
)
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_realname import load_registry
from tests.e2e.servers import free_port
from tests.support import create_user, sign_in

ISSUER = "http://localhost"  # the tests' issuer (tests/conftest.py)
PERSON_ID = "11010519491231002X"
PERSON_NAME = "王小丽"


@dataclass
class Peer:
    """A peer platform: it serves its keys and records the SETs pushed to it."""

    url: str
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", {"kid": "p1"}))
    answers: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    pushed: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    key_fetches: int = 0

    @property
    def issuer(self) -> str:
        return self.url

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.key]).as_dict(private=False))

    def sign(self, claims: dict[str, Any], *, key: Any = None, header: Any = None) -> str:
        header = header or {"alg": "ES256", "kid": self.key.kid, "typ": "secevent+jwt"}
        return jwt.encode(header, claims, key or self.key, algorithms=[header["alg"]])

    def event(self, sub: str, event_type: str = ACCOUNT_DISABLED, **extra: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": ISSUER,
            "iat": int(time.time()),
            "jti": uuid.uuid4().hex,
            "sub_id": {"format": "iss_sub", "iss": ISSUER, "sub": sub},
            "events": {event_type: {}},
        }
        claims.update(extra)
        return claims


def _handler(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._json(200, {"issuer": peer.issuer, "jwks_uri": f"{peer.url}/jwks"})
            elif self.path == "/jwks":
                peer.key_fetches += 1
                self._json(200, peer.jwks())
            else:
                self._json(404, {})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            peer.pushed.append((dict(self.headers), body))
            status, answer = peer.answers.pop(0) if peer.answers else (202, None)
            if answer is None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(status, answer)

    return Handler


@pytest.fixture
def peer() -> Iterator[Peer]:
    port = free_port()
    found = Peer(f"http://127.0.0.1:{port}")
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(found))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings_overrides(peer: Peer) -> dict[str, Any]:
    return {
        "peers": [
            {
                "name": "province",
                "issuer": peer.issuer,
                "set_push_url": f"{peer.url}/push",
                "set_push_token": "push-secret",
            }
        ],
        "set_refusals_per_address": 20,
        # the peer is also an upstream users sign in with (its levels read through the map)
        "upstream_providers": [
            {
                "name": "province",
                "issuer": peer.issuer,
                "client_id": "city",
                "client_secret": "city-secret",
                "level_map": ["5=4", "4=4", "3=3"],
            }
        ],
    }


def deliver(app: Flask) -> int:
    return SecurityEvents.of(app).deliverer.deliver_due()


def owed(app: Flask) -> list[SetDelivery]:
    with app.app_context():
        return list(db().scalars(select(SetDelivery).order_by(SetDelivery.id)))


def pushed_claims(app: Flask, body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    with app.app_context():
        return OAuthRuntime.of().keys.verify(body.decode())


def disable(app: Flask, username: str) -> None:
    with app.app_context():
        accounts = Accounts.of()
        user = accounts.account_service().find_by_username(username)
        assert user is not None
        accounts.account_service(actor="cli").set_status(user, UserStatus.DISABLED)


def public_id(app: Flask, username: str) -> str:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        return user.public_id


def status_of(app: Flask, username: str) -> UserStatus:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        return user.status


def push(client: FlaskClient, token: str, mimetype: str = SET_MEDIA_TYPE) -> Any:
    return client.post("/security-events", data=token, content_type=mimetype)


def events(app: Flask, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db().scalars(select(AuditEvent).where(AuditEvent.event == name)))


# --- sending ----------------------------------------------------------------------------


def test_a_disabled_account_is_pushed_to_the_peer_as_a_signed_set(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    disable(app, "alice")
    (item,) = owed(app)
    assert item.peer == "province"
    assert item.event_type == ACCOUNT_DISABLED
    assert deliver(app) == 1
    ((headers, body),) = peer.pushed
    assert headers["Content-Type"] == SET_MEDIA_TYPE
    assert headers["Authorization"] == "Bearer push-secret"
    header, claims = pushed_claims(app, body)
    assert header["typ"] == "secevent+jwt"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == peer.issuer
    assert claims["jti"] == item.jti
    assert claims["sub_id"] == {"format": "iss_sub", "iss": ISSUER, "sub": public_id(app, "alice")}
    assert claims["events"] == {ACCOUNT_DISABLED: {}}
    assert owed(app)[0].delivered_at is not None
    assert deliver(app) == 0  # delivered once


def test_a_level_change_both_ways_is_pushed(app: Flask, peer: Peer) -> None:
    load_registry(app, f"number,name\n{PERSON_ID},{PERSON_NAME}\n", kind="person")
    create_user(app, "alice")
    with app.app_context():
        accounts = Accounts.of()
        user = accounts.account_service().find_by_username("alice")
        assert user is not None
        accounts.realname_service().verify_with_registry(user, PERSON_NAME, PERSON_ID)
        accounts.realname_service().end_verifications(
            user, above=1, reason="counter check failed", actor="staff:1"
        )
    assert deliver(app) == 2
    raised, lowered = (pushed_claims(app, body)[1]["events"] for _, body in peer.pushed)
    assert raised == {
        LEVEL_CHANGE: {
            "namespace": LEVEL_NAMESPACE,
            "current_level": "3",
            "previous_level": "1",
            "change_direction": "increase",
        }
    }
    assert lowered[LEVEL_CHANGE]["current_level"] == "1"
    assert lowered[LEVEL_CHANGE]["change_direction"] == "decrease"


def test_a_peer_that_is_down_gets_the_same_set_again_later(
    app: Flask, peer: Peer, clock: FrozenClock
) -> None:
    create_user(app, "alice")
    disable(app, "alice")
    peer.answers = [(503, None)]
    assert deliver(app) == 0
    (item,) = owed(app)
    assert item.attempts == 1
    assert item.delivered_at is None
    assert item.failed_at is None
    assert "HTTP 503" in (item.last_error or "")
    assert deliver(app) == 0  # not due yet: back-off
    clock.advance(6)
    assert deliver(app) == 1
    first, second = (pushed_claims(app, body)[1] for _, body in peer.pushed)
    assert first["jti"] == second["jti"]  # a retry, not a new event
    assert first["iat"] == second["iat"]


def test_a_refused_set_is_recorded_as_failed_at_once(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    disable(app, "alice")
    peer.answers = [(400, {"err": "invalid_audience", "description": "not for us"})]
    assert deliver(app) == 0
    (item,) = owed(app)
    assert item.failed_at is not None
    assert item.last_error == "refused: invalid_audience: not for us"
    (failure,) = events(app, "set.push_failed")
    assert failure.subject == "peer:province"
    listed = app.test_cli_runner().invoke(args=["events", "sent", "--failed", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert row["peer"] == "province"
    assert row["failed_at"] is not None


# --- receiving --------------------------------------------------------------------------


def test_a_peers_account_disabled_set_disables_the_account_and_ends_its_sessions(
    app: Flask, peer: Peer, client: FlaskClient
) -> None:
    create_user(app, "alice")
    sign_in(client, "alice")
    assert client.get("/account").status_code == 200
    token = peer.sign(peer.event(public_id(app, "alice")))
    answer = push(app.test_client(), token)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert status_of(app, "alice") is UserStatus.DISABLED
    assert client.get("/account").status_code == 302  # signed out
    with app.app_context():
        (row,) = db().scalars(select(ReceivedSet))
        assert row.outcome == "applied"
        assert row.peer == "province"
    assert owed(app) == []  # the peer's own change is not sent back to it
    (event,) = events(app, "set.received")
    assert event.outcome == "success"
    assert event.actor == "peer:province"


def test_a_replayed_set_is_answered_but_applied_once(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    token = peer.sign(peer.event(public_id(app, "alice"), SESSION_REVOKED))
    assert push(app.test_client(), token).status_code == 202
    assert push(app.test_client(), token).status_code == 202
    with app.app_context():
        assert len(list(db().scalars(select(ReceivedSet)))) == 1


def test_an_unknown_subject_or_event_is_recorded_not_applied(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    unknown = peer.sign(peer.event("no-such-account"))
    assert push(app.test_client(), unknown).status_code == 202
    other = peer.sign(peer.event(public_id(app, "alice"), "urn:example:event:other"))
    assert push(app.test_client(), other).status_code == 202
    with app.app_context():
        outcomes = [
            row.outcome for row in db().scalars(select(ReceivedSet).order_by(ReceivedSet.id))
        ]
    assert outcomes == ["unknown_subject", "not_applied"]
    assert status_of(app, "alice") is UserStatus.ACTIVE


def test_a_key_the_peer_added_since_is_fetched_again(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    assert push(app.test_client(), peer.sign(peer.event("nobody"))).status_code == 202
    peer.key = ECKey.generate_key("P-256", {"kid": "p2"})  # the peer rotated its key
    token = peer.sign(peer.event(public_id(app, "alice")))
    assert push(app.test_client(), token).status_code == 202
    assert status_of(app, "alice") is UserStatus.DISABLED
    assert peer.key_fetches == 2


def _refused(app: Flask, token: str, err: str, mimetype: str = SET_MEDIA_TYPE) -> None:
    answer = push(app.test_client(), token, mimetype)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.get_json()["err"] == err
    assert answer.get_json()["description"]
    assert status_of(app, "alice") is UserStatus.ACTIVE
    with app.app_context():
        assert list(db().scalars(select(ReceivedSet))) == []
    assert events(app, "set.received")[-1].outcome == "failure"


def test_forged_and_misaddressed_sets_are_refused(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    sub = public_id(app, "alice")
    good = peer.event(sub)
    stranger = ECKey.generate_key("P-256", {"kid": "p1"})  # the peer's kid, not its key
    _refused(app, peer.sign(good, key=stranger), "invalid_key")
    head, payload, signature = peer.sign(good).split(".")
    tampered = peer.sign(peer.event("someone-else")).split(".")[1]
    _refused(app, f"{head}.{tampered}.{signature}", "invalid_key")
    secret = OctKey.import_key("push-secret-push-secret-push-secret")
    hs256 = {"alg": "HS256", "typ": "secevent+jwt"}
    _refused(app, peer.sign(good, key=secret, header=hs256), "invalid_key")
    none_header = jwt.encode({"alg": "ES256", "typ": "secevent+jwt"}, good, peer.key)
    unsigned = ".".join(
        [_b64({"alg": "none", "typ": "secevent+jwt"}), none_header.split(".")[1], ""]
    )
    _refused(app, unsigned, "invalid_key")
    _refused(app, peer.sign({**good, "iss": "https://evil.example"}), "invalid_issuer")
    _refused(app, peer.sign({**good, "aud": "https://other.example"}), "invalid_audience")
    _refused(app, peer.sign({**good, "iat": int(time.time()) - 30 * 86400}), "invalid_request")
    two = {**good, "events": {ACCOUNT_DISABLED: {}, SESSION_REVOKED: {}}}
    _refused(app, peer.sign(two), "invalid_request")
    _refused(
        app, peer.sign({**good, "sub_id": {"format": "email", "email": "a@b.c"}}), "invalid_request"
    )
    jwt_typ = {"alg": "ES256", "kid": peer.key.kid, "typ": "JWT"}
    _refused(app, peer.sign(good, header=jwt_typ), "invalid_request")
    _refused(app, peer.sign(good), "invalid_request", mimetype="application/json")
    _refused(app, "not a token", "invalid_request")
    assert payload  # the untampered payload was a real one


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- the links with a peer that is also an upstream ------------------------------------------


def link(app: Flask, username: str, peer: Peer, subject: str) -> int:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        row = UpstreamLink(
            upstream="province", issuer=peer.issuer, subject=subject, user_id=user.id
        )
        db().add(row)
        db().commit()
        return row.id


def test_a_peer_names_a_linked_person_by_its_own_subject(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    create_user(app, "bob")
    link(app, "alice", peer, "prov-123")
    mine = {"format": "iss_sub", "iss": peer.issuer, "sub": "prov-123"}
    assert push(app.test_client(), peer.sign(peer.event("x", sub_id=mine))).status_code == 202
    assert status_of(app, "alice") is UserStatus.DISABLED
    assert status_of(app, "bob") is UserStatus.ACTIVE
    # another issuer's subject with the same value is nobody here
    other = {"format": "iss_sub", "iss": "https://third.example", "sub": "prov-123"}
    token = peer.sign(peer.event("x", SESSION_REVOKED, sub_id=other))
    assert push(app.test_client(), token).status_code == 202
    with app.app_context():
        outcomes = [
            row.outcome for row in db().scalars(select(ReceivedSet).order_by(ReceivedSet.id))
        ]
    assert outcomes == ["applied", "unknown_subject"]


def test_aliases_name_the_person_either_way(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    aliases = {
        "format": "aliases",
        "identifiers": [
            {"format": "iss_sub", "iss": peer.issuer, "sub": "not-linked"},
            {"format": "iss_sub", "iss": ISSUER, "sub": public_id(app, "alice")},
        ],
    }
    assert push(app.test_client(), peer.sign(peer.event("x", sub_id=aliases))).status_code == 202
    assert status_of(app, "alice") is UserStatus.DISABLED
    bad = {"format": "aliases", "identifiers": [{"format": "email", "email": "a@b.c"}]}
    refused = push(app.test_client(), peer.sign(peer.event("x", sub_id=bad)))
    assert refused.status_code == 400
    assert refused.get_json()["err"] == "invalid_request"


def test_a_removed_link_is_pushed_with_both_subjects(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")  # with a password: the link is not the last way in
    link_id = link(app, "alice", peer, "prov-123")
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert Upstreams.of().links().unlink(user, link_id)
    assert deliver(app) == 1
    ((_, body),) = peer.pushed
    claims = pushed_claims(app, body)[1]
    assert claims["events"] == {LINK_REMOVED: {"upstream": "province"}}
    assert claims["sub_id"] == {
        "format": "aliases",
        "identifiers": [
            {"format": "iss_sub", "iss": ISSUER, "sub": public_id(app, "alice")},
            {"format": "iss_sub", "iss": peer.issuer, "sub": "prov-123"},
        ],
    }


def test_a_flood_of_refused_sets_is_throttled_and_not_all_audited(app: Flask) -> None:
    answers = [push(app.test_client(), "junk").status_code for _ in range(22)]
    assert answers == [400] * 20 + [429, 429]
    assert len(events(app, "set.received")) == 20


# --- a level lowered at the peer ------------------------------------------------------------


def verified(app: Flask, username: str, *, level: int, method: str, source: str) -> None:
    with app.app_context():
        accounts = Accounts.of()
        user = accounts.account_service().find_by_username(username)
        assert user is not None
        accounts.realname_service().record_verification(
            user,
            method=VerificationMethod(method),
            level=level,
            source=source,
            document=DocumentClaim.checked("王小丽", "11010519491231002X"),
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )


def level_of(app: Flask, username: str) -> int:
    with app.app_context():
        accounts = Accounts.of()
        user = accounts.account_service().find_by_username(username)
        assert user is not None
        return accounts.realname_service().level(user)


def level_change(peer: Peer, sub: str, direction: str, current: str) -> str:
    event = {
        "namespace": LEVEL_NAMESPACE,
        "current_level": current,
        "previous_level": "5",
        "change_direction": direction,
    }
    claims = peer.event(sub, LEVEL_CHANGE)
    claims["events"] = {LEVEL_CHANGE: event}
    return peer.sign(claims)


def received_outcomes(app: Flask) -> list[str]:
    with app.app_context():
        rows = db().scalars(select(ReceivedSet).order_by(ReceivedSet.id))
        return [row.outcome for row in rows]


def test_a_level_lowered_at_the_peer_ends_only_what_the_peer_vouched_for(
    app: Flask, peer: Peer
) -> None:
    create_user(app, "alice")
    verified(app, "alice", level=3, method="registry", source="registry:local")
    verified(app, "alice", level=4, method="federation", source="upstream:province")
    assert level_of(app, "alice") == 4
    before = len(owed(app))  # the two raises, owed to the peer
    answer = push(app.test_client(), level_change(peer, public_id(app, "alice"), "decrease", "2"))
    assert answer.status_code == 202, answer.get_data(as_text=True)
    # the province's assertion ended; the registry check made here stands
    assert level_of(app, "alice") == 3
    assert received_outcomes(app) == ["applied"]
    (lowered,) = events(app, "realname.lower")
    assert lowered.actor == "peer:province"
    assert lowered.details["source"] == "upstream:province"
    assert len(owed(app)) == before  # not echoed back to the peer that lowered it


def test_a_raise_or_a_level_the_map_still_allows_changes_nothing(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    verified(app, "alice", level=4, method="federation", source="upstream:province")
    sub = public_id(app, "alice")
    # a raise is never taken on a peer's word
    assert push(app.test_client(), level_change(peer, sub, "increase", "5")).status_code == 202
    # the province's 5 still counts as 4 here (its level map): nothing to end
    assert push(app.test_client(), level_change(peer, sub, "decrease", "5")).status_code == 202
    # a value outside the vocabulary is not read as anything
    assert push(app.test_client(), level_change(peer, sub, "decrease", "gold")).status_code == 202
    assert level_of(app, "alice") == 4
    assert received_outcomes(app) == ["not_applied", "not_applied", "not_applied"]


def test_a_level_the_peer_did_not_vouch_for_is_not_lowered(app: Flask, peer: Peer) -> None:
    create_user(app, "alice")
    verified(app, "alice", level=4, method="face", source="face:dev")
    push(app.test_client(), level_change(peer, public_id(app, "alice"), "decrease", "1"))
    assert level_of(app, "alice") == 4
    assert received_outcomes(app) == ["not_applied"]
