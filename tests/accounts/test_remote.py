"""The HTTP adapters of the registry, the face service and the SMS gateway, against a
real HTTP(S) server (tests/remote_services.py): signing, timeouts, retries, the circuit
breaker, mutual TLS, no personal data in logs, and level 3 end to end."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from accounts.adapters.face import FaceUnavailable, HttpFaceVerifier
from accounts.adapters.registry import NUMBER_INDEX, Answer, HttpRegistry, RegistryUnavailable
from accounts.adapters.sms import HttpSmsGateway, SmsUnavailable
from accounts.container import Accounts
from accounts.realname.errors import RegistryDown, RegistryMismatch
from accounts.realname.models import Identity, Verification
from config import Settings
from idp.app import create_app
from idp.cli import remote_service_notices
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.keys import DataCipher, DataKey
from idp.core.remote import BreakerState, CircuitBreaker, RemoteService, SignedClient, sign
from idp.core.runtime import Runtime, db
from idp.core.store import Store
from tests.remote_services import FACE_PATH, REGISTRY_PATH, Pki, RemoteServices, make_pki
from tests.support import create_user, replace_settings

KEY = b"remote-services-test-key-0123456789"
ALICE_ID = "11010519491231002X"
ALICE_NAME = "王小丽"
UNKNOWN_ID = "440106199001010013"
PHONE = "13800138000"
SMS_TEXT = "Your code is 493817"
IMAGE = b"\xff\xd8\xff\xe0" + b"a face" * 100


@pytest.fixture
def remote() -> Iterator[RemoteServices]:
    with RemoteServices(KEY) as services:
        services.people[ALICE_ID] = ALICE_NAME
        yield services


class Sleeps(list[float]):
    """Records the client's back-off instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(
    url: str,
    *,
    name: str = "registry",
    key: bytes | None = KEY,
    timeout: float = 2.0,
    retries: int = 2,
    clock: FrozenClock | None = None,
    failures: int = 5,
    reset: float = 30,
    sleeps: Sleeps | None = None,
    **tls: Path,
) -> SignedClient:
    breaker = CircuitBreaker(name, clock or FrozenClock(), failures=failures, reset_seconds=reset)
    service = RemoteService(
        name=name, url=url, timeout_seconds=timeout, retries=retries, hmac_key=key, **tls
    )
    return SignedClient(service, breaker, sleep=sleeps if sleeps is not None else Sleeps())


def http_registry(remote: RemoteServices, **options: Any) -> HttpRegistry:
    return HttpRegistry(client(remote.url + "/registry", **options))


# -- signing -------------------------------------------------------------------------------


def test_a_signed_request_is_accepted_and_answered(remote: RemoteServices) -> None:
    registry = http_registry(remote)
    result = registry.match("person", ALICE_ID, ALICE_NAME)
    assert result.answer is Answer.MATCH
    assert result.reference == "reg-1"
    assert registry.match("person", ALICE_ID, "王小明").answer is Answer.MISMATCH
    assert registry.match("person", UNKNOWN_ID, ALICE_NAME).answer is Answer.NOT_FOUND
    first = remote.received[0]
    assert (first.path, first.status) == (REGISTRY_PATH, 200)
    assert first.json() == {"kind": "person", "number": ALICE_ID, "name": ALICE_NAME}
    assert {"x-idp-key-id", "x-idp-timestamp", "x-idp-nonce", "x-idp-signature"} <= set(
        first.headers
    )
    assert len({r.headers["x-idp-nonce"] for r in remote.received}) == 3
    assert registry.source == "registry:" + remote.url + "/registry"


@pytest.mark.parametrize("key", [b"another-key-entirely-0123456789", None])
def test_a_wrong_or_missing_key_is_refused_and_not_retried(
    remote: RemoteServices, key: bytes | None
) -> None:
    registry = http_registry(remote, key=key, retries=2)
    with pytest.raises(RegistryUnavailable) as refused:
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert "HTTP 401" in str(refused.value)
    assert "not retried" in str(refused.value)
    assert [r.status for r in remote.received] == [401]


