"""Client certificates forwarded by a TLS-terminating proxy (``pki.mtls``), from the
attacker's side: a header from anywhere but a listed proxy, with no proxy trusted, forged
through ``X-Forwarded-For``, or holding garbage is refused with a reason; and end to end
through a real mutual-TLS terminator (``tests/pki/tls_proxy.py``) to a Flask app."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask, Response, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client

from config.settings import Settings, SettingsError, build_settings, load_settings
from idp.core.web import trust_proxies
from pki.mtls import (
    MAX_HEADER_CHARS,
    ForwardedCertificateRefused,
    ProxyNetwork,
    decode_forwarded_certificate,
    forwarded_certificate,
    proxy_networks,
)
from tests.pki.certs import Issued, make_ca, make_leaf
from tests.pki.tls_proxy import TlsTerminator, serve_wsgi

HEADER = "X-SSL-Client-Cert"
KEY = "HTTP_X_SSL_CLIENT_CERT"
PROXY = "10.0.0.5"
PROXIES = proxy_networks([PROXY, "192.168.10.0/24"])


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("mTLS Test CA")


@pytest.fixture(scope="module")
def leaf(ca: Issued) -> Issued:
    return make_leaf(ca, "Zhang San")


def nginx_escaped(issued: Issued) -> str:
    """$ssl_client_escaped_cert"""
    return quote(issued.pem.decode(), safe="")


def environ(value: str | None, *, peer: str | None = PROXY, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {} if peer is None else {"REMOTE_ADDR": peer}
    if value is not None:
        result[KEY] = value
    return result | extra


def forwarded(
    env: dict[str, Any], *, count: int = 1, proxies: Iterable[ProxyNetwork] = PROXIES
) -> bytes | None:
    return forwarded_certificate(
        env, header=HEADER, proxies=tuple(proxies), trusted_proxy_count=count
    )


def refusal(env: dict[str, Any], **kwargs: Any) -> ForwardedCertificateRefused:
    with pytest.raises(ForwardedCertificateRefused) as caught:
        forwarded(env, **kwargs)
    return caught.value


# -- the forms proxies send -------------------------------------------------------------


def test_no_header_is_no_certificate() -> None:
    assert forwarded(environ(None)) is None
    assert forwarded(environ(None, peer="203.0.113.9"), count=0) is None


def test_nginx_escaped_pem_from_the_proxy(leaf: Issued) -> None:
    assert forwarded(environ(nginx_escaped(leaf))) == leaf.der


@pytest.mark.parametrize("separator", [" ", "\t", "  \t "])
def test_pem_with_folded_newlines(leaf: Issued, separator: str) -> None:
    folded = separator.join(leaf.pem.decode().strip().splitlines())
    assert forwarded(environ(folded)) == leaf.der


def test_pem_with_its_labels_folded_too(leaf: Issued) -> None:
    body = "".join(leaf.pem.decode().strip().splitlines()[1:-1])
    value = f"-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----"
    assert forwarded(environ(value)) == leaf.der


def test_base64_der(leaf: Issued) -> None:
    assert forwarded(environ(base64.b64encode(leaf.der).decode())) == leaf.der


def test_url_encoded_base64_der(leaf: Issued) -> None:
    value = quote(base64.b64encode(leaf.der).decode(), safe="")
    assert forwarded(environ(value)) == leaf.der


@pytest.mark.parametrize("value", ["", "   ", "(null)"])
def test_the_proxy_saying_there_is_no_certificate(value: str) -> None:
    assert forwarded(environ(value)) is None


def test_a_proxy_in_a_listed_network(leaf: Issued) -> None:
    assert forwarded(environ(nginx_escaped(leaf), peer="192.168.10.77")) == leaf.der


def test_an_ipv4_mapped_ipv6_peer(leaf: Issued) -> None:
    assert forwarded(environ(nginx_escaped(leaf), peer=f"::ffff:{PROXY}")) == leaf.der


def test_an_ipv6_proxy(leaf: Issued) -> None:
    value = nginx_escaped(leaf)
    proxies = proxy_networks(["fd00::/64"])
    assert forwarded(environ(value, peer="fd00::7"), proxies=proxies) == leaf.der
    assert refusal(environ(value, peer="fd01::7"), proxies=proxies).peer == "fd01::7"


# -- who may send the header ------------------------------------------------------------


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.0.0.6", "192.168.11.1", "::1"])
def test_header_from_an_unlisted_address_is_refused(leaf: Issued, peer: str) -> None:
    refused = refusal(environ(nginx_escaped(leaf), peer=peer))
    assert "IDP_CLIENT_CERT_PROXIES" in refused.reason
    assert refused.peer == peer


@pytest.mark.parametrize("value", ["", "(null)", "garbage"])
def test_even_an_empty_header_from_an_unlisted_address_is_refused(value: str) -> None:
    assert "IDP_CLIENT_CERT_PROXIES" in refusal(environ(value, peer="203.0.113.9")).reason


@pytest.mark.parametrize("peer", [None, "", "unix:/run/idp.sock", "not an address"])
def test_header_without_a_peer_address_is_refused(leaf: Issued, peer: str | None) -> None:
    assert "IDP_CLIENT_CERT_PROXIES" in refusal(environ(nginx_escaped(leaf), peer=peer)).reason


def test_no_listed_proxies_means_the_header_is_never_believed(leaf: Issued) -> None:
    assert "IDP_CLIENT_CERT_PROXIES" in refusal(environ(nginx_escaped(leaf)), proxies=()).reason


def test_header_from_a_listed_address_with_no_trusted_proxy_is_refused(leaf: Issued) -> None:
    refused = refusal(environ(nginx_escaped(leaf)), count=0)
    assert "IDP_TRUSTED_PROXY_COUNT is 0" in refused.reason


def _proxy_fixed(remote_addr: str, headers: dict[str, str]) -> dict[str, Any]:
    """The environ a view sees behind Werkzeug's ProxyFix (one trusted proxy)."""
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        start_response("204 No Content", [])
        return []

    Client(ProxyFix(app, x_for=1, x_proto=1)).get(
        "/", headers=headers, environ_base={"REMOTE_ADDR": remote_addr}
    )
    return seen


