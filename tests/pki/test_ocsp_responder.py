"""The OCSP responder (RFC 6960) from the client's and the attacker's side: answers
only for its issuer, echoes the nonce, refuses garbage, and is set up only with a key
and responder certificate that fit; its HTTP front (POST and the GET form of A.1)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from idp.core.clock import FrozenClock
from pki.ocsp_responder import (
    MAX_REQUEST_BYTES,
    OcspResponder,
    ResponderConfigError,
    answer,
    handle_http,
)
from tests.pki.certs import Issued, make_ca, make_leaf

DER = serialization.Encoding.DER
REVOKED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def request(
    leaf: Issued,
    issuer: Issued,
    *,
    nonce: bytes | None = b"n" * 16,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        leaf.cert,
        issuer.cert,
        algorithm or hashes.SHA1(),  # noqa: S303 - RFC 5019's certID hash, not a signature
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(DER)


def verify_response(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    assert algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))


def responder_certificate(issuer: Issued, *, eku: bool = True) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Responder")]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    ca = make_ca("Responder Test CA", key="rsa")
    good, revoked = make_leaf(ca, "Good"), make_leaf(ca, "Revoked")
    other_ca = make_ca("Another CA")
    return {
        "ca": ca,
        "good": good,
        "revoked": revoked,
        "other_ca": other_ca,
        "stranger": make_leaf(other_ca, "Stranger"),
        "status": {revoked.cert.serial_number: (REVOKED_AT, "keyCompromise")},
    }


def load(data: bytes) -> ocsp.OCSPResponse:
    return ocsp.load_der_ocsp_response(data)


def test_the_issuer_answers_good_and_revoked_signed_and_with_the_nonce(pki: dict[str, Any]) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))
    ca: Issued = pki["ca"]
    responder = OcspResponder(
        ca.der, ca.key, status=pki["status"].get, validity=timedelta(minutes=30), clock=clock
    )
    for algorithm in (hashes.SHA1(), hashes.SHA256()):  # noqa: S303 - certID hashes
        good = load(responder.respond(request(pki["good"], ca, algorithm=algorithm)))
        assert good.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert good.serial_number == pki["good"].cert.serial_number
        assert good.hash_algorithm.name == algorithm.name
        assert good.this_update_utc == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        assert good.next_update_utc == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
        assert (
            good.responder_key_hash
            == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()).digest
        )
        verify_response(good, ca.cert)
        nonce = good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        assert nonce == b"n" * 16

    revoked = load(responder.respond(request(pki["revoked"], ca, nonce=b"other-nonce")))
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_time_utc == REVOKED_AT
    assert revoked.revocation_reason is x509.ReasonFlags.key_compromise
    assert revoked.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"other-nonce"
    verify_response(revoked, ca.cert)

    without = load(responder.respond(request(pki["good"], ca, nonce=None)))
    assert without.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert len(without.extensions) == 0


def test_a_delegated_responder_signs_and_ships_its_certificate(pki: dict[str, Any]) -> None:
    ca: Issued = pki["ca"]
    delegate = responder_certificate(ca)
    responder = OcspResponder(ca.der, delegate.key, delegate.der, status=pki["status"].get)
    response = load(responder.respond(request(pki["revoked"], ca)))
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.certificates == [delegate.cert]
    verify_response(response, delegate.cert)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any failure: not the issuer's signature
        verify_response(response, ca.cert)


def test_it_is_not_set_up_with_a_key_or_certificate_that_does_not_fit(pki: dict[str, Any]) -> None:
    ca: Issued = pki["ca"]
    other: Issued = pki["other_ca"]
    status = pki["status"].get
    with pytest.raises(ResponderConfigError, match="not the issuer's key"):
        OcspResponder(ca.der, other.key, status=status)
    no_eku = responder_certificate(ca, eku=False)
    with pytest.raises(ResponderConfigError, match="OCSPSigning"):
        OcspResponder(ca.der, no_eku.key, no_eku.der, status=status)
    foreign = responder_certificate(other)
    with pytest.raises(ResponderConfigError, match="not the issuer's"):
        OcspResponder(ca.der, foreign.key, foreign.der, status=status)
    delegate = responder_certificate(ca)
    with pytest.raises(ResponderConfigError, match="delegated responder certificate's key"):
        OcspResponder(ca.der, ca.key, delegate.der, status=status)


def test_garbage_foreign_and_oversized_requests_get_ocsp_errors(pki: dict[str, Any]) -> None:
    ca: Issued = pki["ca"]
    responder = OcspResponder(ca.der, ca.key, status=pki["status"].get)
    malformed = ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    good = request(pki["good"], ca)
    for data in (b"", b"garbage", good[:-3], good + b"\x00", b"\x30" + b"\xff" * 40):
        assert load(responder.respond(data)).response_status is malformed
    assert load(responder.respond(b"\x30" * (MAX_REQUEST_BYTES + 1))).response_status is malformed
    # RFC 8954: a nonce is 1 to 32 octets
    assert load(responder.respond(request(pki["good"], ca, nonce=b"x" * 33))).response_status is (
        malformed
    )
    # another issuer's certificate: this responder is not authoritative for it
    stranger = request(pki["stranger"], pki["other_ca"])
    assert load(responder.respond(stranger)).response_status is (
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    # the right serial but claimed under another issuer is not answered either
    forged = request(pki["good"], pki["other_ca"])
    assert load(responder.respond(forged)).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_a_broken_status_lookup_is_an_internal_error_not_a_good_answer(
    pki: dict[str, Any],
) -> None:
    ca: Issued = pki["ca"]

    def broken(_serial: int) -> tuple[datetime, str] | None:
        return (REVOKED_AT, "no-such-reason")

    responder = OcspResponder(ca.der, ca.key, status=broken)
    response = load(responder.respond(request(pki["good"], ca)))
    assert response.response_status is ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_several_responders_share_a_url_each_for_its_issuer(pki: dict[str, Any]) -> None:
    ca: Issued = pki["ca"]
    other: Issued = pki["other_ca"]
    both = [
        OcspResponder(ca.der, ca.key, status=pki["status"].get),
        OcspResponder(other.der, other.key, status=lambda _serial: None),
    ]
    stranger = load(answer(both, request(pki["stranger"], other)))
    assert stranger.certificate_status is ocsp.OCSPCertStatus.GOOD
    verify_response(stranger, other.cert)
    revoked = load(answer(both, request(pki["revoked"], ca)))
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    third = make_ca("Third CA")
    assert load(answer(both, request(make_leaf(third), third))).response_status is (
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    )


def test_the_http_front_takes_post_and_the_get_form(pki: dict[str, Any]) -> None:
    ca: Issued = pki["ca"]
    responders = [OcspResponder(ca.der, ca.key, status=pki["status"].get)]
    der = request(pki["revoked"], ca)
    posted = handle_http(responders, "POST", "", der, "application/ocsp-request")
    assert (posted.status, posted.content_type) == (200, "application/ocsp-response")
    assert load(posted.body).certificate_status is ocsp.OCSPCertStatus.REVOKED

    text = base64.b64encode(der).decode()
    for tail in (quote(text, safe=""), text, "/" + quote(text, safe="")):
        got = handle_http(responders, "GET", tail, b"", None)
        assert got.status == 200
        assert load(got.body).certificate_status is ocsp.OCSPCertStatus.REVOKED

    bad_get = handle_http(responders, "GET", "not*base64", b"", None)
    assert load(bad_get.body).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert handle_http(responders, "GET", "", b"", None).status == 200
    assert handle_http(responders, "POST", "", der, "text/plain").status == 415
    too_big = b"\x30" * (MAX_REQUEST_BYTES + 1)
    assert handle_http(responders, "POST", "", too_big, "application/ocsp-request").status == 413
    assert handle_http(responders, "PUT", "", der, "application/ocsp-request").status == 405