def test_the_server_refuses_replays_tampering_and_stale_timestamps(
    remote: RemoteServices,
) -> None:
    http_registry(remote).match("person", ALICE_ID, ALICE_NAME)
    sent = remote.received[0]
    headers = {k: v for k, v in sent.headers.items() if k.startswith("x-idp-")}
    url = remote.url + REGISTRY_PATH
    with requests.Session() as session:
        replayed = session.post(url, data=sent.body, headers=headers, timeout=5)
        assert replayed.status_code == 401
        tampered_body = sent.body.replace(ALICE_NAME.encode(), "王小明".encode())
        fresh = sign(KEY, "POST", REGISTRY_PATH, sent.body, request_id="r1", now=time.time())
        tampered = session.post(
            url, data=tampered_body, headers={**fresh, "X-IDP-Request-Id": "r1"}, timeout=5
        )
        assert tampered.status_code == 401
        stale = sign(KEY, "POST", REGISTRY_PATH, sent.body, request_id="r2", now=time.time() - 600)
        old = session.post(
            url, data=sent.body, headers={**stale, "X-IDP-Request-Id": "r2"}, timeout=5
        )
        assert old.status_code == 401
        good = sign(KEY, "POST", REGISTRY_PATH, sent.body, request_id="r3", now=time.time())
        control = session.post(
            url, data=sent.body, headers={**good, "X-IDP-Request-Id": "r3"}, timeout=5
        )
        assert control.status_code == 200  # the same request, properly signed, is fine


# -- timeouts, retries, 4xx ------------------------------------------------------------------


def test_a_slow_service_is_retried_then_unavailable(remote: RemoteServices) -> None:
    remote.slow_seconds = 3
    sleeps = Sleeps()
    registry = http_registry(remote, timeout=0.2, retries=2, sleeps=sleeps)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as down:
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert time.monotonic() - started < 2.5  # three short attempts, not the server's 3 s
    assert len(remote.received) == 3
    assert "timed out" in str(down.value)
    assert "3 attempts" in str(down.value)
    # exponential back-off with jitter: each delay within [ceiling/2, ceiling]
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1
    assert 0.1 <= sleeps[1] <= 0.2


def test_a_500_then_a_200_succeeds_after_one_retry(remote: RemoteServices) -> None:
    remote.fail_next(1, 500)
    sleeps = Sleeps()
    result = http_registry(remote, sleeps=sleeps).match("person", ALICE_ID, ALICE_NAME)
    assert result.answer is Answer.MATCH
    assert [r.status for r in remote.received] == [500, 200]
    assert len(sleeps) == 1
    # each attempt is signed afresh (a new nonce) but is the same request
    first, second = remote.received
    assert first.headers["x-idp-nonce"] != second.headers["x-idp-nonce"]
    assert first.headers["x-idp-request-id"] == second.headers["x-idp-request-id"]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 302])
def test_other_statuses_are_not_retried(remote: RemoteServices, status: int) -> None:
    remote.fail_next(1, status)
    with pytest.raises(RegistryUnavailable, match=f"HTTP {status}"):
        http_registry(remote, retries=3).match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b"",
        b'{"answer": "maybe"}',
        b'{"answer": ["match"]}',
        b'{"answer": "match", "reference": 5}',
        b'{"answer": "match", "reference": "' + b"r" * 201 + b'"}',
        b"{" + b'"x": "y",' * 10000 + b'"answer": "match"}',  # too large
    ],
)
def test_a_malformed_answer_is_unavailable(remote: RemoteServices, raw: bytes) -> None:
    remote.raw_answer = raw
    with pytest.raises(RegistryUnavailable):
        http_registry(remote).match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 1


def test_nobody_listening_is_unavailable() -> None:
    with RemoteServices(KEY) as gone:
        url = gone.url
    with pytest.raises(RegistryUnavailable, match="connection failed"):
        HttpRegistry(client(url, retries=1)).match("person", ALICE_ID, ALICE_NAME)


# -- the circuit breaker -------------------------------------------------------------------


def test_the_breaker_opens_stays_open_and_a_trial_closes_it(remote: RemoteServices) -> None:
    clock = FrozenClock()
    registry = http_registry(remote, retries=0, failures=3, reset=30, clock=clock)
    remote.fail_next(100, 503)
    for _ in range(3):
        with pytest.raises(RegistryUnavailable, match="HTTP 503"):
            registry.match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 3
    with pytest.raises(RegistryUnavailable, match="circuit open"):
        registry.match("person", ALICE_ID, ALICE_NAME)
    clock.advance(29)
    with pytest.raises(RegistryUnavailable, match="circuit open"):
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 3  # the network was not touched
    remote.fail_next(0)
    clock.advance(2)
    assert registry.match("person", ALICE_ID, ALICE_NAME).answer is Answer.MATCH
    assert registry.match("person", ALICE_ID, ALICE_NAME).answer is Answer.MATCH
    assert len(remote.received) == 5