def test_behind_proxy_fix_the_original_peer_is_checked(leaf: Issued) -> None:
    env = _proxy_fixed(PROXY, {HEADER: nginx_escaped(leaf), "X-Forwarded-For": "198.51.100.7"})
    assert env["REMOTE_ADDR"] == "198.51.100.7"  # ProxyFix took the client's address
    assert forwarded(env) == leaf.der


def test_a_forged_x_forwarded_for_does_not_make_a_client_a_proxy(leaf: Issued) -> None:
    env = _proxy_fixed("203.0.113.9", {HEADER: nginx_escaped(leaf), "X-Forwarded-For": PROXY})
    assert env["REMOTE_ADDR"] == PROXY  # what ProxyFix believed
    refused = refusal(env)
    assert refused.peer == "203.0.113.9"


# -- what the header holds --------------------------------------------------------------


GARBAGE = [
    "hello",
    "%ZZ%",
    "%FF%FE%00",
    "-----BEGIN CERTIFICATE----- AAAA -----END CERTIFICATE-----",
    "-----BEGIN CERTIFICATE----- MIIB",
    "-----BEGIN PRIVATE KEY----- AAAA -----END PRIVATE KEY-----",
    base64.b64encode(b"\x30\x82\x01\x00" + b"\x00" * 10).decode(),  # truncated DER
    base64.b64encode(b"\x04\x03abc").decode(),
    "MIIB====",
    "Zhang San ☃",
    "subject=CN = Zhang San -----BEGIN CERTIFICATE----- AAAA -----END CERTIFICATE-----",
    quote("-----BEGIN CERTIFICATE-----\n☃\n-----END CERTIFICATE-----\n"),
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_is_refused_with_a_reason(value: str) -> None:
    refused = refusal(environ(value))
    assert refused.reason.startswith(f"{HEADER}: ")
    assert len(refused.reason) < 300
    assert "\n" not in refused.reason


def test_the_reason_does_not_repeat_the_header(leaf: Issued) -> None:
    refused = refusal(environ("secret-looking-value-1234"))
    assert "secret-looking" not in refused.reason


def test_text_around_the_certificate_is_refused(leaf: Issued) -> None:
    value = quote("subject=CN = Zhang San\n" + leaf.pem.decode(), safe="")
    assert "text before or after" in refusal(environ(value)).reason


def test_a_truncated_certificate_is_refused(leaf: Issued) -> None:
    value = base64.b64encode(leaf.der[:-20]).decode()
    assert "not a valid X.509 certificate" in refusal(environ(value)).reason


def test_a_certificate_with_trailing_data_is_refused(leaf: Issued) -> None:
    value = base64.b64encode(leaf.der + b"\x00\x00").decode()
    assert "not a valid X.509 certificate" in refusal(environ(value)).reason


def test_two_certificates_are_refused(ca: Issued, leaf: Issued) -> None:
    value = quote((leaf.pem + ca.pem).decode(), safe="")
    assert "2 certificates: expected exactly one" in refusal(environ(value)).reason
    two_der = base64.b64encode(leaf.der + ca.der).decode()
    assert "not a valid X.509 certificate" in refusal(environ(two_der)).reason


def test_a_certificate_and_its_key_are_refused(leaf: Issued) -> None:
    value = quote((leaf.pem + leaf.key_pem).decode(), safe="")
    assert "2 PEM blocks: expected one certificate" in refusal(environ(value)).reason
    # a key alone is not a certificate
    assert "0 certificates" in refusal(environ(quote(leaf.key_pem.decode(), safe=""))).reason


def test_a_huge_header_is_refused_before_decoding(leaf: Issued) -> None:
    huge = nginx_escaped(leaf) * (1 + MAX_HEADER_CHARS // len(nginx_escaped(leaf)))
    started = time.perf_counter()
    assert "too large" in refusal(environ(huge)).reason
    assert "too large" in refusal(environ("A" * 10_000_000)).reason
    assert time.perf_counter() - started < 1.0


def test_many_pem_blocks_are_refused_in_bounded_time() -> None:
    value = "-----BEGIN CERTIFICATE----- " * (MAX_HEADER_CHARS // 30)
    started = time.perf_counter()
    assert "PEM blocks" in refusal(environ(value)).reason
    assert time.perf_counter() - started < 1.0


def test_decoding_on_its_own(leaf: Issued) -> None:
    assert decode_forwarded_certificate(nginx_escaped(leaf)) == leaf.der
    with pytest.raises(ForwardedCertificateRefused, match="neither a PEM certificate"):
        decode_forwarded_certificate("not base64!")


# -- the settings -----------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    settings = load_settings(
        {
            "IDP_CLIENT_CERT_PROXIES": " 10.0.0.5, 192.168.10.0/24 ,fd00::/64,",
            "IDP_TRUSTED_PROXY_COUNT": "1",
            "IDP_CLIENT_CERT_HEADER": "Ssl-Client-Cert",
        }
    )
    assert settings.client_cert_proxies == ("10.0.0.5/32", "192.168.10.0/24", "fd00::/64")
    assert settings.client_cert_header == "Ssl-Client-Cert"
    assert [str(n) for n in proxy_networks(settings.client_cert_proxies)] == [
        "10.0.0.5/32",
        "192.168.10.0/24",
        "fd00::/64",
    ]


def test_the_defaults_never_believe_the_header() -> None:
    settings = Settings()
    assert settings.client_cert_header == "X-SSL-Client-Cert"
    assert settings.client_cert_proxies == ()


@pytest.mark.parametrize(
    ("proxies", "message"),
    [
        ("nginx.internal", "'nginx.internal' is not an IP address or a CIDR network"),
        ("10.0.0.1/8", "has host bits set (did you mean 10.0.0.0/8?)"),
        ("10.0.0.0/33", "is not an IP address or a CIDR network"),
    ],
)
def test_a_bad_proxy_stops_start_up_naming_the_setting(proxies: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"IDP_CLIENT_CERT_PROXIES": proxies, "IDP_TRUSTED_PROXY_COUNT": "1"})
    assert "IDP_CLIENT_CERT_PROXIES" in str(caught.value)
    assert message in str(caught.value)


def test_proxies_without_a_trusted_proxy_count_stop_start_up() -> None:
    with pytest.raises(SettingsError, match=r"IDP_CLIENT_CERT_PROXIES.*trusted_proxy_count"):
        build_settings({"client_cert_proxies": ["10.0.0.5"]})


@pytest.mark.parametrize("header", ["X_SSL_Client_Cert", "X-SSL Client", "", "-X", "X--Y"])
def test_a_bad_header_name_stops_start_up(header: str) -> None:
    with pytest.raises(SettingsError, match="IDP_CLIENT_CERT_HEADER"):
        build_settings({"client_cert_header": header})


def test_a_bad_proxy_string_given_directly() -> None:
    with pytest.raises(ValueError, match="client_cert_proxies: 'x' is not an IP address"):
        proxy_networks(["10.0.0.5", "x"])


# -- end to end through a mutual-TLS terminator -----------------------------------------

LISTED_PROXY = "127.0.0.2"  # the terminator's address as the service sees it


def echo_app(settings: Settings) -> Flask:
    """What the sign-in view will stand on: forwarded_certificate with the settings."""
    app = Flask(__name__)
    proxies = proxy_networks(settings.client_cert_proxies)

    @app.get("/whoami")
    def whoami() -> tuple[Response, int]:
        try:
            der = forwarded_certificate(
                request.environ,
                header=settings.client_cert_header,
                proxies=proxies,
                trusted_proxy_count=settings.trusted_proxy_count,
            )
        except ForwardedCertificateRefused as exc:
            return jsonify(refused=exc.reason, peer=exc.peer), 403
        return jsonify(
            certificate=None if der is None else base64.b64encode(der).decode(),
            client=request.remote_addr,
            scheme=request.scheme,
        ), 200

    trust_proxies(app, settings.trusted_proxy_count)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    settings = Settings(trusted_proxy_count=1, client_cert_proxies=(LISTED_PROXY,))
    with serve_wsgi(echo_app(settings)) as server:
        yield server.url


@pytest.fixture
def terminator(upstream: str, ca: Issued, tmp_path: Path) -> Iterator[TlsTerminator]:
    with TlsTerminator(
        upstream, client_ca_pem=ca.pem, directory=tmp_path, source_address=LISTED_PROXY
    ) as proxy:
        yield proxy


def test_a_client_certificate_reaches_the_app(terminator: TlsTerminator, leaf: Issued) -> None:
    answer = terminator.request("/whoami", client=leaf)
    assert answer.status == 200, answer.body
    body = json.loads(answer.body)
    assert base64.b64decode(body["certificate"]) == leaf.der
    assert body["client"] == "127.0.0.1"  # from X-Forwarded-For, not the proxy's address
    assert body["scheme"] == "https"


def test_a_certificate_under_an_intermediate(
    terminator: TlsTerminator, ca: Issued, tmp_path: Path
) -> None:
    intermediate = make_ca("mTLS Test Issuing CA", ca)
    person = make_leaf(intermediate, "Li Si")
    answer = terminator.request("/whoami", client=person, chain=[intermediate])
    assert answer.status == 200, answer.body
    assert base64.b64decode(json.loads(answer.body)["certificate"]) == person.der


def test_without_a_client_certificate_the_handshake_fails(terminator: TlsTerminator) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        terminator.request("/whoami")
    assert terminator.forwarded == []


def test_a_certificate_from_another_ca_fails_the_handshake(terminator: TlsTerminator) -> None:
    stranger = make_leaf(make_ca("Unknown CA"), "Wang Wu")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        terminator.request("/whoami", client=stranger)
    assert terminator.forwarded == []


def test_a_client_cannot_inject_the_header_through_the_proxy(
    terminator: TlsTerminator, ca: Issued, leaf: Issued
) -> None:
    victim = make_leaf(ca, "Victim")
    forged = {
        HEADER: nginx_escaped(victim),
        "X_SSL_Client_Cert": nginx_escaped(victim),
        "X-Forwarded-For": LISTED_PROXY,
    }
    answer = terminator.request("/whoami", client=leaf, headers=forged)
    assert answer.status == 200, answer.body
    assert base64.b64decode(json.loads(answer.body)["certificate"]) == leaf.der
    sent = terminator.forwarded[-1]
    assert "X_SSL_Client_Cert" not in sent
    assert sent["X-Forwarded-For"] == f"{LISTED_PROXY}, 127.0.0.1"


def test_going_around_the_proxy_with_a_forged_header_is_refused(
    upstream: str, leaf: Issued
) -> None:
    """The attacker reaches the service directly (from 127.0.0.1, not the proxy's
    127.0.0.2) and claims in X-Forwarded-For to be the proxy."""
    port = urlsplit(upstream).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "GET", "/whoami", headers={HEADER: nginx_escaped(leaf), "X-Forwarded-For": LISTED_PROXY}
        )
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 403
    assert "IDP_CLIENT_CERT_PROXIES" in body["refused"]
    assert body["peer"] == "127.0.0.1"


