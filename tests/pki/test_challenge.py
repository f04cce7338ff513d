"""Sign-in challenges from the attacker's side: replays, stale and borrowed challenges,
signatures by the wrong key or over the wrong text; and the driver's signatures (RSA,
ECDSA P-256, SM2, one SM2 signature made by OpenSSL as a USB-key driver would)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from idp.core.clock import FrozenClock
from idp.core.store import MemoryStore, RedisStore, Store
from pki.challenge import (
    BAD_ENCODING,
    BAD_SIGNATURE,
    CHALLENGE_PREFIX,
    CHALLENGE_TTL_SECONDS,
    EXPIRED,
    NOT_FOR_SIGNING,
    OTHER_SESSION,
    UNKNOWN,
    UNREADABLE_CERTIFICATE,
    UNSUPPORTED_KEY,
    ChallengeRefused,
    Challenges,
    sign_challenge,
    verify_challenge_signature,
)
from tests.conftest import REDIS_URL, RUN_ID
from tests.pki.certs import Issued, make_ca, make_leaf

SESSION = "session-" + "a" * 40
OTHER = "session-" + "b" * 40


# --- the store ------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    assert REDIS_URL is not None
    namespace = f"idp-test:{RUN_ID}:{uuid.uuid4().hex[:8]}:"
    made = RedisStore(REDIS_URL, namespace=namespace)
    yield made
    made.close()
    keys = list(client.scan_iter(match=namespace + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def challenges(store: Store, clock: FrozenClock) -> Challenges:
    return Challenges(store, clock=clock)


def refused(call: Callable[..., None], *args: object) -> str:
    with pytest.raises(ChallengeRefused) as caught:
        call(*args)
    return caught.value.reason


def test_a_challenge_is_fresh_url_safe_text(challenges: Challenges) -> None:
    first, second = challenges.issue(SESSION), challenges.issue(SESSION)
    assert first != second
    assert first.startswith(CHALLENGE_PREFIX)
    random_part = first.removeprefix(CHALLENGE_PREFIX)
    assert len(base64.urlsafe_b64decode(random_part + "=")) == 32
    assert first.encode("ascii").decode("ascii") == first


def test_a_challenge_is_consumed_once(challenges: Challenges) -> None:
    challenge = challenges.issue(SESSION)
    challenges.consume(challenge, SESSION)
    assert refused(challenges.consume, challenge, SESSION) == UNKNOWN


def test_parallel_replays_let_exactly_one_through(challenges: Challenges) -> None:
    challenge = challenges.issue(SESSION)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            challenges.consume(challenge, SESSION)
            outcomes.append("ok")
        except ChallengeRefused as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1
    assert outcomes.count(UNKNOWN) == 7


def test_an_expired_challenge_is_refused(challenges: Challenges, clock: FrozenClock) -> None:
    challenge = challenges.issue(SESSION)
    clock.advance(CHALLENGE_TTL_SECONDS + 1)
    assert refused(challenges.consume, challenge, SESSION) == EXPIRED
    assert refused(challenges.consume, challenge, SESSION) == UNKNOWN


def test_a_challenge_is_good_for_its_whole_lifetime(
    challenges: Challenges, clock: FrozenClock
) -> None:
    challenge = challenges.issue(SESSION)
    clock.advance(CHALLENGE_TTL_SECONDS)
    challenges.consume(challenge, SESSION)


def test_a_shorter_lifetime_can_be_chosen(store: Store, clock: FrozenClock) -> None:
    short = Challenges(store, ttl=10, clock=clock)
    challenge = short.issue(SESSION)
    clock.advance(11)
    assert refused(short.consume, challenge, SESSION) == EXPIRED
    with pytest.raises(ValueError, match="positive"):
        Challenges(store, ttl=0)


def test_the_store_forgets_a_challenge_after_its_lifetime(
    challenges: Challenges, store: Store
) -> None:
    challenge = challenges.issue(SESSION)
    key = "pki:challenge:" + hashlib.sha256(challenge.encode()).hexdigest()
    remaining = store.ttl(key)
    assert remaining is not None
    assert 0 < remaining <= CHALLENGE_TTL_SECONDS
    record = store.get(key)
    assert record is not None
    assert SESSION.encode() not in record
    assert challenge.encode() not in record
    assert hashlib.sha256(SESSION.encode()).hexdigest().encode() in record


def test_another_sessions_challenge_is_refused_and_burnt(challenges: Challenges) -> None:
    challenge = challenges.issue(SESSION)
    assert refused(challenges.consume, challenge, OTHER) == OTHER_SESSION
    # the attempt used it up: not even its own session can use it now
    assert refused(challenges.consume, challenge, SESSION) == UNKNOWN


@pytest.mark.parametrize(
    "forged",
    [
        "",
        CHALLENGE_PREFIX,
        CHALLENGE_PREFIX + "A" * 43,
        "idp-logout:" + "A" * 43,
        CHALLENGE_PREFIX + "A" * 42 + "=",
        CHALLENGE_PREFIX + "é" * 43,
        "x" * 100_000,
    ],
)
def test_a_challenge_never_issued_is_refused(challenges: Challenges, forged: str) -> None:
    challenges.issue(SESSION)
    assert refused(challenges.consume, forged, SESSION) == UNKNOWN


def test_a_corrupt_record_is_refused(challenges: Challenges, store: Store) -> None:
    challenge = challenges.issue(SESSION)
    key = "pki:challenge:" + hashlib.sha256(challenge.encode()).hexdigest()
    store.set(key, b"{not json", 60)
    assert refused(challenges.consume, challenge, SESSION) == UNKNOWN


def test_a_challenge_needs_a_session() -> None:
    with pytest.raises(ValueError, match="browser session"):
        Challenges(MemoryStore()).issue("")


def test_the_system_clock_is_the_default(store: Store) -> None:
    live = Challenges(store)
    challenge = live.issue(SESSION)
    live.consume(challenge, SESSION)


# --- keys and certificates ------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    certificate_der: bytes
    certificate_pem: bytes
    key_pem: bytes


def holder(issued: Issued) -> Holder:
    return Holder(issued.der, issued.pem, issued.key_pem)


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Challenge Test CA")


@pytest.fixture(scope="module")
def ec_holder(ca: Issued) -> Holder:
    return holder(make_leaf(ca, "EC Holder"))


@pytest.fixture(scope="module")
def rsa_holder(ca: Issued) -> Holder:
    return holder(make_leaf(ca, "RSA Holder", key="rsa"))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_sm2_holder(directory: Path, cn: str) -> Holder:
    """An SM2 key and a self-signed SM2-with-SM3 certificate made by OpenSSL 3."""
    directory.mkdir()
    openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", "key.pem",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "req", "-x509", "-new", "-key", "key.pem", "-sm3",
        "-sigopt", "distid:1234567812345678", "-subj", f"/C=CN/CN={cn}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature,nonRepudiation",
        "-out", "cert.pem",
        cwd=directory,
    )  # fmt: skip
    certificate_pem = (directory / "cert.pem").read_bytes()
    return Holder(
        pem.unarmor(certificate_pem)[2], certificate_pem, (directory / "key.pem").read_bytes()
    )


@pytest.fixture(scope="module")
def sm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sm2")


@pytest.fixture(scope="module")
def sm2_holder(sm2_dir: Path) -> Holder:
    return make_sm2_holder(sm2_dir / "holder", "SM2 Holder")


@pytest.fixture(scope="module")
def sm2_other(sm2_dir: Path) -> Holder:
    return make_sm2_holder(sm2_dir / "other", "SM2 Other")


@pytest.fixture(params=["ec", "rsa", "sm2"])
def any_holder(request: pytest.FixtureRequest) -> Holder:
    return request.getfixturevalue(f"{request.param}_holder")  # type: ignore[no-any-return]


CHALLENGE = CHALLENGE_PREFIX + "c" * 43


# --- signatures -----------------------------------------------------------------------


def test_the_drivers_answer_verifies(any_holder: Holder) -> None:
    posted = sign_challenge(any_holder.key_pem, any_holder.certificate_pem, CHALLENGE)
    assert posted["challenge"] == CHALLENGE
    assert pem.unarmor(posted["certificate"].encode())[2] == any_holder.certificate_der
    verify_challenge_signature(any_holder.certificate_der, CHALLENGE, posted["signature"])


def test_a_pem_certificate_is_accepted_for_verification(ec_holder: Holder) -> None:
    posted = sign_challenge(ec_holder.key_pem, ec_holder.certificate_pem, CHALLENGE)
    verify_challenge_signature(ec_holder.certificate_pem, CHALLENGE, posted["signature"])


def test_a_der_certificate_is_accepted_for_signing(ec_holder: Holder) -> None:
    posted = sign_challenge(ec_holder.key_pem, ec_holder.certificate_der, CHALLENGE)
    verify_challenge_signature(ec_holder.certificate_der, CHALLENGE, posted["signature"])


def test_an_sm2_signature_made_by_openssl_verifies(
    sm2_holder: Holder, sm2_dir: Path, tmp_path: Path
) -> None:
    # what a USB-key driver does: SM2 with SM3 over the UTF-8 challenge, default ID
    (tmp_path / "challenge").write_bytes(CHALLENGE.encode("utf-8"))
    (tmp_path / "key.pem").write_bytes(sm2_holder.key_pem)
    openssl(
        "dgst", "-sm3", "-sign", "key.pem", "-sigopt", "distid:1234567812345678",
        "-out", "signature.der", "challenge",
        cwd=tmp_path,
    )  # fmt: skip
    signature = base64.b64encode((tmp_path / "signature.der").read_bytes()).decode()
    verify_challenge_signature(sm2_holder.certificate_der, CHALLENGE, signature)
    other = CHALLENGE_PREFIX + "d" * 43
    assert refused(verify_challenge_signature, sm2_holder.certificate_der, other, signature) == (
        BAD_SIGNATURE
    )


def test_an_sm2_signature_by_sign_challenge_verifies_with_openssl(
    sm2_holder: Holder, tmp_path: Path
) -> None:
    posted = sign_challenge(sm2_holder.key_pem, sm2_holder.certificate_pem, CHALLENGE)
    (tmp_path / "challenge").write_bytes(CHALLENGE.encode("utf-8"))
    (tmp_path / "signature.der").write_bytes(base64.b64decode(posted["signature"]))
    (tmp_path / "cert.pem").write_bytes(sm2_holder.certificate_pem)
    openssl("x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem", cwd=tmp_path)
    openssl(
        "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", "distid:1234567812345678",
        "-signature", "signature.der", "challenge",
        cwd=tmp_path,
    )  # fmt: skip


def test_a_signature_by_another_key_is_refused(
    any_holder: Holder, request: pytest.FixtureRequest
) -> None:
    stranger: Holder
    if any_holder.certificate_der == request.getfixturevalue("sm2_holder").certificate_der:
        stranger = request.getfixturevalue("sm2_other")
    else:
        ca: Issued = request.getfixturevalue("ca")
        kind = "rsa" if any_holder is request.getfixturevalue("rsa_holder") else "ec"
        stranger = holder(make_leaf(ca, "Stranger", key=kind))
    posted = sign_challenge(stranger.key_pem, stranger.certificate_pem, CHALLENGE)
    assert (
        refused(
            verify_challenge_signature, any_holder.certificate_der, CHALLENGE, posted["signature"]
        )
        == BAD_SIGNATURE
    )


def test_a_signature_over_another_challenge_is_refused(any_holder: Holder) -> None:
    posted = sign_challenge(any_holder.key_pem, any_holder.certificate_pem, CHALLENGE)
    other = CHALLENGE_PREFIX + "d" * 43
    assert (
        refused(verify_challenge_signature, any_holder.certificate_der, other, posted["signature"])
        == BAD_SIGNATURE
    )


def _key(holder: Holder) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(holder.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_a_signature_with_another_hash_is_refused(ec_holder: Holder) -> None:
    signature = _key(ec_holder).sign(CHALLENGE.encode(), ec.ECDSA(hashes.SHA384()))
    encoded = base64.b64encode(signature).decode()
    assert (
        refused(verify_challenge_signature, ec_holder.certificate_der, CHALLENGE, encoded)
        == BAD_SIGNATURE
    )


def test_an_rsa_pss_signature_is_refused(rsa_holder: Holder) -> None:
    key = serialization.load_pem_private_key(rsa_holder.key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(
        CHALLENGE.encode(),
        padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
        hashes.SHA256(),
    )
    encoded = base64.b64encode(signature).decode()
    assert (
        refused(verify_challenge_signature, rsa_holder.certificate_der, CHALLENGE, encoded)
        == BAD_SIGNATURE
    )


def test_an_ecdsa_signature_does_not_pass_for_sm2(sm2_holder: Holder, ec_holder: Holder) -> None:
    ecdsa = sign_challenge(ec_holder.key_pem, ec_holder.certificate_pem, CHALLENGE)
    assert (
        refused(
            verify_challenge_signature, sm2_holder.certificate_der, CHALLENGE, ecdsa["signature"]
        )
        == BAD_SIGNATURE
    )


def test_a_raw_r_s_signature_is_refused(ec_holder: Holder) -> None:
    # some drivers emit r || s; the contract is DER
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = _key(ec_holder).sign(CHALLENGE.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
    assert (
        refused(verify_challenge_signature, ec_holder.certificate_der, CHALLENGE, raw)
        == BAD_SIGNATURE
    )


def test_a_challenge_utf8_cannot_encode_is_refused(ec_holder: Holder) -> None:
    posted = sign_challenge(ec_holder.key_pem, ec_holder.certificate_pem, CHALLENGE)
    broken = CHALLENGE + "\ud800"
    assert (
        refused(verify_challenge_signature, ec_holder.certificate_der, broken, posted["signature"])
        == BAD_SIGNATURE
    )
    with pytest.raises(ValueError, match="UTF-8"):
        sign_challenge(ec_holder.key_pem, ec_holder.certificate_pem, broken)


def test_a_signature_with_line_breaks_is_accepted(ec_holder: Holder) -> None:
    posted = sign_challenge(ec_holder.key_pem, ec_holder.certificate_pem, CHALLENGE)
    wrapped = "\n".join(posted["signature"][i : i + 20] for i in range(0, 100, 20))
    verify_challenge_signature(ec_holder.certificate_der, CHALLENGE, wrapped + "\r\n")


@pytest.mark.parametrize(
    "text", ["", "   ", "not base64!", "QUJD=", "QUJDRA==x", "-_-_", "A" * 5000, "QUJD\x00"]
)
def test_bad_base64_is_refused(ec_holder: Holder, text: str) -> None:
    assert refused(verify_challenge_signature, ec_holder.certificate_der, CHALLENGE, text) in (
        BAD_ENCODING,
        BAD_SIGNATURE,
    )


def test_bad_base64_says_so(ec_holder: Holder) -> None:
    assert (
        refused(verify_challenge_signature, ec_holder.certificate_der, CHALLENGE, "not base64!")
        == BAD_ENCODING
    )


def test_a_certificate_not_for_signing_is_refused(ca: Issued) -> None:
    # a CA certificate's keyUsage is keyCertSign and cRLSign only
    posted = sign_challenge_unchecked(ca)
    assert refused(verify_challenge_signature, ca.der, CHALLENGE, posted) == NOT_FOR_SIGNING
    with pytest.raises(ValueError, match="key usage"):
        sign_challenge(ca.key_pem, ca.pem, CHALLENGE)


def sign_challenge_unchecked(issued: Issued) -> str:
    key = issued.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return base64.b64encode(key.sign(CHALLENGE.encode(), ec.ECDSA(hashes.SHA256()))).decode()


def test_a_p384_key_is_not_a_driver_key(ca: Issued) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc)
        .sign(ca.key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    signature = base64.b64encode(key.sign(CHALLENGE.encode(), ec.ECDSA(hashes.SHA256()))).decode()
    assert refused(verify_challenge_signature, der, CHALLENGE, signature) == UNSUPPORTED_KEY


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30" * 70_000])
def test_a_certificate_that_cannot_be_read_is_refused(data: bytes) -> None:
    assert refused(verify_challenge_signature, data, CHALLENGE, "QUJD") == UNREADABLE_CERTIFICATE


def test_a_truncated_certificate_is_refused(ec_holder: Holder) -> None:
    broken = ec_holder.certificate_der[:-10]
    assert refused(verify_challenge_signature, broken, CHALLENGE, "QUJD") == UNREADABLE_CERTIFICATE


# --- sign_challenge refuses a key that is not the certificate's -----------------------


def test_a_key_that_does_not_match_the_certificate(
    ec_holder: Holder, rsa_holder: Holder, ca: Issued
) -> None:
    stranger = make_leaf(ca, "Stranger")
    with pytest.raises(ValueError, match="does not belong to the certificate"):
        sign_challenge(stranger.key_pem, ec_holder.certificate_pem, CHALLENGE)
    with pytest.raises(ValueError, match="does not belong to the certificate"):
        sign_challenge(rsa_holder.key_pem, ec_holder.certificate_pem, CHALLENGE)


def test_an_sm2_key_that_does_not_match(sm2_holder: Holder, sm2_other: Holder) -> None:
    with pytest.raises(ValueError, match="does not belong to the certificate"):
        sign_challenge(sm2_other.key_pem, sm2_holder.certificate_pem, CHALLENGE)


def test_key_types_crossed_with_sm2(sm2_holder: Holder, ec_holder: Holder) -> None:
    with pytest.raises(ValueError, match="holds an SM2 key"):
        sign_challenge(sm2_holder.key_pem, ec_holder.certificate_pem, CHALLENGE)
    with pytest.raises(ValueError, match="SM2 key, and the key file is not one"):
        sign_challenge(ec_holder.key_pem, sm2_holder.certificate_pem, CHALLENGE)


def test_a_sec1_key_is_read(ec_holder: Holder) -> None:
    sec1 = _key(ec_holder).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    posted = sign_challenge(sec1, ec_holder.certificate_pem, CHALLENGE)
    verify_challenge_signature(ec_holder.certificate_der, CHALLENGE, posted["signature"])


def test_an_encrypted_key_is_refused_with_a_reason(ec_holder: Holder) -> None:
    encrypted = _key(ec_holder).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ValueError, match="encrypted"):
        sign_challenge(encrypted, ec_holder.certificate_pem, CHALLENGE)


@pytest.mark.parametrize("key_pem", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_key_file_that_cannot_be_read(
    ec_holder: Holder, sm2_holder: Holder, key_pem: bytes
) -> None:
    with pytest.raises(ValueError, match="not a PEM private key"):
        sign_challenge(key_pem, ec_holder.certificate_pem, CHALLENGE)
    with pytest.raises(ValueError, match=r"not a PEM private key|is not one"):
        sign_challenge(key_pem, sm2_holder.certificate_pem, CHALLENGE)


def test_a_certificate_file_that_cannot_be_read(ec_holder: Holder) -> None:
    with pytest.raises(ValueError, match="certificate cannot be read"):
        sign_challenge(ec_holder.key_pem, b"garbage", CHALLENGE)


# --- end to end -----------------------------------------------------------------------


def test_issue_sign_verify_consume(challenges: Challenges, any_holder: Holder) -> None:
    challenge = challenges.issue(SESSION)
    posted = sign_challenge(any_holder.key_pem, any_holder.certificate_pem, challenge)
    certificate = pem.unarmor(posted["certificate"].encode())[2]
    verify_challenge_signature(certificate, posted["challenge"], posted["signature"])
    challenges.consume(posted["challenge"], SESSION)
    assert refused(challenges.consume, posted["challenge"], SESSION) == UNKNOWN
