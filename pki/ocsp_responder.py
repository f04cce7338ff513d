"""A small, real OCSP responder (RFC 6960) for the demo PKI and for tests.

The platform checks revocation with OCSP where a local CA runs a responder; the demo
(``idp pki demo``) needs one so that certificate sign-in can be shown end to end with
a revoked certificate, and the tests need one that speaks the real protocol over real
HTTP. It is not meant for production: it signs every answer on the fly and keeps no
pre-produced responses.

``OcspResponder`` answers for the certificates of one issuer. Its key signs the
responses: the issuer's own key, or a delegated responder certificate issued by the
issuer with id-kp-OCSPSigning (RFC 6960 4.2.2.2). ``status(serial)`` says whether a
serial is revoked; any other serial is answered "good" (the demo CAs keep no list of
what they issued, as a CRL-backed responder does not). A request about another
issuer's certificate is answered ``unauthorized`` (RFC 5019 2.2.3: this responder is
not authoritative for it), garbage with ``malformedRequest``; a nonce in the request
(RFC 8954: 1 to 32 octets) is echoed. ``answer`` picks among several responders (one
URL serving a CA's root and its intermediate).

The HTTP front (``handle_http``, and ``OcspApp`` for WSGI) takes POST with
``application/ocsp-request`` and GET with the base64 request in the path (RFC 6960
A.1). OCSP errors are still HTTP 200 with an OCSP response, as the RFC asks.

cryptography cannot sign with SM2 keys, so SM2 CAs get no responder: the SM2 demo CA
publishes CRLs only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import unquote

from asn1crypto import keys
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from idp.core.clock import Clock, SystemClock

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# serial -> (revoked at, RFC 5280 reason name such as "keyCompromise") or None (good)
StatusLookup = Callable[[int], tuple[datetime, str] | None]

MAX_REQUEST_BYTES: Final = 16 * 1024  # a single-certificate request is ~100 bytes
MAX_NONCE_BYTES: Final = 32  # RFC 8954
REQUEST_TYPE: Final = "application/ocsp-request"
RESPONSE_TYPE: Final = "application/ocsp-response"

_HASHES: Final[dict[str, Callable[[bytes], bytes]]] = {
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    "sha224": lambda data: hashlib.sha224(data).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "sha384": lambda data: hashlib.sha384(data).digest(),
    "sha512": lambda data: hashlib.sha512(data).digest(),
}
_REASONS: Final = {flag.value: flag for flag in x509.ReasonFlags} | {
    flag.name: flag for flag in x509.ReasonFlags
}


class ResponderConfigError(ValueError):
    """The responder's key or certificates do not fit together (a setup mistake)."""


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


MALFORMED: Final = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
UNAUTHORIZED: Final = _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
INTERNAL_ERROR: Final = _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)


