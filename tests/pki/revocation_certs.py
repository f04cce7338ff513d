"""Test material for revocation: CRLs written directly in DER (a million entries in a
second, where ``cryptography``'s builder takes minutes), signed with the test CA's
key, and a small threaded HTTP server that serves CRLs and answers OCSP requests
(``cryptography``'s ``OCSPResponseBuilder``), and can be told to misbehave."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from tests.pki.certs import NOW, Issued, PrivateKey

# --- DER writing ------------------------------------------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def der_integer(value: int) -> bytes:
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(size, "big", signed=True))


def utc_time(moment: datetime) -> bytes:
    return tlv(0x17, moment.astimezone(UTC).strftime("%y%m%d%H%M%SZ").encode())


_SHA256_ECDSA = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040302")))
_SHA256_RSA = tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d01010b")) + b"\x05\x00")


def entry(serial: int, when: datetime, reason: int | None = None) -> bytes:
    body = der_integer(serial) + utc_time(when)
    if reason is not None:
        extension = tlv(
            0x30, tlv(0x06, bytes.fromhex("551d15")) + tlv(0x04, tlv(0x0A, bytes([reason])))
        )
        body += tlv(0x30, extension)
    return tlv(0x30, body)


def write_crl(
    issuer: Issued,
    entries: Iterable[bytes] | bytes = (),
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    number: int = 1,
    extensions: Sequence[bytes] = (),
    signer: PrivateKey | None = None,
) -> bytes:
    """A v2 CRL by ``issuer`` (signed with ``signer``, default the issuer's key) with
    the given DER ``entries`` (see ``entry``) and extra DER ``extensions``."""
    key = signer or issuer.key
    algorithm = _SHA256_RSA if isinstance(key, rsa.RSAPrivateKey) else _SHA256_ECDSA
    body = entries if isinstance(entries, bytes) else b"".join(entries)
    crl_number = tlv(0x30, tlv(0x06, bytes.fromhex("551d14")) + tlv(0x04, der_integer(number)))
    tbs = (
        der_integer(1)
        + algorithm
        + issuer.cert.subject.public_bytes()
        + utc_time(this_update or NOW - timedelta(days=1))
        + utc_time(next_update or NOW + timedelta(days=7))
        + (tlv(0x30, body) if body else b"")
        + tlv(0xA0, tlv(0x30, crl_number + b"".join(extensions)))
    )
    tbs = tlv(0x30, tbs)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, tbs + algorithm + tlv(0x03, b"\x00" + signature))


def many_entries(count: int, *, start: int = 1 << 120, when: datetime | None = None) -> bytes:
    """``count`` CRL entries with 16-octet serials ``start``, ``start + 7``, ... (the
    same revocation time and reason keyCompromise), as one DER blob."""
    moment = utc_time(when or NOW - timedelta(days=2))
    reason = bytes.fromhex("300c300a0603551d1504030a0101")
    parts = []
    for number in range(count):
        serial = (start + 7 * number).to_bytes(16, "big")
        body = b"\x02\x10" + serial + moment + reason
        parts.append(b"\x30" + bytes([len(body)]) + body)
    return b"".join(parts)


def extension(oid_hex: str, value: bytes, *, critical: bool = False) -> bytes:
    flag = tlv(0x01, b"\xff") if critical else b""
    return tlv(0x30, tlv(0x06, bytes.fromhex(oid_hex)) + flag + tlv(0x04, value))


# --- OCSP responder and HTTP server -----------------------------------------------------


def make_responder(
    issuer: Issued, *, ocsp_signing: bool = True, not_after: datetime | None = None
) -> Issued:
    """A delegated OCSP responder certificate issued by ``issuer`` (with the
    id-kp-OCSPSigning extended key usage unless ``ocsp_signing`` is False)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = (
        x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING
        if ocsp_signing
        else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "OCSP Responder")])
        )
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


Misbehaviour = str  # "other-cert", "other-nonce", "no-nonce", "bad-signature",
# "not-yet-valid", "stale", "no-next-update", "old-without-nonce", "garbage",
# "unauthorized", "huge"


