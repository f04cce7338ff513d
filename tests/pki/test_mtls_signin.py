"""Certificate sign-in by mutual TLS: a real TLS terminator (in-process) verifies the
client certificate and forwards it in the configured header; the service trusts the
header only from the configured proxy address and validates the certificate through
the bridge itself."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.pki.certs import Issued
from tests.pki.test_certificate_signin import (
    create_account_for_pending,
    last_signin_amr,
    person,
    post_signed,
)
from tests.pki.tls_proxy import TlsTerminator, WsgiServer, serve_wsgi

PROXY = "127.0.0.2"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"trusted_proxy_count": 1, "client_cert_proxies": (f"{PROXY}/32",)}


@pytest.fixture
def served(app: Flask) -> Iterator[WsgiServer]:
    with serve_wsgi(app) as server:
        yield server


@pytest.fixture
def terminator(served: WsgiServer, city_ca: Issued, tmp_path: Path) -> Iterator[TlsTerminator]:
    with TlsTerminator(
        served.url, client_ca_pem=city_ca.pem, directory=tmp_path, source_address=PROXY
    ) as proxy:
        yield proxy


def test_a_bound_certificate_signs_in_through_the_proxy_with_amr_hwk(
    app: Flask,
    city_ca: Issued,
    terminator: TlsTerminator,
) -> None:
    cert = person(city_ca)
    client = app.test_client()
    post_signed(client, cert)
    create_account_for_pending(client)
    answer = terminator.request("/login/certificate/tls?next=/account", client=cert)
    assert answer.status == 302, answer.body
    assert (answer.header("Location") or "").endswith("/account")
    assert answer.header("Set-Cookie")  # the signed-in session
    assert last_signin_amr(app) == ["hwk"]


def test_a_new_certificate_through_the_proxy_is_offered_an_account(
    city_ca: Issued,
    terminator: TlsTerminator,
) -> None:
    answer = terminator.request("/login/certificate/tls", client=person(city_ca))
    assert answer.status == 302, answer.body
    assert "/login/certificate/new" in (answer.header("Location") or "")
    assert "idp_pki_pending=" in (answer.header("Set-Cookie") or "")


def test_the_header_from_an_untrusted_address_is_refused(
    app: Flask,
    city_ca: Issued,
    served: WsgiServer,
) -> None:
    """A client that reaches the service directly (not through the proxy) and sends
    the header itself signs nobody in, even with a certificate that is bound."""
    cert = person(city_ca)
    client = app.test_client()
    post_signed(client, cert)
    create_account_for_pending(client)
    forged = urllib.parse.quote(cert.pem.decode(), safe="")
    request = urllib.request.Request(  # noqa: S310 - a local test server
        served.url + "/login/certificate/tls", headers={"X-SSL-Client-Cert": forged}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - a local test server
    error = refused.value
    try:
        assert error.code == 403
        assert "此处不能使用该客户端证书" in error.read().decode()  # cannot be used here
    finally:
        error.close()
    assert last_signin_amr(app) == ["hwk", "sc"]  # only the challenge sign-in happened


def test_without_a_client_certificate_the_page_says_so(
    served: WsgiServer,
    city_ca: Issued,
    tmp_path: Path,
) -> None:
    with TlsTerminator(
        served.url,
        client_ca_pem=city_ca.pem,
        directory=tmp_path,
        source_address=PROXY,
        verify_client="optional",
    ) as proxy:
        answer = proxy.request("/login/certificate/tls")
    assert answer.status == 401
    assert "未提供客户端证书" in answer.body.decode()  # no client certificate