class OcspResponder:
    """Signs OCSP responses about the certificates ``issuer_der`` issued."""

    def __init__(
        self,
        issuer_der: bytes,
        signer_key: SignerKey,
        signer_der: bytes | None = None,
        *,
        status: StatusLookup,
        validity: timedelta = timedelta(hours=1),
        clock: Clock | None = None,
    ) -> None:
        self.issuer = x509.load_der_x509_certificate(issuer_der)
        if not isinstance(signer_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ResponderConfigError("the signer key must be an RSA or EC private key")
        self._key = signer_key
        self._signer = self.issuer
        self._delegated = signer_der is not None
        if signer_der is not None:
            self._signer = x509.load_der_x509_certificate(signer_der)
            _check_delegated(self._signer, self.issuer)
        if _spki(self._signer.public_key()) != _spki(signer_key.public_key()):
            which = "delegated responder certificate" if self._delegated else "issuer"
            raise ResponderConfigError(f"the signer key is not the {which}'s key")
        if validity <= timedelta(0):
            raise ResponderConfigError("the responses' validity must be positive")
        self._status = status
        self._validity = validity
        self._clock = clock or SystemClock()
        name = self.issuer.subject.public_bytes()
        key = _key_bits(self.issuer)
        self._ids = {algorithm: (h(name), h(key)) for algorithm, h in _HASHES.items()}

    def is_for(self, request: ocsp.OCSPRequest) -> bool:
        """Whether the request's certID names this responder's issuer."""
        try:
            algorithm = request.hash_algorithm.name
        except UnsupportedAlgorithm:
            return False
        expected = self._ids.get(algorithm)
        return expected == (request.issuer_name_hash, request.issuer_key_hash)

    def respond(self, request_der: bytes) -> bytes:
        """The DER OCSP response to ``request_der`` (never raises for bad input)."""
        request = parse_request(request_der)
        if request is None:
            return MALFORMED
        return self.respond_to(request)

    def respond_to(self, request: ocsp.OCSPRequest) -> bytes:
        if not self.is_for(request):
            return UNAUTHORIZED
        try:
            nonce = _nonce(request)
        except _BadNonce:
            return MALFORMED
        try:
            found = self._status(request.serial_number)
            revoked_at, reason = (None, None) if found is None else found
            cert_status = ocsp.OCSPCertStatus.GOOD if found is None else ocsp.OCSPCertStatus.REVOKED
            now = self._clock.now().replace(microsecond=0)
            builder = (
                ocsp.OCSPResponseBuilder()
                .add_response_by_hash(
                    issuer_name_hash=request.issuer_name_hash,
                    issuer_key_hash=request.issuer_key_hash,
                    serial_number=request.serial_number,
                    algorithm=request.hash_algorithm,
                    cert_status=cert_status,
                    this_update=now,
                    next_update=now + self._validity,
                    revocation_time=revoked_at,
                    revocation_reason=None if reason is None else _reason(reason),
                )
                .responder_id(ocsp.OCSPResponderEncoding.HASH, self._signer)
            )
            if self._delegated:
                builder = builder.certificates([self._signer])
            if nonce is not None:
                builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
            response = builder.sign(self._key, hashes.SHA256())
        except (ValueError, TypeError, KeyError):
            # a status lookup that answers nonsense (or fails) is the responder's fault
            return INTERNAL_ERROR
        return response.public_bytes(serialization.Encoding.DER)


def parse_request(request_der: bytes) -> ocsp.OCSPRequest | None:
    """The request, or None when it is not one single-certificate OCSP request."""
    if not request_der or len(request_der) > MAX_REQUEST_BYTES:
        return None
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        request.serial_number  # noqa: B018 - decoded lazily: fail here, not later
        request.issuer_key_hash  # noqa: B018
    except (ValueError, UnsupportedAlgorithm):
        return None
    return request


def answer(responders: Sequence[OcspResponder], request_der: bytes) -> bytes:
    """The response of whichever responder is for the request's issuer;
    ``unauthorized`` when none is."""
    request = parse_request(request_der)
    if request is None:
        return MALFORMED
    for responder in responders:
        if responder.is_for(request):
            return responder.respond_to(request)
    return UNAUTHORIZED


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes


def handle_http(
    responders: Sequence[OcspResponder],
    method: str,
    tail: str,
    body: bytes,
    content_type: str | None,
) -> HttpAnswer:
    """One HTTP request to a responder's URL: POST with the DER request as the body,
    or GET with ``tail`` (the path after the responder's URL) holding the
    URL-encoded base64 request."""
    if method == "POST":
        if (content_type or "").split(";")[0].strip().lower() != REQUEST_TYPE:
            return HttpAnswer(415, "text/plain", f"send {REQUEST_TYPE}\n".encode())
        if len(body) > MAX_REQUEST_BYTES:
            return HttpAnswer(413, "text/plain", b"request too large\n")
        return HttpAnswer(200, RESPONSE_TYPE, answer(responders, body))
    if method == "GET":
        der = _from_path(tail)
        return HttpAnswer(200, RESPONSE_TYPE, MALFORMED if der is None else answer(responders, der))
    return HttpAnswer(405, "text/plain", b"OCSP takes GET or POST\n")


class OcspApp:
    """A WSGI application serving ``responders`` at its root (mount it under the
    responder's URL)."""

    def __init__(self, responders: Sequence[OcspResponder]) -> None:
        self.responders = tuple(responders)

    def __call__(
        self, environ: dict[str, object], start_response: Callable[..., object]
    ) -> Iterable[bytes]:
        result = handle_wsgi(self.responders, environ, str(environ.get("PATH_INFO") or ""))
        start_response(
            f"{result.status} {_PHRASES.get(result.status, 'Error')}",
            [("Content-Type", result.content_type), ("Content-Length", str(len(result.body)))],
        )
        return [result.body]


def handle_wsgi(
    responders: Sequence[OcspResponder], environ: dict[str, object], tail: str
) -> HttpAnswer:
    """``handle_http`` for a WSGI request; reads at most one request's worth of body."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    body = b""
    if method == "POST":
        try:
            length = int(str(environ.get("CONTENT_LENGTH") or "0"))
        except ValueError:
            return HttpAnswer(400, "text/plain", b"bad Content-Length\n")
        if length > MAX_REQUEST_BYTES:
            return HttpAnswer(413, "text/plain", b"request too large\n")
        stream = environ.get("wsgi.input")
        read = getattr(stream, "read", None)
        body = read(length) if read is not None and length > 0 else b""
    content_type = environ.get("CONTENT_TYPE")
    return handle_http(
        responders, method, tail, body, None if content_type is None else str(content_type)
    )


_PHRASES: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}


def _from_path(tail: str) -> bytes | None:
    """RFC 6960 A.1: GET {url}/{url-encoding of base64(DER request)}. Servers differ in
    whether PATH_INFO is already percent-decoded, so decode once more if needed;
    base64 never contains '%'."""
    text = unquote(tail.lstrip("/"))
    if not text or len(text) > MAX_REQUEST_BYTES * 2:
        return None
    try:
        return base64.b64decode(text.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        return None


class _BadNonce(Exception):
    pass


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    """The request's nonce (None without one); ``_BadNonce`` when it cannot be read or
    breaks RFC 8954's bound."""
    try:
        extension = request.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        raise _BadNonce from None
    nonce: bytes = extension.value.nonce
    if not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise _BadNonce
    return nonce


def _reason(name: str) -> x509.ReasonFlags:
    try:
        return _REASONS[name]
    except KeyError:
        raise ValueError(f"unknown revocation reason {name!r}") from None


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    der: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bytes (what issuerKeyHash hashes): the SPKI
    is SEQUENCE { AlgorithmIdentifier, BIT STRING }, and the key is its last element."""
    info = keys.PublicKeyInfo.load(_spki(certificate.public_key()))
    bits: bytes = info["public_key"].contents[1:]  # after the unused-bits octet
    return bits


def _check_delegated(signer: x509.Certificate, issuer: x509.Certificate) -> None:
    if signer.issuer != issuer.subject:
        raise ResponderConfigError("the delegated responder certificate is not the issuer's")
    try:
        signer.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        raise ResponderConfigError(
            "the delegated responder certificate's signature is not the issuer's"
        ) from None
    try:
        usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        raise ResponderConfigError(
            "the delegated responder certificate lacks id-kp-OCSPSigning (RFC 6960 4.2.2.2)"
        )


__all__ = [
    "MALFORMED",
    "UNAUTHORIZED",
    "HttpAnswer",
    "OcspApp",
    "OcspResponder",
    "ResponderConfigError",
    "SignerKey",
    "StatusLookup",
    "answer",
    "handle_http",
    "handle_wsgi",
    "parse_request",
]