def test_an_unlisted_proxy_is_not_believed(
    upstream: str, ca: Issued, leaf: Issued, tmp_path: Path
) -> None:
    with TlsTerminator(
        upstream, client_ca_pem=ca.pem, directory=tmp_path, source_address="127.0.0.3"
    ) as proxy:
        answer = proxy.request("/whoami", client=leaf)
    assert answer.status == 403
    assert json.loads(answer.body)["peer"] == "127.0.0.3"


def test_optional_verification_without_a_certificate(
    upstream: str, ca: Issued, tmp_path: Path
) -> None:
    with TlsTerminator(
        upstream,
        client_ca_pem=ca.pem,
        directory=tmp_path,
        source_address=LISTED_PROXY,
        verify_client="optional",
    ) as proxy:
        answer = proxy.request("/whoami")
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["certificate"] is None
    assert HEADER not in proxy.forwarded[-1]


def test_the_terminator_stops(upstream: str, ca: Issued, leaf: Issued, tmp_path: Path) -> None:
    with TlsTerminator(
        upstream, client_ca_pem=ca.pem, directory=tmp_path, source_address=LISTED_PROXY
    ) as proxy:
        assert proxy.request("/whoami", client=leaf).status == 200
    with pytest.raises(ConnectionRefusedError):
        proxy.request("/whoami", client=leaf)
