"""Revocation for the trust store: the compact CRL index (``pki.crl_index``), the OCSP
client (``pki.ocsp_client``) and the checker with its caches and modes
(``pki.revocation``), against real HTTP servers on free ports serving CRLs and an OCSP
responder that can be made to misbehave (``tests/pki/revocation_certs.py``)."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from asn1crypto import pem
from cryptography import x509

from idp.core.clock import FrozenClock
from pki import ocsp_client
from pki.crl_index import CrlError, CrlIndex
from pki.ocsp_client import OcspError
from pki.revocation import RevocationChecker, RevocationStatus
from tests.pki import sm2_certs
from tests.pki.certs import DAY, NOW, Issued, make_ca, make_crl, make_leaf
from tests.pki.revocation_certs import (
    OcspResponder,
    RevocationServer,
    closed_port_url,
    entry,
    extension,
    make_responder,
    many_entries,
    tlv,
    write_crl,
)

REVOKED_AT = (NOW - 2 * DAY).replace(microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Revocation Test CA")


@pytest.fixture(scope="module")
def other_ca() -> Issued:
    return make_ca("Another CA")


@pytest.fixture
def server() -> Iterator[RevocationServer]:
    with RevocationServer() as running:
        yield running


def _pem(der: bytes) -> bytes:
    armored: bytes = pem.armor("X509 CRL", der)
    return armored


# --- CRL index --------------------------------------------------------------------------


def test_index_lists_revoked_serials_and_crl_fields(ca: Issued) -> None:
    der = make_crl(ca, [(5, REVOKED_AT), (1 << 150, REVOKED_AT)], number=42)
    for data in (der, _pem(der)):
        index = CrlIndex.from_der(data, ca.der)
        assert index.size == 2
        assert index.number == 42
        assert index.issuer == ca.subject
        assert index.this_update == NOW - DAY
        assert index.next_update == NOW + 7 * DAY
        hit = index.lookup(5)
        assert hit is not None
        assert hit.revoked_at == REVOKED_AT
        assert hit.reason == "unspecified"
        assert index.lookup(1 << 150) is not None
        assert index.lookup(6) is None
        assert index.lookup(0) is None
        assert index.lookup(-5) is None


def test_reason_codes_hold_and_remove_from_crl(ca: Issued) -> None:
    entries = [
        entry(1, REVOKED_AT, 1),  # keyCompromise
        entry(2, REVOKED_AT, 6),  # certificateHold: revoked while on hold
        entry(3, REVOKED_AT, 8),  # removeFromCRL: not revoked in a complete CRL
        entry(4, REVOKED_AT, 2),  # cACompromise
        entry(0x80, REVOKED_AT),  # a serial whose DER needs a leading zero
    ]
    index = CrlIndex.from_der(write_crl(ca, entries), ca.der)
    assert [index.lookup(n) and index.lookup(n).reason for n in (1, 2, 4)] == [  # type: ignore[union-attr]
        "keyCompromise",
        "certificateHold",
        "cACompromise",
    ]
    assert index.lookup(3) is None
    assert index.lookup(0x80) is not None
    assert index.size == 4


def test_crl_of_another_ca_is_refused(ca: Issued, other_ca: Issued) -> None:
    with pytest.raises(CrlError) as caught:
        CrlIndex.from_der(make_crl(other_ca, [(5, REVOKED_AT)]), ca.der)
    assert caught.value.kind == "issuer"
    assert caught.value.reason == (
        f"the CRL was issued by {other_ca.subject}, not by the CA {ca.subject}"
    )


def test_crl_signed_by_an_impostor_with_the_same_name_is_refused(ca: Issued) -> None:
    impostor = make_ca("Revocation Test CA")  # same subject, another key
    assert impostor.subject == ca.subject
    with pytest.raises(CrlError) as caught:
        CrlIndex.from_der(make_crl(impostor), ca.der)  # an empty CRL: "nobody is revoked"
    assert caught.value.kind == "signature"
    assert "signature of the CRL" in caught.value.reason


def test_crl_with_an_entry_removed_after_signing_is_refused(ca: Issued) -> None:
    der = write_crl(ca, [entry(77, REVOKED_AT, 1)])
    # The attacker turns serial 77 into 78: the entry no longer names the certificate.
    tampered = der.replace(b"\x02\x01\x4d\x17", b"\x02\x01\x4e\x17", 1)
    assert tampered != der
    with pytest.raises(CrlError, match=r"signature of the CRL .* is invalid"):
        CrlIndex.from_der(tampered, ca.der)


def test_stale_and_future_crls_are_refused(ca: Issued) -> None:
    stale = make_crl(ca, this_update=NOW - 10 * DAY, next_update=NOW - DAY)
    with pytest.raises(CrlError) as caught:
        CrlIndex.from_der(stale, ca.der)
    assert caught.value.kind == "time"
    assert caught.value.reason == (
        f"the CRL of {ca.subject} is stale (its nextUpdate was {NOW - DAY:%Y-%m-%d %H:%M:%S} UTC)"
    )
    # The same CRL at a time when it was current is fine.
    assert CrlIndex.from_der(stale, ca.der, at=NOW - 5 * DAY).size == 0
    future = make_crl(ca, this_update=NOW + DAY, next_update=NOW + 8 * DAY)
    with pytest.raises(CrlError, match="not valid yet"):
        CrlIndex.from_der(future, ca.der)


def test_delta_partitioned_and_indirect_crls_are_refused(ca: Issued) -> None:
    delta = extension("551d1b", tlv(0x02, b"\x01"), critical=True)  # deltaCRLIndicator
    some_reasons = extension("551d1c", tlv(0x30, b"\x83\x02\x06\x40"), critical=True)
    indirect = extension("551d1c", tlv(0x30, b"\x84\x01\xff"), critical=True)
    unknown = extension("2a030405", b"\x05\x00", critical=True)
    for ext, words in (
        (delta, "is a delta CRL"),
        (some_reasons, "covers only some revocation reasons"),
        (indirect, "is an indirect CRL"),
        (unknown, "unsupported critical extension 1.2.3.4.5"),
    ):
        with pytest.raises(CrlError, match=words) as caught:
            CrlIndex.from_der(write_crl(ca, [entry(1, REVOKED_AT)], extensions=[ext]), ca.der)
        assert caught.value.kind == "unsupported"
    users_only = extension("551d1c", tlv(0x30, b"\x81\x01\xff"), critical=True)
    index = CrlIndex.from_der(
        write_crl(ca, [entry(1, REVOKED_AT)], extensions=[users_only]), ca.der
    )
    assert index.scope == "end-entity"


def test_garbage_and_truncated_crls_give_a_reason(ca: Issued) -> None:
    der = make_crl(ca, [(n, REVOKED_AT) for n in range(1, 20)])
    inputs = [b"", b"   ", b"garbage", b"\x30\x84\xff\xff\xff\xff", ca.pem, ca.der, der + b"x"]
    inputs += [der[:cut] for cut in range(0, len(der), 11)]
    inputs += [der[:40] + bytes([der[40] ^ 0xFF]) + der[41:]]
    for data in inputs:
        started = time.perf_counter()
        with pytest.raises(CrlError) as caught:
            CrlIndex.from_der(data, ca.der)
        assert caught.value.reason
        assert "\n" not in caught.value.reason
        assert time.perf_counter() - started < 0.5
    with pytest.raises(CrlError, match="the CA certificate cannot be read"):
        CrlIndex.from_der(der, b"not a certificate")


def _mutate(data: bytes, rng: random.Random) -> bytes:
    blob = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(blob))
        if rng.random() < 0.7:
            blob[pos] = rng.randrange(256)
        else:
            del blob[pos : pos + rng.randint(1, 4)]
    return bytes(blob)


def test_mutated_crls_give_a_crl_error_and_nothing_else(ca: Issued) -> None:
    """Mutations of the entries and extensions *re-signed* by the CA (so the walker
    behind the signature check sees them), and of the whole signed CRL and of the
    CA certificate: an index or a ``CrlError``, never another exception."""
    rng = random.Random(11)  # noqa: S311 -- reproducible test mutations, not secrets
    entries = entry(1, REVOKED_AT, 1) + entry(1 << 70, REVOKED_AT, 6) + many_entries(3)
    point = extension("551d1c", tlv(0x30, tlv(0xA0, tlv(0xA0, tlv(0x86, b"http://a/b")))))
    signed = make_crl(ca, [(5, REVOKED_AT)])
    cases = [write_crl(ca, _mutate(entries, rng)) for _ in range(300)]
    cases += [write_crl(ca, entries, extensions=[_mutate(point, rng)]) for _ in range(300)]
    cases += [_mutate(signed, rng) for _ in range(300)]
    for data in cases:
        with contextlib.suppress(CrlError):
            CrlIndex.from_der(data, ca.der)
    for _ in range(300):
        with contextlib.suppress(CrlError):
            CrlIndex.from_der(signed, _mutate(ca.der, rng))


def test_crl_beyond_max_bytes_is_refused_before_parsing(ca: Issued) -> None:
    huge = write_crl(ca, many_entries(20_000))
    started = time.perf_counter()
    with pytest.raises(CrlError) as caught:
        CrlIndex.from_der(huge, ca.der, max_bytes=100_000)
    assert caught.value.kind == "size"
    assert "too large" in caught.value.reason
    assert time.perf_counter() - started < 0.05


def test_sm2_crl(tmp_path: Path) -> None:
    root = sm2_certs.sm2_root(tmp_path)
    leaf = sm2_certs.sm2_leaf(tmp_path, root, "SM2 Revoked")
    good = sm2_certs.sm2_leaf(tmp_path, root, "SM2 Good")
    der = sm2_certs.sm2_crl(tmp_path, root, [leaf])
    index = CrlIndex.from_der(der, root.der)
    hit = index.lookup(leaf.serial)
    assert hit is not None
    assert hit.reason == "keyCompromise"
    assert index.lookup(good.serial) is None
    # A flipped bit in the SM2 signature (its last byte) is caught by our SM2 check.
    tampered = der[:-1] + bytes([der[-1] ^ 1])
    with pytest.raises(CrlError, match="signature"):
        CrlIndex.from_der(tampered, root.der)


def test_memory_of_the_index_is_flat_buffers(ca: Issued) -> None:
    count = 20_000
    der = write_crl(ca, many_entries(count))
    tracemalloc.start()
    try:
        index = CrlIndex.from_der(der, ca.der)
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.size == count
    # What stays is the buffers (serial bytes + a few columns + the hash table), well
    # under 60 bytes an entry; a dict of Revocation objects would be several hundred.
    assert index.memory < 60 * count
    assert retained < index.memory + 200_000
    assert peak < retained + 24 * count + 200_000


def test_a_million_entries_index_quickly_in_bounded_memory(ca: Issued) -> None:
    count = 1_000_000
    der = write_crl(ca, many_entries(count))
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.process_time()
    index = CrlIndex.from_der(der, ca.der)
    took = time.process_time() - started
    grown = process.memory_info().rss - before
    assert index.size == count
    assert took < 15  # about 3 s on the development machine
    assert index.memory < 45 * count  # 16-octet serials: about 38 MB
    assert grown < 2 * index.memory + 20_000_000
    first, last = 1 << 120, (1 << 120) + 7 * (count - 1)
    for serial in (first, last, first + 7 * 123_456):
        hit = index.lookup(serial)
        assert hit is not None
        assert hit.reason == "keyCompromise"
    assert index.lookup(first + 1) is None
    assert index.lookup(last + 7) is None
    started = time.perf_counter()
    for serial in range(first, first + 7 * 20_000, 7):
        index.lookup(serial)
    assert (time.perf_counter() - started) / 20_000 < 50e-6


# --- OCSP client ------------------------------------------------------------------------


@pytest.fixture
def leaf(ca: Issued) -> Issued:
    return make_leaf(ca, "Holder", serial=0x1234567)


def _responder(server: RevocationServer, ca: Issued, **kwargs: object) -> OcspResponder:
    responder = OcspResponder(ca, **kwargs)  # type: ignore[arg-type]
    server.responder = responder
    return responder


def test_ocsp_good_and_revoked(server: RevocationServer, ca: Issued, leaf: Issued) -> None:
    responder = _responder(server, ca, known={leaf.cert.serial_number})
    answer = ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"))
    assert answer.status == "good"
    assert answer.next_update is not None
    responder.revoked[leaf.cert.serial_number] = (REVOKED_AT, x509.ReasonFlags.key_compromise)
    answer = ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"), hash_algorithm="sha256")
    assert (answer.status, answer.revoked_at, answer.reason) == (
        "revoked",
        REVOKED_AT,
        "keyCompromise",
    )
    other = make_leaf(ca, "Stranger")
    assert ocsp_client.query(other.der, ca.der, server.url("/ocsp")).status == "unknown"


@pytest.mark.parametrize(
    ("misbehave", "reason"),
    [
        ("other-cert", "the OCSP response is for another certificate"),
        ("other-nonce", "stale or replayed OCSP response (nonce does not match)"),
        ("bad-signature", "the signature of the OCSP response is invalid"),
        ("not-yet-valid", "the OCSP response is not valid yet"),
        ("stale", "the OCSP response is stale"),
        ("old-without-nonce", "carries neither a nonce nor a nextUpdate"),
        ("garbage", "the OCSP response cannot be read"),
        ("unauthorized", "the OCSP responder answered 'unauthorized'"),
        ("huge", "more than the 65536 bytes accepted"),
    ],
)
def test_ocsp_misbehaviour_is_refused(
    server: RevocationServer, ca: Issued, leaf: Issued, misbehave: str, reason: str
) -> None:
    server.omit_length = misbehave == "huge"  # read as a stream, cut off at the limit
    _responder(server, ca, known={leaf.cert.serial_number}, misbehave=misbehave)
    with pytest.raises(OcspError) as caught:
        ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"))
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


def test_ocsp_without_nonce_but_with_next_update_is_accepted_unless_required(
    server: RevocationServer, ca: Issued, leaf: Issued
) -> None:
    _responder(server, ca, known={leaf.cert.serial_number}, misbehave="no-nonce")
    assert ocsp_client.query(leaf.der, ca.der, server.url("/ocsp")).status == "good"
    with pytest.raises(OcspError, match="carries no nonce"):
        ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"), require_nonce=True)


def test_ocsp_without_next_update_is_used_but_not_cached(
    server: RevocationServer, ca: Issued, leaf: Issued
) -> None:
    _responder(server, ca, known={leaf.cert.serial_number}, misbehave="no-next-update")
    checker = _checker()
    for _ in range(2):
        assert checker.check(leaf.der, ca.der, ocsp_url=server.url("/ocsp")).state == "good"
    assert server.hits["/ocsp"] == 2


def test_delegated_responder_needs_the_ocsp_signing_eku(
    server: RevocationServer, ca: Issued, other_ca: Issued, leaf: Issued
) -> None:
    responder = _responder(server, ca, known={leaf.cert.serial_number})
    responder.signer = make_responder(ca)
    assert ocsp_client.query(leaf.der, ca.der, server.url("/ocsp")).status == "good"
    responder.signer = make_responder(ca, ocsp_signing=False)
    with pytest.raises(OcspError, match="lacks the OCSPSigning extended key usage"):
        ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"))
    responder.signer = make_responder(other_ca)  # a responder of another CA
    with pytest.raises(OcspError, match="was not issued by the CA"):
        ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"))
    responder.signer = make_responder(ca, not_after=NOW - timedelta(hours=1))
    with pytest.raises(OcspError, match="is not valid now"):
        ocsp_client.query(leaf.der, ca.der, server.url("/ocsp"))


def test_ocsp_responder_down(ca: Issued, leaf: Issued) -> None:
    started = time.perf_counter()
    with pytest.raises(OcspError, match="cannot connect to"):
        ocsp_client.query(leaf.der, ca.der, closed_port_url())
    assert time.perf_counter() - started < 3


# --- Checker and modes ------------------------------------------------------------------


def _checker(**kwargs: object) -> RevocationChecker:
    return RevocationChecker(clock=FrozenClock(NOW), timeout=2.0, **kwargs)  # type: ignore[arg-type]


def test_revoked_by_crl_from_the_distribution_point(server: RevocationServer, ca: Issued) -> None:
    url = server.url("/ca.crl")
    revoked = make_leaf(ca, "Revoked", crl_url=url)
    good = make_leaf(ca, "Good", crl_url=url)
    server.files["/ca.crl"] = make_crl(ca, [(revoked.cert.serial_number, REVOKED_AT)])
    checker = _checker()
    status = checker.check(revoked.der, ca.der)
    assert (status.state, status.source, status.revoked_at) == ("revoked", f"CRL {url}", REVOKED_AT)
    for mode in ("soft", "hard", "require"):
        assert checker.decide(status, mode, "the certificate") == (
            f"the certificate was revoked on {REVOKED_AT:%Y-%m-%d %H:%M:%S} UTC "
            "(unspecified) by CRL"
        )
    assert checker.decide(status, "off", "the certificate") is None
    status = checker.check(good.der, ca.der)
    assert (status.state, status.failures) == ("good", ())
    assert checker.decide(status, "require", "the certificate") is None
    assert server.hits["/ca.crl"] == 1  # cached


def test_revoked_by_ocsp_from_the_aia(server: RevocationServer, ca: Issued) -> None:
    holder = make_leaf(ca, "Holder", ocsp_url=server.url("/ocsp"))
    responder = _responder(server, ca)
    responder.revoked[holder.cert.serial_number] = (REVOKED_AT, x509.ReasonFlags.key_compromise)
    checker = _checker()
    status = checker.check(holder.der, ca.der)
    assert status.state == "revoked"
    assert checker.decide(status, "soft", "the certificate") == (
        f"the certificate was revoked on {REVOKED_AT:%Y-%m-%d %H:%M:%S} UTC (keyCompromise) by OCSP"
    )


def test_ocsp_down_soft_accepts_hard_and_require_refuse(ca: Issued) -> None:
    down = closed_port_url()
    holder = make_leaf(ca, "Holder", ocsp_url=down)
    checker = _checker()
    status = checker.check(holder.der, ca.der)
    assert status.state == "unknown"
    assert status.failures == (f"OCSP {down}: cannot connect to {down}",)
    assert checker.decide(status, "soft", "the certificate") is None
    assert checker.decide(status, "hard", "the certificate") == (
        f"the revocation status of the certificate cannot be established: OCSP {down}: "
        f"cannot connect to {down}"
    )
    assert checker.decide(status, "require", "the certificate") == (
        "no valid CRL or OCSP response for the certificate (revocation mode require): "
        f"OCSP {down}: cannot connect to {down}"
    )


def test_ocsp_down_then_crl_answers(server: RevocationServer, ca: Issued) -> None:
    server.files["/ca.crl"] = make_crl(ca)
    holder = make_leaf(ca, "Holder", ocsp_url=closed_port_url(), crl_url=server.url("/ca.crl"))
    status = _checker().check(holder.der, ca.der)
    assert status.state == "good"
    assert status.source == f"CRL {server.url('/ca.crl')}"
    assert len(status.failures) == 1
    assert _checker().decide(status, "require", "the certificate") is None


def test_nothing_configured_or_named(ca: Issued) -> None:
    status = _checker().check(make_leaf(ca).der, ca.der)
    assert status == RevocationStatus("unknown", "", failures=())
    assert _checker().decide(status, "hard", "the certificate") is None
    assert _checker().decide(status, "require", "the certificate") == (
        "no valid CRL or OCSP response for the certificate (revocation mode require)"
    )


def test_bad_crls_over_http_become_failures(
    server: RevocationServer, ca: Issued, other_ca: Issued
) -> None:
    holder = make_leaf(ca)
    cases = {
        "/other.crl": (make_crl(other_ca), "was issued by"),
        "/impostor.crl": (make_crl(make_ca("Revocation Test CA")), "signature of the CRL"),
        "/stale.crl": (make_crl(ca, this_update=NOW - 9 * DAY, next_update=NOW - DAY), "stale"),
        "/garbage.crl": (b"<html>not found</html>", "not a CRL"),
        "/missing.crl": (None, "answered HTTP 404"),
    }
    for path, (body, words) in cases.items():
        if body is not None:
            server.files[path] = body
        status = _checker().check(holder.der, ca.der, crl_urls=[server.url(path)])
        assert status.state == "unknown", path
        assert len(status.failures) == 1
        assert status.failures[0].startswith(f"CRL {server.url(path)}: ")
        assert words in status.failures[0]
        assert "cannot be established" in (
            _checker().decide(status, "hard", "the certificate") or ""
        )
        assert _checker().decide(status, "soft", "the certificate") is None


@pytest.mark.parametrize("omit_length", [False, True])
def test_huge_crl_over_http_is_cut_off(
    server: RevocationServer, ca: Issued, omit_length: bool
) -> None:
    server.files["/huge.crl"] = b"\x30" * (20 * 1024 * 1024)
    server.omit_length = omit_length
    holder = make_leaf(ca)
    checker = _checker(max_crl_bytes=1024 * 1024)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        status = checker.check(holder.der, ca.der, crl_urls=[server.url("/huge.crl")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 3
    assert peak < 4 * 1024 * 1024
    assert status.state == "unknown"
    assert "more than the 1048576 bytes accepted" in status.failures[0]


def test_a_trickling_server_cannot_hold_a_check_past_the_timeout(
    server: RevocationServer, ca: Issued
) -> None:
    server.files["/slow.crl"] = make_crl(ca)
    server.trickle = 0.05  # a byte every 50 ms: each read is quick, the whole is not
    checker = RevocationChecker(clock=FrozenClock(NOW), timeout=1.0)
    started = time.perf_counter()
    status = checker.check(make_leaf(ca).der, ca.der, crl_urls=[server.url("/slow.crl")])
    assert time.perf_counter() - started < 2.5
    assert status.failures == (
        f"CRL {server.url('/slow.crl')}: {server.url('/slow.crl')} did not answer within 1 s",
    )


def test_given_crls_come_first_and_other_cas_crls_are_skipped(
    server: RevocationServer, ca: Issued, other_ca: Issued
) -> None:
    server.files["/ca.crl"] = make_crl(ca)
    holder = make_leaf(ca, crl_url=server.url("/ca.crl"))
    given = [make_crl(other_ca), _pem(make_crl(ca, [(holder.cert.serial_number, REVOKED_AT)]))]
    status = _checker().check(holder.der, ca.der, crls=given)
    assert (status.state, status.source, status.failures) == ("revoked", "CRL (given)", ())
    assert server.hits["/ca.crl"] == 0
    # A given CRL that is stale is a failure; the distribution point is used instead.
    stale = make_crl(ca, this_update=NOW - 9 * DAY, next_update=NOW - DAY)
    status = _checker().check(holder.der, ca.der, crls=[stale])
    assert status.state == "good"
    assert "CRL 1 (given)" in status.failures[0]


def test_crl_of_another_partition_does_not_clear_a_certificate(
    server: RevocationServer, ca: Issued
) -> None:
    # The CA splits its CRL by distribution point; a (validly signed) CRL of
    # partition A served where partition B's should be must not make B's revoked
    # certificate good.
    part_a, part_b = server.url("/a.crl"), server.url("/b.crl")
    holder = make_leaf(ca, crl_url=part_b)
    idp_a = extension(
        "551d1c", tlv(0x30, tlv(0xA0, tlv(0xA0, tlv(0x86, part_a.encode())))), critical=True
    )
    server.files["/b.crl"] = write_crl(ca, extensions=[idp_a])
    status = _checker().check(holder.der, ca.der)
    assert status.state == "unknown"
    assert status.failures == (
        f"CRL {part_b}: the CRL covers another distribution point ({part_a})",
    )
    idp_b = extension(
        "551d1c", tlv(0x30, tlv(0xA0, tlv(0xA0, tlv(0x86, part_b.encode())))), critical=True
    )
    server.files["/b.crl"] = write_crl(
        ca, [entry(holder.cert.serial_number, REVOKED_AT, 1)], extensions=[idp_b]
    )
    assert _checker().check(holder.der, ca.der).state == "revoked"
    # A CRL for end-entity certificates only does not clear a CA certificate.
    users_only = extension("551d1c", tlv(0x30, b"\x81\x01\xff"), critical=True)
    server.files["/users.crl"] = write_crl(ca, extensions=[users_only])
    intermediate = make_ca("Sub CA", ca, crl_url=server.url("/users.crl"))
    status = _checker().check(intermediate.der, ca.der)
    assert status.state == "unknown"
    assert "covers end-entity certificates only" in status.failures[0]


def test_configured_root_crl_then_the_intermediates_distribution_point(
    server: RevocationServer, ca: Issued
) -> None:
    # The CA is configured with its root's CRL; a certificate below its intermediate
    # names the intermediate's CRL, which is used after the root's does not fit.
    intermediate = make_ca("Issuing CA", ca, crl_url=server.url("/root.crl"))
    holder = make_leaf(intermediate, crl_url=server.url("/issuing.crl"))
    server.files["/root.crl"] = make_crl(ca)
    server.files["/issuing.crl"] = make_crl(intermediate, [(holder.cert.serial_number, REVOKED_AT)])
    checker = _checker()
    configured = [server.url("/root.crl")]
    assert checker.check(intermediate.der, ca.der, crl_urls=configured).state == "good"
    for _ in range(2):
        status = checker.check(holder.der, intermediate.der, crl_urls=configured)
        assert (status.state, status.source) == ("revoked", f"CRL {server.url('/issuing.crl')}")
        assert "was issued by" in status.failures[0]
    # The root's CRL was fetched once for the root's certificate and once (to learn
    # it is not the intermediate's) for the holder's; then no more for an hour.
    assert server.hits["/root.crl"] == 2
    assert server.hits["/issuing.crl"] == 1


def test_crl_cached_until_next_update(server: RevocationServer, ca: Issued) -> None:
    holder = make_leaf(ca, crl_url=server.url("/ca.crl"))
    server.files["/ca.crl"] = make_crl(ca, next_update=NOW + HOUR)
    clock = FrozenClock(NOW)
    checker = RevocationChecker(clock=clock, timeout=2.0)
    for _ in range(5):
        assert checker.check(holder.der, ca.der).state == "good"
        clock.advance(600)  # up to 40 minutes later
    assert server.hits["/ca.crl"] == 1
    # After nextUpdate the cached CRL is stale and the new one is fetched.
    server.files["/ca.crl"] = make_crl(
        ca,
        [(holder.cert.serial_number, NOW + HOUR)],
        this_update=NOW + HOUR,
        next_update=NOW + 3 * HOUR,
    )
    clock.advance(1800)
    assert checker.check(holder.der, ca.der).state == "revoked"
    assert server.hits["/ca.crl"] == 2


def test_crl_cache_is_bounded(server: RevocationServer, ca: Issued) -> None:
    server.files["/a.crl"] = server.files["/b.crl"] = make_crl(ca)
    holder = make_leaf(ca)
    checker = _checker(max_cached_crls=1)
    for path in ("/a.crl", "/b.crl", "/a.crl", "/a.crl"):
        assert checker.check(holder.der, ca.der, crl_urls=[server.url(path)]).state == "good"
    assert (server.hits["/a.crl"], server.hits["/b.crl"]) == (2, 1)


def test_failed_fetch_is_not_retried_at_once(server: RevocationServer, ca: Issued) -> None:
    holder = make_leaf(ca, crl_url=server.url("/missing.crl"))
    clock = FrozenClock(NOW)
    checker = RevocationChecker(clock=clock, timeout=2.0)
    for _ in range(3):
        assert "HTTP 404" in checker.check(holder.der, ca.der).failures[0]
    assert server.hits["/missing.crl"] == 1
    clock.advance(31)
    checker.check(holder.der, ca.der)
    assert server.hits["/missing.crl"] == 2


def test_concurrent_first_fetches_fetch_once(server: RevocationServer, ca: Issued) -> None:
    server.files["/ca.crl"] = make_crl(ca)
    server.delay = 0.3
    holder = make_leaf(ca, crl_url=server.url("/ca.crl"))
    checker = _checker()
    states: list[str] = []
    threads = [
        threading.Thread(target=lambda: states.append(checker.check(holder.der, ca.der).state))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert states == ["good"] * 6
    assert server.hits["/ca.crl"] == 1


def test_background_refresh_picks_up_a_new_revocation(server: RevocationServer, ca: Issued) -> None:
    holder = make_leaf(ca, crl_url=server.url("/ca.crl"))
    server.files["/ca.crl"] = make_crl(ca, next_update=NOW + HOUR)
    clock = FrozenClock(NOW)
    checker = RevocationChecker(
        clock=clock, timeout=2.0, refresh_margin=timedelta(minutes=10), refresh_interval=0.02
    )
    checker.start()
    checker.start()  # idempotent
    try:
        assert checker.check(holder.der, ca.der).state == "good"
        time.sleep(0.1)
        assert server.hits["/ca.crl"] == 1  # not due yet
        # The CA revokes the certificate and publishes early; 55 minutes later the
        # refresh (10 minutes before nextUpdate) fetches it in the background.
        server.files["/ca.crl"] = make_crl(
            ca,
            [(holder.cert.serial_number, NOW + 50 * 60 * timedelta(seconds=1))],
            this_update=NOW + timedelta(minutes=50),
            next_update=NOW + 3 * HOUR,
        )
        clock.advance(55 * 60)
        deadline = time.monotonic() + 5
        while server.hits["/ca.crl"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.hits["/ca.crl"] == 2
        time.sleep(0.1)
        clock.advance(10 * 60)  # past the old nextUpdate
        status = checker.check(holder.der, ca.der)
        assert status.state == "revoked"
        assert server.hits["/ca.crl"] == 2  # the request did not wait for a fetch
    finally:
        checker.stop()
        checker.stop()


def test_failed_refresh_keeps_the_old_crl_until_stale(server: RevocationServer, ca: Issued) -> None:
    holder = make_leaf(ca, crl_url=server.url("/ca.crl"))
    server.files["/ca.crl"] = make_crl(ca, next_update=NOW + HOUR)
    clock = FrozenClock(NOW)
    checker = RevocationChecker(clock=clock, timeout=2.0)
    assert checker.check(holder.der, ca.der).state == "good"
    del server.files["/ca.crl"]
    clock.advance(55 * 60)
    assert checker.refresh_due() == 0
    assert server.hits["/ca.crl"] == 2
    assert checker.check(holder.der, ca.der).state == "good"  # the old CRL, still current
    clock.advance(10 * 60)
    status = checker.check(holder.der, ca.der)
    assert status.state == "unknown"
    assert "HTTP 404" in status.failures[0]


def test_ocsp_answers_are_cached_until_next_update(
    server: RevocationServer, ca: Issued, leaf: Issued
) -> None:
    _responder(server, ca, known={leaf.cert.serial_number}, validity=timedelta(hours=4))
    clock = FrozenClock(NOW)
    checker = RevocationChecker(clock=clock, timeout=2.0, ocsp_cache_size=2)
    url = server.url("/ocsp")
    for _ in range(3):
        assert checker.check(leaf.der, ca.der, ocsp_url=url).state == "good"
    assert server.hits["/ocsp"] == 1
    clock.advance(3600 + 1)  # at most an hour, though nextUpdate is later
    assert checker.check(leaf.der, ca.der, ocsp_url=url).state == "good"
    assert server.hits["/ocsp"] == 2
    # The LRU holds two answers: a third certificate pushes the oldest out.
    others = [make_leaf(ca, f"Other {n}") for n in range(2)]
    server.responder.known.update(o.cert.serial_number for o in others)  # type: ignore[union-attr]
    for other in others:
        checker.check(other.der, ca.der, ocsp_url=url)
    checker.check(leaf.der, ca.der, ocsp_url=url)
    assert server.hits["/ocsp"] == 5


def test_bad_ocsp_falls_through_and_is_reported(
    server: RevocationServer, ca: Issued, leaf: Issued
) -> None:
    _responder(server, ca, known={leaf.cert.serial_number}, misbehave="other-nonce")
    status = _checker().check(leaf.der, ca.der, ocsp_url=server.url("/ocsp"))
    assert status.state == "unknown"
    assert status.failures == (
        f"OCSP {server.url('/ocsp')}: stale or replayed OCSP response (nonce does not match)",
    )
    assert _checker().decide(status, "soft", "the certificate") is None
    assert _checker().decide(status, "hard", "the certificate") is not None


def test_unknown_from_ocsp_is_not_good(server: RevocationServer, ca: Issued, leaf: Issued) -> None:
    _responder(server, ca)
    status = _checker().check(leaf.der, ca.der, ocsp_url=server.url("/ocsp"))
    assert status.state == "unknown"
    assert "does not know the certificate" in status.failures[0]


def test_garbage_certificate_gives_a_failure_not_a_traceback(ca: Issued) -> None:
    status = _checker().check(b"garbage", ca.der, crl_urls=["http://127.0.0.1:9/x.crl"])
    assert status.state == "unknown"
    assert "cannot be read" in status.failures[0]


def test_injected_fetch_errors_become_failures(ca: Issued, leaf: Issued) -> None:
    def fetch(url: str, body: bytes | None, content_type: str | None) -> bytes:
        raise RuntimeError("boom")

    checker = RevocationChecker(clock=FrozenClock(NOW), fetch=fetch)
    status = checker.check(
        leaf.der, ca.der, ocsp_url="http://ocsp.example", crl_urls=["http://crl.example"]
    )
    assert status.failures == (
        "OCSP http://ocsp.example: RuntimeError: boom",
        "CRL http://crl.example: cannot fetch http://crl.example: RuntimeError: boom",
    )


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown revocation mode"):
        RevocationChecker.decide(RevocationStatus("good", ""), "strict", "the certificate")


def test_times_are_utc(ca: Issued) -> None:
    index = CrlIndex.from_der(make_crl(ca, [(9, REVOKED_AT)]), ca.der)
    hit = index.lookup(9)
    assert hit is not None
    assert hit.revoked_at.tzinfo is UTC
    assert isinstance(hit.revoked_at, datetime)
