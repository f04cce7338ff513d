"""An in-process TLS terminator that does what docs/deployment/nginx-mtls.md has nginx do,
so tests can sign in with a client certificate over real mutual TLS.

``TlsTerminator`` listens on a free port with a TLS server context that asks for a client
certificate and verifies it against ``client_ca_pem`` (nginx's ``ssl_verify_client`` and
``ssl_client_certificate``), and forwards each HTTP request to ``upstream`` over plain
HTTP from ``source_address`` (the proxy's address as the service sees it; any 127.x
address works on Linux, so a test can tell the proxy from a client that goes to the
service directly). On the way it drops whatever the client sent in the certificate
header (and, as nginx does by default, every header with an underscore in its name),
then adds the client's certificate as nginx's ``$ssl_client_escaped_cert`` (the PEM,
URL-encoded), ``X-Forwarded-For`` (``$proxy_add_x_forwarded_for``) and
``X-Forwarded-Proto: https``. Without a client certificate (``verify_client="optional"``)
the header is not sent, as nginx leaves out a header whose value is empty.

``serve_wsgi`` runs a WSGI app (the Flask app) on Werkzeug's threaded server on another
free port, to be the upstream.

    with serve_wsgi(app) as upstream, TlsTerminator(
        upstream.url, client_ca_pem=ca.pem, directory=tmp_path, source_address="127.0.0.2"
    ) as proxy:
        answer = proxy.request("/login/certificate/tls", client=leaf)
        assert answer.status == 200

Both stop (and join their threads) when the ``with`` block ends.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit
from wsgiref.types import WSGIApplication

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from werkzeug.serving import BaseWSGIServer, make_server

from tests.pki.certs import NOW, Issued, make_ca, name, new_key

HANDSHAKE_TIMEOUT_SECONDS = 5.0
UPSTREAM_TIMEOUT_SECONDS = 30.0
MAX_BODY_BYTES = 1024 * 1024
# RFC 9110 7.6.1: hop-by-hop headers a proxy does not forward
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass(frozen=True)
class Answer:
    """What the client got back through the terminator."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, header: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == header.lower():
                return value
        return None


