"""The client certificate of a mutual-TLS connection that a reverse proxy terminated
(issue 11 part 4, docs/deployment/nginx-mtls.md).

The proxy checks that the client holds the key of the certificate it presents and passes
the certificate on in a request header (``IDP_CLIENT_CERT_HEADER``). Anyone can send that
header, so it is believed only from the proxy itself: the service's immediate peer must be
one of ``IDP_CLIENT_CERT_PROXIES`` and ``IDP_TRUSTED_PROXY_COUNT`` must be at least one.
The immediate peer is the TCP peer of the WSGI server; Werkzeug's ``ProxyFix`` (applied
when proxies are trusted, ``idp.core.web.trust_proxies``) replaces ``REMOTE_ADDR`` with the
client's address from ``X-Forwarded-For`` and keeps the original in
``environ["werkzeug.proxy_fix.orig"]``, which is what is checked here. A header from any
other peer is refused rather than ignored: it is an attempt to forge a sign-in or a
misconfigured proxy, and either should be seen.

The value is what proxies actually send: nginx's ``$ssl_client_escaped_cert`` (the PEM,
URL-encoded), a PEM whose newlines became spaces or tabs (header values cannot hold
newlines; some proxies fold them), or the base64 of the DER certificate. It must hold
exactly one certificate, decoded by ``pki.validation.load_certificates``; the header is
bounded (``MAX_HEADER_CHARS``) before any decoding. What comes back is only the proof
that the client holds the key: the certificate is then validated through the bridge like
any other (``pki.validation``), never trusted because the proxy accepted it.

Nothing here imports Flask: the caller passes ``request.environ``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from pki.validation import BadInput, load_certificates

ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A URL-encoded PEM of a 4096-bit RSA certificate with a long chain of extensions is
# about 9,000 characters; nothing legitimate comes near this.
MAX_HEADER_CHARS = 32 * 1024
MAX_PEM_BLOCKS = 4  # looked at before the PEM is parsed (bounds the work on garbage)
# Apache's mod_ssl sends "(null)" for SSL_CLIENT_CERT when the client sent none.
_NO_CERTIFICATE = {"", "(null)"}
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----(.*?)-----END \1-----", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


class ForwardedCertificateRefused(Exception):
    """The request carries the client-certificate header but it cannot be believed or
    read. ``reason`` is one line for the log and the sign-in page (it never repeats the
    header's value); ``peer`` is the address the header came from, for the log."""

    def __init__(self, reason: str, *, peer: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.peer = peer


def proxy_networks(values: Iterable[str]) -> tuple[ProxyNetwork, ...]:
    """``IDP_CLIENT_CERT_PROXIES`` entries (``10.0.0.5``, ``10.0.0.0/24``, ``::1``) as
    networks; ``ValueError`` naming the first bad entry (the settings check the same
    way at start-up, so this fails only for values that bypassed them)."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip()))
        except ValueError:
            raise ValueError(
                f"client_cert_proxies: {value!r} is not an IP address or a CIDR network"
            ) from None
    return tuple(networks)


def environ_key(header: str) -> str:
    """The WSGI environ key of a request header (``X-SSL-Client-Cert`` ->
    ``HTTP_X_SSL_CLIENT_CERT``)."""
    return "HTTP_" + header.upper().replace("-", "_")


def forwarded_certificate(
    environ: Mapping[str, Any],
    *,
    header: str,
    proxies: Sequence[ProxyNetwork],
    trusted_proxy_count: int,
) -> bytes | None:
    """The DER client certificate the proxy forwarded in ``header``, or ``None`` when the
    request has no such header (or the proxy says the client sent no certificate).
    ``ForwardedCertificateRefused`` when the header is there but did not come from one
    of ``proxies``, when no proxy is trusted at all, or when it is not exactly one
    certificate."""
    value = environ.get(environ_key(header))
    if value is None:
        return None
    peer = _immediate_peer(environ)
    if trusted_proxy_count < 1:
        raise ForwardedCertificateRefused(
            f"a {header} header arrived, but no reverse proxy is trusted "
            "(IDP_TRUSTED_PROXY_COUNT is 0)",
            peer=peer,
        )
    if not _is_listed(peer, proxies):
        raise ForwardedCertificateRefused(
            f"the {header} header did not come from a proxy listed in IDP_CLIENT_CERT_PROXIES",
            peer=peer,
        )
    if not isinstance(value, str):
        raise ForwardedCertificateRefused(f"the {header} header is not text", peer=peer)
    if value.strip() in _NO_CERTIFICATE:
        return None
    try:
        return decode_forwarded_certificate(value)
    except ForwardedCertificateRefused as exc:
        raise ForwardedCertificateRefused(f"{header}: {exc.reason}", peer=peer) from None


def decode_forwarded_certificate(value: str) -> bytes:
    """One certificate as a proxy forwards it (URL-encoded PEM, PEM with its newlines
    folded into spaces or tabs, or base64 DER) -> its DER;
    ``ForwardedCertificateRefused`` for anything else."""
    if len(value) > MAX_HEADER_CHARS:
        raise ForwardedCertificateRefused(
            f"too large ({len(value)} characters, at most {MAX_HEADER_CHARS})"
        )
    if not value.isascii():
        raise ForwardedCertificateRefused("not ASCII: expected a URL-encoded PEM certificate")
    text = value.strip()
    if "%" in text:
        try:
            text = unquote(text, errors="strict").strip()
        except UnicodeDecodeError:
            raise ForwardedCertificateRefused("its URL encoding does not decode") from None
        if not text.isascii():
            raise ForwardedCertificateRefused("not ASCII once URL-decoded")
    der = _pem_certificate(text) if "-----BEGIN" in text else _base64_der(text)
    try:
        (certificate,) = load_certificates(der, limit=1)
    except BadInput as exc:
        raise ForwardedCertificateRefused(exc.reason) from None
    return certificate


def _pem_certificate(text: str) -> bytes:
    """The one certificate block rebuilt (whitespace inside the base64 removed,
    64-character lines), so that a folded PEM reads like the original."""
    count = text.count("-----BEGIN")
    if count > MAX_PEM_BLOCKS:
        raise ForwardedCertificateRefused(f"{count} PEM blocks: expected one certificate")
    blocks = list(_PEM_BLOCK.finditer(text))
    if len(blocks) != count:
        raise ForwardedCertificateRefused("a PEM block without its END line")
    certificates = sum(block.group(1) == "CERTIFICATE" for block in blocks)
    if certificates != 1:
        raise ForwardedCertificateRefused(
            f"{certificates} certificates: expected exactly one (the client's)"
        )
    if count != 1:  # a proxy sends the certificate alone (never a key, say)
        raise ForwardedCertificateRefused(f"{count} PEM blocks: expected one certificate")
    if blocks[0].start() != 0 or blocks[0].end() != len(text):
        raise ForwardedCertificateRefused("text before or after the PEM certificate")
    body = _WHITESPACE.sub("", blocks[0].group(2))
    lines = [body[start : start + 64] for start in range(0, len(body), 64)]
    return "\n".join(
        ["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----", ""]
    ).encode("ascii")


def _base64_der(text: str) -> bytes:
    try:
        der = base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise ForwardedCertificateRefused(
            "neither a PEM certificate (URL-encoded or not) nor base64 DER"
        ) from None
    if not der:
        raise ForwardedCertificateRefused("empty once decoded")
    return der


def _immediate_peer(environ: Mapping[str, Any]) -> str | None:
    original = environ.get("werkzeug.proxy_fix.orig")
    if isinstance(original, Mapping) and "REMOTE_ADDR" in original:
        peer = original["REMOTE_ADDR"]
    else:
        peer = environ.get("REMOTE_ADDR")
    return peer if isinstance(peer, str) else None


def _is_listed(peer: str | None, proxies: Sequence[ProxyNetwork]) -> bool:
    if not peer:
        return False  # a Unix socket or a server that does not say: not a listed address
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])  # no IPv6 zone index
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)  # ::ffff:10.0.0.5 on a dual-stack socket
    return any(candidate in network for candidate in candidates for network in proxies)