def test_a_failed_trial_opens_the_breaker_again(remote: RemoteServices) -> None:
    clock = FrozenClock()
    rclient = client(remote.url + "/registry", retries=0, failures=2, reset=10, clock=clock)
    registry = HttpRegistry(rclient)
    remote.fail_next(100)
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            registry.match("person", ALICE_ID, ALICE_NAME)
    assert rclient.breaker.state is BreakerState.OPEN
    clock.advance(11)
    with pytest.raises(RegistryUnavailable, match="HTTP 500"):  # the trial goes out
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 3
    assert rclient.breaker.state is BreakerState.OPEN
    with pytest.raises(RegistryUnavailable, match="circuit open"):
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 3


def test_the_breaker_counts_attempts_and_stops_a_call_mid_retry(remote: RemoteServices) -> None:
    remote.fail_next(100)
    registry = http_registry(remote, retries=5, failures=3)
    with pytest.raises(RegistryUnavailable, match="circuit open"):
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == 3


def test_only_one_trial_goes_out_while_half_open(remote: RemoteServices) -> None:
    clock = FrozenClock()
    registry = http_registry(remote, retries=0, failures=1, reset=5, clock=clock)
    remote.fail_next(1)
    with pytest.raises(RegistryUnavailable):
        registry.match("person", ALICE_ID, ALICE_NAME)
    clock.advance(6)
    remote.slow_seconds = 0.5  # the trial takes a while; others arrive meanwhile
    outcomes: list[str] = []
    barrier = threading.Barrier(5)

    def call() -> None:
        barrier.wait()
        try:
            outcomes.append(registry.match("person", ALICE_ID, ALICE_NAME).answer.value)
        except RegistryUnavailable as exc:
            outcomes.append("refused" if "circuit open" in str(exc) else str(exc))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["match", "refused", "refused", "refused", "refused"]
    assert len(remote.received) == 2


# -- mutual TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_remote(pki: Pki) -> Iterator[RemoteServices]:
    with RemoteServices(KEY, pki=pki) as services:
        services.people[ALICE_ID] = ALICE_NAME
        yield services


def test_mutual_tls_with_the_client_certificate_works(tls_remote: RemoteServices, pki: Pki) -> None:
    assert tls_remote.url.startswith("https://")
    registry = http_registry(
        tls_remote, client_cert=pki.client_cert, client_key=pki.client_key, ca_file=pki.ca_cert
    )
    assert registry.match("person", ALICE_ID, ALICE_NAME).answer is Answer.MATCH


@pytest.mark.parametrize("missing", ["client certificate", "server's CA"])
def test_mutual_tls_without_the_certificate_or_ca_is_unavailable(
    tls_remote: RemoteServices, pki: Pki, missing: str
) -> None:
    tls: dict[str, Path] = (
        {"ca_file": pki.ca_cert}
        if missing == "client certificate"
        else {
            "client_cert": pki.client_cert,
            "client_key": pki.client_key,
            "ca_file": pki.other_ca_cert,
        }
    )
    registry = http_registry(tls_remote, retries=1, **tls)
    with pytest.raises(RegistryUnavailable, match="2 attempts"):
        registry.match("person", ALICE_ID, ALICE_NAME)
    assert tls_remote.received == []  # no request got through


def test_an_unreadable_certificate_file_is_unavailable(
    tls_remote: RemoteServices, pki: Pki, tmp_path: Path
) -> None:
    registry = http_registry(
        tls_remote,
        client_cert=tmp_path / "missing.pem",
        client_key=pki.client_key,
        ca_file=pki.ca_cert,
    )
    with pytest.raises(RegistryUnavailable, match="not retried"):
        registry.match("person", ALICE_ID, ALICE_NAME)


# -- face and SMS ----------------------------------------------------------------------------


def test_the_face_adapter(remote: RemoteServices) -> None:
    face = HttpFaceVerifier(client(remote.url + "/face", name="face"))
    result = face.compare(ALICE_ID, ALICE_NAME, IMAGE)
    assert (result.matched, result.score, result.reference) == (True, 0.97, "face-1")
    sent = remote.received[0]
    assert sent.path == FACE_PATH
    assert base64.b64decode(sent.json()["image"]) == IMAGE
    remote.face_mismatch = True
    assert face.compare(ALICE_ID, ALICE_NAME, IMAGE).matched is False
    assert face.source == "face:" + remote.url + "/face"