@dataclass
class OcspResponder:
    """Answers OCSP requests for certificates of ``issuer`` with ``cryptography``'s
    builder: serials in ``revoked`` are revoked, serials in ``known`` good, others
    unknown. ``misbehave`` makes it answer wrongly in one way."""

    issuer: Issued
    known: set[int] = field(default_factory=set)
    revoked: dict[int, tuple[datetime, x509.ReasonFlags | None]] = field(default_factory=dict)
    signer: Issued | None = None
    misbehave: Misbehaviour | None = None
    validity: timedelta = timedelta(hours=4)

    def respond(self, body: bytes) -> bytes:
        if self.misbehave == "garbage":
            return b"\x30\x03garbage that is not OCSP"
        if self.misbehave == "huge":
            return b"\x30" * (1024 * 1024)
        if self.misbehave == "unauthorized":
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(serialization.Encoding.DER)
        request = ocsp.load_der_ocsp_request(body)
        serial = request.serial_number
        this_update = NOW - timedelta(minutes=1)
        next_update: datetime | None = this_update + self.validity
        if self.misbehave == "not-yet-valid":
            this_update = datetime.now(UTC) + timedelta(days=1)
            next_update = this_update + self.validity
        elif self.misbehave == "stale":
            this_update = NOW - timedelta(days=2)
            next_update = NOW - timedelta(days=1)
        elif self.misbehave == "no-next-update":
            next_update = None
        elif self.misbehave == "old-without-nonce":
            this_update = NOW - timedelta(hours=1)
            next_update = None
        answered = serial + 1 if self.misbehave == "other-cert" else serial
        if serial in self.revoked:
            status = ocsp.OCSPCertStatus.REVOKED
            revocation_time, revocation_reason = self.revoked[serial]
        else:
            status = (
                ocsp.OCSPCertStatus.GOOD if serial in self.known else ocsp.OCSPCertStatus.UNKNOWN
            )
            revocation_time, revocation_reason = None, None
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash,
            request.issuer_key_hash,
            answered,
            request.hash_algorithm,
            status,
            this_update,
            next_update,
            revocation_time,
            revocation_reason,
        )
        signer = self.signer or self.issuer
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if self.signer is not None:
            builder = builder.certificates([self.signer.cert])
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
        if self.misbehave == "other-nonce":
            nonce = b"\x01" * 16
        if nonce is not None and self.misbehave not in {"no-nonce", "old-without-nonce"}:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(signer.key, hashes.SHA256())
        der = response.public_bytes(serialization.Encoding.DER)
        if self.misbehave == "bad-signature":
            signature = response.signature
            der = der.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1]))
        return der


class RevocationServer:
    """A threaded HTTP server on a free port of 127.0.0.1: GET serves ``files``
    (path -> body; the bodies may be replaced while it runs), POST /ocsp goes to
    ``responder``. ``hits`` counts requests per path. Use as a context manager."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.responder: OcspResponder | None = None
        self.hits: Counter[str] = Counter()
        self.delay = 0.0
        self.trickle = 0.0  # seconds between the bytes of a GET's body
        self.omit_length = False  # no Content-Length: the body ends when the connection does
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if server.delay:
                    threading.Event().wait(server.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                if not server.omit_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # a client that stops reading
                    if server.trickle:
                        for index in range(len(body)):
                            self.wfile.write(body[index : index + 1])
                            self.wfile.flush()
                            threading.Event().wait(server.trickle)
                    else:
                        self.wfile.write(body)

            def do_POST(self) -> None:
                server.hits[self.path] += 1
                length = min(int(self.headers.get("Content-Length", "0")), 65536)
                body = self.rfile.read(length)
                if self.path != "/ocsp" or server.responder is None:
                    self.send_error(404)
                    return
                answer = server.responder.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                if not server.omit_length:
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RevocationServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port_url(path: str = "/ocsp") -> str:
    """A URL on 127.0.0.1 where nothing listens (a responder that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
