"""A real HTTP server that plays the registry, the face service and the SMS gateway.

It checks each request's signature the way docs/architecture.md says a real service
must (written here independently of ``accounts.remote``, so a mistake there shows),
holds registry records, and can be told to refuse a face, to answer slowly, to fail
the next requests with a status, or to answer with a raw body. It records every
request it received. With ``Pki`` it serves TLS and requires a client certificate.

    with RemoteServices(KEY) as remote:
        remote.people[number] = name
        HttpRegistry(client(remote.url + "/registry"))...
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAX_SKEW_SECONDS = 300
REGISTRY_PATH = "/registry/v1/match"
FACE_PATH = "/face/v1/compare"
SMS_PATH = "/sms/send"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the server answered (0: it did not get that far)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RemoteServices:
    key: bytes | None = None  # None: requests need no signature
    pki: Pki | None = None
    people: dict[str, str] = field(default_factory=dict)  # number -> name
    organisations: dict[str, str] = field(default_factory=dict)
    face_mismatch: bool = False
    slow_seconds: float = 0.0  # wait this long before answering...
    slow_count: int | None = None  # ...the next N requests (None: every request)
    raw_answer: bytes | None = None  # answer 200 with this body instead
    received: list[Received] = field(default_factory=list)
    sms: list[dict[str, str]] = field(default_factory=list)  # messages accepted

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._nonces: set[str] = set()
        self._sms_request_ids: set[str] = set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures = [status] * count

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        scheme = "https" if self.pki else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def paths(self) -> list[str]:
        return [r.path for r in self.received]

    def start(self) -> RemoteServices:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.services = self
        if self.pki is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
            context.load_verify_locations(self.pki.ca_cert)
            context.verify_mode = ssl.CERT_REQUIRED
            # the handshake happens in the handler's thread (see _Handler.setup)
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> RemoteServices:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- answering (called in the handler's thread)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        record = Received(path, headers, body)
        with self._lock:
            self.received.append(record)
        status, answer = self._answer(path, headers, body)
        record.status = status
        with self._lock:
            slow = self.slow_seconds > 0 and (self.slow_count is None or self.slow_count > 0)
            if slow and self.slow_count is not None:
                self.slow_count -= 1
        if slow:  # the work is done, the answer comes late (a retry may repeat it)
            self._stopping.wait(self.slow_seconds)
        return status, answer

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.key is not None and not self._signature_ok(path, headers, body):
            return 401, b'{"error": "bad signature"}'
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return failure, b'{"error": "told to fail"}'
        if self.raw_answer is not None:
            return 200, self.raw_answer
        try:
            return self._route(path, headers, json.loads(body))
        except (ValueError, KeyError, TypeError):
            return 400, b'{"error": "bad request"}'

    def _route(self, path: str, headers: dict[str, str], request: Any) -> tuple[int, bytes]:
        if path == REGISTRY_PATH:
            return 200, _json(self._registry(request))
        if path == FACE_PATH:
            image = base64.b64decode(request["image"], validate=True)
            matched = not self.face_mismatch and bool(image)
            return 200, _json(
                {"matched": matched, "score": 0.97 if matched else 0.08, "reference": "face-1"}
            )
        if path == SMS_PATH:
            request_id = headers.get("x-idp-request-id", "")
            with self._lock:
                if request_id not in self._sms_request_ids:  # a retry is no second message
                    self._sms_request_ids.add(request_id)
                    self.sms.append({"phone": request["phone"], "text": request["text"]})
            return 202, b""
        return 404, b'{"error": "no such path"}'

    def _registry(self, request: dict[str, Any]) -> dict[str, Any]:
        records = self.people if request["kind"] == "person" else self.organisations
        known = records.get(request["number"])
        reference = f"reg-{len(self.received)}"
        if known is None:
            return {"answer": "not_found", "reference": reference}
        return {
            "answer": "match" if known == request["name"] else "mismatch",
            "reference": reference,
        }

    def _signature_ok(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        assert self.key is not None
        timestamp = headers.get("x-idp-timestamp", "")
        nonce = headers.get("x-idp-nonce", "")
        request_id = headers.get("x-idp-request-id", "")
        given = headers.get("x-idp-signature", "")
        key_id = hashlib.sha256(b"idp-remote-key-id\x00" + self.key).hexdigest()[:16]
        if headers.get("x-idp-key-id") != key_id or not timestamp.isdigit() or not nonce:
            return False
        if abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
            return False
        text = "\n".join(
            (
                "IDP-HMAC-SHA256",
                "POST",
                path,
                timestamp,
                nonce,
                request_id,
                hashlib.sha256(body).hexdigest(),
            )
        )
        expected = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            return False
        with self._lock:
            if nonce in self._nonces:
                return False  # a replay
            self._nonces.add(nonce)
        return True


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


class _Server(ThreadingHTTPServer):
    services: RemoteServices
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) or had no certificate: nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer = self.server.services.answer(self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


# -- certificates for mutual TLS ---------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that signed neither


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("Test remote services CA")
    _, other_ca = _ca("Some other CA")
    server_key, server_cert = _leaf(
        ca_key,
        ca_cert,
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(
            [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
        ),
    )
    client_key, client_cert = _leaf(ca_key, ca_cert, "idp", ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "ca_cert": _pem_cert(ca_cert),
        "other_ca_cert": _pem_cert(other_ca),
        "server_cert": _pem_cert(server_cert),
        "server_key": _pem_key(server_key),
        "client_cert": _pem_cert(client_cert),
        "client_key": _pem_key(client_key),
    }
    paths = {}
    for name, pem in files.items():
        path = directory / f"{name}.pem"
        path.write_bytes(pem)
        paths[name] = path
    return Pki(**paths)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(common_name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