@pytest.mark.parametrize(
    "answer",
    [
        {"matched": "yes"},
        {"matched": 1},
        {"matched": True, "score": 1.5},
        {"matched": True, "score": True},
        {"matched": True, "score": "0.9"},
        {"score": 0.9},
    ],
)
def test_a_malformed_face_answer_is_unavailable(
    remote: RemoteServices, answer: dict[str, Any]
) -> None:
    remote.raw_answer = json.dumps(answer).encode()
    face = HttpFaceVerifier(client(remote.url + "/face", name="face"))
    with pytest.raises(FaceUnavailable):
        face.compare(ALICE_ID, ALICE_NAME, IMAGE)


def test_the_sms_adapter_sends_once_even_when_a_late_answer_is_retried(
    remote: RemoteServices,
) -> None:
    gateway = HttpSmsGateway(client(remote.url + "/sms/send", name="sms", timeout=0.3))
    remote.slow_seconds, remote.slow_count = 2, 1  # accepted, but the answer is late
    gateway.send(PHONE, SMS_TEXT)
    assert remote.sms == [{"phone": PHONE, "text": SMS_TEXT}]
    assert len(remote.received) == 2
    remote.fail_next(5)
    with pytest.raises(SmsUnavailable, match="HTTP 500"):
        gateway.send(PHONE, SMS_TEXT)
    assert gateway.source == "sms:" + remote.url + "/sms/send"


# -- what is never logged --------------------------------------------------------------------


def test_no_personal_data_in_logs_or_messages(
    remote: RemoteServices, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    registry = http_registry(remote, timeout=0.2, retries=1, failures=100)
    face = HttpFaceVerifier(client(remote.url + "/face", name="face", timeout=0.2, retries=1))
    sms = HttpSmsGateway(client(remote.url + "/sms/send", name="sms", timeout=0.2, retries=1))

    def attempt_all() -> None:
        for call, error in (
            (lambda: registry.match("person", ALICE_ID, ALICE_NAME), RegistryUnavailable),
            (lambda: face.compare(ALICE_ID, ALICE_NAME, IMAGE), FaceUnavailable),
            (lambda: sms.send(PHONE, SMS_TEXT), SmsUnavailable),
        ):
            try:
                call()
            except error as exc:
                messages.append(str(exc))

    remote.fail_next(100)  # 500s
    attempt_all()
    remote.fail_next(0)
    remote.raw_answer = b'{"unexpected": "' + ALICE_ID.encode() + b'"}'  # malformed
    attempt_all()
    remote.raw_answer = None
    remote.slow_seconds = 1  # timeouts
    attempt_all()
    remote.slow_seconds = 0
    with pytest.raises(RegistryUnavailable) as refused:
        http_registry(remote, key=b"wrong-key-0123456789").match("person", ALICE_ID, ALICE_NAME)
    messages.append(str(refused.value))
    assert len(messages) >= 8
    assert "registry" in caplog.text
    assert "HTTP 500" in caplog.text
    assert "attempt" in caplog.text
    everything = caplog.text + "\n".join(messages)
    image_b64 = base64.b64encode(IMAGE).decode()
    for secret in (ALICE_ID, ALICE_ID[:17], ALICE_NAME, PHONE, SMS_TEXT, image_b64[:20]):
        assert secret not in everything


# -- through the application: selection, per-app state, level 3 --------------------------------


@pytest.fixture
def settings_overrides(remote: RemoteServices) -> dict[str, Any]:
    return {
        "registry_adapter": "http",
        "registry_url": remote.url + "/registry",
        "registry_hmac_key": KEY.decode(),
        "registry_timeout_seconds": 0.3,
        "registry_retries": 1,
        "face_adapter": "http",
        "face_url": remote.url + "/face",
        "face_hmac_key": KEY.decode(),
        "sms_gateway": "http",
        "sms_gateway_url": remote.url + "/sms/send",
        "sms_gateway_hmac_key": KEY.decode(),
        "remote_breaker_failures": 4,
    }


def verify(app: Flask, name: str, number: str) -> Verification:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        return Accounts.of().realname_service().verify_with_registry(user, name, number)


def level(app: Flask) -> int:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        return Accounts.of().realname_service().level(user)


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db().scalar(select(func.count()).select_from(model)) or 0)


def test_level_3_through_the_http_registry(app: Flask, remote: RemoteServices) -> None:
    create_user(app)
    with pytest.raises(RegistryMismatch):
        verify(app, "王小明", ALICE_ID)
    assert level(app) == 1
    verification = verify(app, ALICE_NAME, ALICE_ID)
    assert verification.level == 3
    assert verification.source == "registry:" + remote.url + "/registry"
    assert verification.evidence_ref == "reg-2"
    assert level(app) == 3
    assert [r.status for r in remote.received] == [200, 200]