@dataclass
class TlsTerminator:
    upstream: str  # http://HOST:PORT of the service
    client_ca_pem: bytes  # the CAs client certificates must chain to (PEM, one or more)
    directory: Path  # where the terminator's own certificate and key files go
    header: str = "X-SSL-Client-Cert"
    source_address: str = "127.0.0.1"  # connect to the upstream from this address
    verify_client: Literal["required", "optional"] = "required"
    forwarded: list[dict[str, str]] = field(default_factory=list)  # headers sent upstream

    def __post_init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.server_ca = make_ca("TLS Terminator Test CA")
        self.server_ca_file = self.directory / "terminator-ca.pem"
        self.server_ca_file.write_bytes(self.server_ca.pem)
        self._client_ca_file = self.directory / "terminator-client-cas.pem"
        self._client_ca_file.write_bytes(self.client_ca_pem)

    # -- control

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsTerminator:
        leaf = _server_certificate(self.server_ca)
        cert_file = self.directory / "terminator.pem"
        key_file = self.directory / "terminator.key"
        cert_file.write_bytes(leaf.pem)
        key_file.write_bytes(leaf.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        context.load_verify_locations(self._client_ca_file)
        required = self.verify_client == "required"
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        server = _Server(("127.0.0.1", 0), _Handler)
        server.terminator = self
        # the handshake happens in the handler's thread (_Handler.setup), with a timeout
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> TlsTerminator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the client's side

    def client_context(
        self, client: Issued | None = None, *, chain: Sequence[Issued] = ()
    ) -> ssl.SSLContext:
        """A client context that trusts the terminator and presents ``client`` (sending
        ``chain``, its intermediates, after it)."""
        context = ssl.create_default_context(cafile=str(self.server_ca_file))
        if client is not None:
            number = len(list(self.directory.glob("client-*.pem")))
            cert_file = self.directory / f"client-{number}.pem"
            key_file = self.directory / f"client-{number}.key"
            cert_file.write_bytes(client.pem + b"".join(issued.pem for issued in chain))
            key_file.write_bytes(client.key_pem)
            key_file.chmod(0o600)
            context.load_cert_chain(cert_file, key_file)
        return context

    def request(
        self,
        path: str,
        *,
        client: Issued | None = None,
        chain: Sequence[Issued] = (),
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """One HTTPS request through the terminator, presenting ``client``'s certificate.
        A handshake the terminator refuses raises ``ssl.SSLError`` or
        ``ConnectionError`` (with TLS 1.3 the client learns it on the first read)."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1",
            self.port,
            context=self.client_context(client, chain=chain),
            timeout=UPSTREAM_TIMEOUT_SECONDS,
        )
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return Answer(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    # -- forwarding (called in the handler's thread)

    def forward(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        peer_ip: str,
        certificate_der: bytes | None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        replaced = {self.header.lower(), "x-forwarded-for", "x-forwarded-proto", "host"}
        # proxy_set_header replaces the client's value; ignore_invalid_headers (on by
        # default) drops names with an underscore
        sent = {
            key: value
            for key, value in headers
            if key.lower() not in _HOP_BY_HOP | replaced and "_" not in key
        }
        sent["Host"] = next((v for k, v in headers if k.lower() == "host"), "127.0.0.1")
        # $proxy_add_x_forwarded_for: what the client sent, then the client's address
        chain = [v for k, v in headers if k.lower() == "x-forwarded-for"]
        sent["X-Forwarded-For"] = ", ".join([*chain, peer_ip])
        sent["X-Forwarded-Proto"] = "https"
        sent["Connection"] = "close"
        if certificate_der is not None:
            # $ssl_client_escaped_cert: the PEM, URL-encoded
            sent[self.header] = quote(ssl.DER_cert_to_PEM_cert(certificate_der), safe="")
        if body:
            sent["Content-Length"] = str(len(body))
        with self._lock:
            self.forwarded.append(dict(sent))
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(
            target.hostname or "127.0.0.1",
            target.port or 80,
            timeout=UPSTREAM_TIMEOUT_SECONDS,
            source_address=(self.source_address, 0),
        )
        try:
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            answer = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
            return response.status, kept, answer
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    terminator: TlsTerminator
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client without an acceptable certificate, or one that gave up: as nginx, it
        is refused at the handshake and nothing reaches the upstream."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        assert isinstance(self.request, ssl.SSLSocket)
        self.request.do_handshake()
        self.request.settimeout(UPSTREAM_TIMEOUT_SECONDS)
        super().setup()

    def _forward(self) -> None:
        self.close_connection = True
        if self.headers.get("Transfer-Encoding"):
            self._answer(411, [], b"Content-Length required\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, [], b"Request entity too large\n")
            return
        body = self.rfile.read(length) if length else b""
        assert isinstance(self.request, ssl.SSLSocket)
        certificate = self.request.getpeercert(binary_form=True)
        peer_ip = str(ipaddress.ip_address(self.client_address[0]))
        try:
            status, headers, answer = self.server.terminator.forward(
                self.command, self.path, list(self.headers.items()), body, peer_ip, certificate
            )
        except OSError:
            self._answer(502, [], b"Bad gateway\n")
            return
        self._answer(status, headers, answer)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # the handler methods BaseHTTPRequestHandler looks up by the request's method
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def _server_certificate(ca: Issued) -> Issued:
    """The terminator's TLS server certificate for 127.0.0.1 and localhost."""
    key = new_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(certificate, key)


@dataclass(frozen=True)
class WsgiServer:
    server: BaseWSGIServer

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_wsgi(app: WSGIApplication, host: str = "127.0.0.1") -> Iterator[WsgiServer]:
    """``app`` on Werkzeug's threaded development server on a free port, stopped when
    the block ends."""
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WsgiServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