def test_a_slow_registry_leaves_the_level_and_records_nothing(
    app: Flask, remote: RemoteServices
) -> None:
    create_user(app)
    remote.slow_seconds = 2
    with pytest.raises(RegistryDown):
        verify(app, ALICE_NAME, ALICE_ID)
    assert len(remote.received) == 2  # registry_retries=1
    assert level(app) == 1
    assert count(app, Identity) == 0
    assert count(app, Verification) == 0
    with app.app_context():
        (event,) = db().scalars(select(AuditEvent).where(AuditEvent.event == "realname.verify"))
        assert event.details["reason"] == "registry_unavailable"
        assert "timed out" in event.details["error"]
        assert ALICE_ID not in str(event.details)
        assert ALICE_NAME not in str(event.details)
    remote.slow_seconds = 0
    verify(app, ALICE_NAME, ALICE_ID)  # later, it answers
    assert level(app) == 3


def test_the_adapters_are_built_once_per_app_and_keep_their_breaker(
    app: Flask, remote: RemoteServices
) -> None:
    with app.app_context():
        first = Accounts.of().registry()
        assert isinstance(first, HttpRegistry)
        assert isinstance(Accounts.of().face, HttpFaceVerifier)
        assert isinstance(Accounts.of().sms, HttpSmsGateway)
        Accounts.of().sms.send(PHONE, SMS_TEXT)
    assert remote.sms == [{"phone": PHONE, "text": SMS_TEXT}]
    remote.fail_next(100)
    for _ in range(2):  # two calls of two attempts: four failures open the breaker
        with app.app_context(), pytest.raises(RegistryUnavailable):
            Accounts.of().registry().match("person", ALICE_ID, ALICE_NAME)
    received = len(remote.received)
    with app.app_context():
        assert Accounts.of().registry() is first
        with pytest.raises(RegistryUnavailable, match="circuit open"):
            Accounts.of().registry().match("person", ALICE_ID, ALICE_NAME)
    assert len(remote.received) == received


def test_development_adapters_warn_when_built(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    local = replace_settings(
        settings, registry_adapter="local", face_adapter="development", sms_gateway="development"
    )
    with caplog.at_level(logging.WARNING, logger="accounts.container"):
        other = create_app(local, store=store)
    try:
        with other.app_context():
            for _ in range(2):  # built with the app: asking again warns no more
                Accounts.of().registry()
                assert Accounts.of().face is Accounts.of().face
        warnings = [r.getMessage() for r in caplog.records if r.name == "accounts.container"]
        assert len(warnings) == 3  # once each per app
        assert any("LOCAL COPY" in w for w in warnings)
        assert any("NOT SENT" in w and "sms.log" in w for w in warnings)
        assert any("DEVELOPMENT" in w and "compares no faces" in w for w in warnings)
    finally:
        Runtime.of(other).database.dispose()


def test_start_up_notices(settings: Settings) -> None:
    http = remote_service_notices(settings)
    assert http == []
    development = remote_service_notices(
        replace_settings(
            settings,
            registry_adapter="local",
            face_adapter="development",
            sms_gateway="development",
        )
    )
    assert len(development) == 3
    assert "LOCAL COPY" in development[0]
    assert "SMS messages are NOT SENT, they are written to" in development[1]
    assert "compares no faces" in development[2]
    unsigned = remote_service_notices(replace_settings(settings, registry_hmac_key=None))
    assert unsigned == [
        "requests to the registry service are NOT SIGNED: registry_hmac_key is not set"
    ]


def test_the_registry_names_an_organisations_legal_representative_by_keyed_hash(
    remote: RemoteServices,
) -> None:
    """The registry service's answer carries the representative's number; the platform
    keeps only its keyed hash, the one a confirmed identity of that number has."""
    cipher = DataCipher([DataKey("d1", b"k" * 32)], index_key=b"i" * 32)
    registry = HttpRegistry(client(remote.url + "/registry"), cipher)
    remote.raw_answer = json.dumps(
        {"answer": "match", "reference": "r-1", "representative": ALICE_ID.lower()}
    ).encode()
    result = registry.match("organisation", "91110000600037341L", "示例")
    assert result.answer is Answer.MATCH
    assert result.representative_index == cipher.blind_index(ALICE_ID, purpose=NUMBER_INDEX)
    assert ALICE_ID not in str(result)
    remote.raw_answer = b'{"answer": "match", "representative": "not a number"}'
    with pytest.raises(RegistryUnavailable):
        registry.match("organisation", "91110000600037341L", "示例")
