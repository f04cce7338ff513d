"""``idp pki demo`` and the demo CA services: three local CAs of different key types and
policies, registered and cross-certified; each CA's citizen and enterprise certificates
validate through the bridge for the platform policy, the revoked one is refused by its
CRL and answered "revoked" over real OCSP; the PKCS#12 files open with the printed
password only; a second run re-uses everything; ``idp demo`` serves the CA services."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from flask import Flask

from accounts import identifiers
from accounts.demo_people import DEMO_PERSON
from config import Settings
from idp.cli import _demo_pki, _start_demo_ca_services
from pki.challenge import sign_challenge, verify_challenge_signature
from pki.demo import make_demo_ca_server, prepare
from pki.identity import IdentityRule, extract_identity
from pki.services import DEFAULT_POLICY
from pki.validation import ValidationOptions, validate
from tests.pki.test_bridge import invoke, invoke_json
from tests.support import csrf_token

# the test settings' issuer is http://localhost: the CA services default to port 80 + 10
SERVICES = "http://localhost:90"
CAS = ("demo-rsa", "demo-ec", "demo-sm2")
SM2_CURVE = "1.2.156.10197.1.301"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo PKI for the module (RSA keys are slow to make); tests copy it."""
    directory = tmp_path_factory.mktemp("made") / "demo"
    prepare(directory, SERVICES)
    return directory


@pytest.fixture
def demo(app: Flask, settings: Settings, made: Path) -> dict[str, Any]:
    """``idp pki demo --json`` on a copy of the module's files, in the default place."""
    shutil.copytree(made, settings.data_dir / "pki" / "demo")
    report: dict[str, Any] = invoke_json(app, "demo")
    assert report["files"] == "reused"
    return report


def by_role(report: dict[str, Any], ca: str, role: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in report["certificates"] if c["ca"] == ca and c["role"] == role
    ]
    assert len(found) == 1
    return found[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_first_run_makes_and_registers_three_cas_and_a_second_run_reuses_them(
    app: Flask, settings: Settings
) -> None:
    started = time.monotonic()
    first = invoke_json(app, "demo")
    elapsed = time.monotonic() - started
    directory = settings.data_dir / "pki" / "demo"
    assert first["demo"] is True
    assert "DEMO PKI" in first["warning"]
    assert (first["files"], first["directory"], first["services_url"]) == (
        "created", str(directory), SERVICES,
    )  # fmt: skip
    assert first["bridge"]["created"] is True
    assert first["bridge"]["platform_policy"] == DEFAULT_POLICY
    assert [(ca["registration"], ca["cross_certificate"]) for ca in first["cas"]] == [
        ("imported", "issued")
    ] * 3
    assert elapsed < 30, elapsed  # a few seconds; generous for a shared test machine

    listed = invoke_json(app, "list")
    cas = {ca["name"]: ca for ca in listed["cas"]}
    assert set(cas) == set(CAS)
    assert all(ca["status"] == "cross_certified" for ca in cas.values())
    locals_ = {ca["policy_map"][0]["local"] for ca in cas.values()}
    assert len(locals_) == 3
    assert all(ca["policy_map"][0]["platform"] == DEFAULT_POLICY for ca in cas.values())
    assert [cas[name]["intermediates"] for name in CAS] == [1, 0, 0]
    assert len({ca["revocation"] for ca in cas.values()}) > 1
    assert cas["demo-rsa"]["ocsp_url"] == f"{SERVICES}/ocsp/demo-rsa"
    assert cas["demo-ec"]["ocsp_url"] == f"{SERVICES}/ocsp/demo-ec"
    assert cas["demo-sm2"]["ocsp_url"] is None  # cryptography cannot sign SM2: CRLs only
    assert cas["demo-sm2"]["crl_urls"] == [f"{SERVICES}/crl/demo-sm2.crl"]
    assert f"{SERVICES}/crl/demo-rsa.crl" in cas["demo-rsa"]["crl_urls"]

    roots = {name: x509.load_pem_x509_certificate(cas[name]["root_pem"].encode()) for name in CAS}
    rsa_key = roots["demo-rsa"].public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey)
    assert rsa_key.key_size == 2048
    ec_key = roots["demo-ec"].public_key()
    assert isinstance(ec_key, ec.EllipticCurvePublicKey)
    assert ec_key.curve.name == "secp256r1"
    sm2_info = asn1_keys.PublicKeyInfo.load(_spki(cas["demo-sm2"]["root_pem"]))
    assert sm2_info["algorithm"]["parameters"].chosen.dotted == SM2_CURVE

    private = [directory / "manifest.json"]
    private += [p for p in directory.rglob("*") if p.suffix in (".key", ".p12")]
    assert len(private) > 1 + 2 * 9
    assert all(mode(p) == 0o600 for p in private), [p for p in private if mode(p) != 0o600]
    crl_number = _crl_number(directory / "crl" / "demo-ec.crl")

    second = invoke_json(app, "demo")
    assert second["files"] == "reused"
    assert second["bridge"]["created"] is False
    assert second["pkcs12_password"] == first["pkcs12_password"]
    assert [(ca["registration"], ca["cross_certificate"]) for ca in second["cas"]] == [
        ("registered already", "live already")
    ] * 3
    again = {ca["name"]: ca for ca in invoke_json(app, "list")["cas"]}
    assert {n: c["cross_certificate_serial"] for n, c in again.items()} == {
        n: c["cross_certificate_serial"] for n, c in cas.items()
    }
    assert _crl_number(directory / "crl" / "demo-ec.crl") > crl_number  # re-signed

    text = invoke(app, "demo")
    assert text.exit_code == 0, text.output
    assert "DEMO PKI -- NOT FOR PRODUCTION" in text.output
    citizen = by_role(second, "demo-rsa", "citizen")
    assert (
        f"idp pki sign-challenge --key {citizen['key']} --cert {citizen['certificate']}"
        in text.output
    )
    assert "--challenge C" in text.output
    assert second["pkcs12_password"] in text.output


def _spki(pem: str) -> bytes:
    """The SubjectPublicKeyInfo of a certificate (asn1crypto: cryptography cannot load
    SM2 keys)."""
    der = asn1_pem.unarmor(pem.encode())[2]
    return bytes(asn1_x509.Certificate.load(der).public_key.dump())


def _crl_number(path: Path) -> int:
    crl = x509.load_der_x509_crl(path.read_bytes())
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def _files(tmp_path: Path, listed: dict[str, Any]) -> tuple[Path, dict[str, Path]]:
    bridge = tmp_path / "bridge.pem"
    bridge.write_text(listed["bridge"]["certificate_pem"])
    cross = {}
    for ca in listed["cas"]:
        cross[ca["name"]] = tmp_path / f"{ca['name']}-cross.pem"
        cross[ca["name"]].write_text(ca["cross_certificate_pem"])
    return bridge, cross


def test_each_certificate_validates_through_the_bridge_and_the_revoked_one_is_refused(
    app: Flask, demo: dict[str, Any], tmp_path: Path
) -> None:
    listed = invoke_json(app, "list")
    bridge, cross = _files(tmp_path, listed)
    directory = Path(demo["directory"])
    crls = [arg for crl in sorted((directory / "crl").glob("*.crl")) for arg in ("--crl", str(crl))]
    rules = {
        ca["name"]: [IdentityRule.parse(r) for r in ca["identity_rules"]] for ca in listed["cas"]
    }
    for ca in demo["cas"]:
        name = ca["name"]
        chain = ["--intermediate", str(cross[name])]
        for intermediate in ca["intermediates"]:
            chain += ["--intermediate", intermediate]
        base = ["--anchor", str(bridge), *chain, "--require-explicit-policy"]
        for role in ("citizen", "enterprise"):
            leaf = by_role(demo, name, role)["certificate"]
            result = invoke_json(app, "verify", leaf, *base, "--policy", DEFAULT_POLICY, *crls)
            assert result["valid"], (name, role, result)
            assert result["path"][-1] == listed["bridge"]["subject"]
            assert len(result["path"]) == 3 + len(ca["intermediates"])
            # for a platform policy the CA does not map to, the path is refused
            other = invoke(app, "verify", leaf, *base, "--policy", "2.25.1", "--json")
            assert other.exit_code == 1
            assert not json.loads(other.output)["valid"]
            identity = extract_identity(Path(leaf).read_bytes(), rules[name])
            kind = "person" if role == "citizen" else "organisation"
            assert identity.kind == kind
            assert identity.identifier_type == ("resident_id" if kind == "person" else "uscc")
            assert identifiers.check(identity.identifier)["valid"]
            assert identity.masked == by_role(demo, name, role)["identifier_masked"]
            if (name, role) == ("demo-rsa", "citizen"):
                assert identity.identifier == DEMO_PERSON[1]
        revoked = by_role(demo, name, "revoked")
        assert revoked["revoked"] is True
        refused = invoke(app, "verify", revoked["certificate"], *base, "--policy", DEFAULT_POLICY,
                         *crls, "--json")  # fmt: skip
        assert refused.exit_code == 1, refused.output
        reason = json.loads(refused.output)["reason"]
        assert "revoked" in reason
        assert "keyCompromise" in reason
        # without the CRL the same certificate validates: it is the CRL that refuses it
        unchecked = invoke_json(app, "verify", revoked["certificate"], *base, "--policy",
                                DEFAULT_POLICY)  # fmt: skip
        assert unchecked["valid"]


def test_the_pkcs12_files_open_with_the_printed_password_only(demo: dict[str, Any]) -> None:
    password = demo["pkcs12_password"].encode()
    for certificate in demo["certificates"]:
        data = Path(certificate["pkcs12"]).read_bytes()
        leaf = x509.load_pem_x509_certificate(Path(certificate["certificate"]).read_bytes())
        if certificate["ca"] == "demo-sm2":  # cryptography cannot load SM2 keys: OpenSSL
            assert _openssl_pkcs12(certificate["pkcs12"], demo["pkcs12_password"]) == 0
            assert _openssl_pkcs12(certificate["pkcs12"], "wrong") != 0
            continue
        key, cert, chain = pkcs12.load_key_and_certificates(data, password)
        assert cert == leaf
        assert key is not None
        assert key.public_key() == leaf.public_key()
        assert chain  # the issuing CA (and root) for the USB-key import tools
        with pytest.raises(ValueError):  # noqa: PT011 - cryptography's "invalid password"
            pkcs12.load_key_and_certificates(data, b"wrong")


def _openssl_pkcs12(path: str, password: str) -> int:
    return subprocess.run(
        ["openssl", "pkcs12", "-in", path, "-nokeys", "-passin", f"pass:{password}"],
        capture_output=True, check=False, timeout=30,
    ).returncode  # fmt: skip


@pytest.fixture(scope="module")
def services(made: Path) -> Iterator[str]:
    """The demo CA services on a free port, over real HTTP."""
    server = make_demo_ca_server(made, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _manifest(made: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((made / "manifest.json").read_text())
    return manifest


def _certificate(made: Path, ca: str, stem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((made / ca / f"{stem}.pem").read_bytes())


def _request(leaf: x509.Certificate, issuer: x509.Certificate, nonce: bytes) -> bytes:
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, hashes.SHA256())
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


def _post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(  # noqa: S310 - a local http:// test server
        url, data=body, headers={"Content-Type": "application/ocsp-request"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, response.headers["Content-Type"], response.read()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize(("ca", "issuer"), [("demo-rsa", "issuing-ca"), ("demo-ec", "root")])
def test_ocsp_over_http_answers_good_and_revoked_with_the_nonce_echoed(
    made: Path, services: str, ca: str, issuer: str
) -> None:
    issuer_cert = _certificate(made, ca, issuer)
    root = _certificate(made, ca, "root")
    for role, expected in (("citizen", ocsp.OCSPCertStatus.GOOD),
                           ("revoked", ocsp.OCSPCertStatus.REVOKED)):  # fmt: skip
        leaf = _certificate(made, ca, role)
        nonce = role.encode() + b"-nonce-0123456789"
        status, content_type, body = _post(
            f"{services}/ocsp/{ca}", _request(leaf, issuer_cert, nonce)
        )
        assert (status, content_type) == (200, "application/ocsp-response")
        response = ocsp.load_der_ocsp_response(body)
        assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.certificate_status is expected
        assert response.serial_number == leaf.serial_number
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
        if expected is ocsp.OCSPCertStatus.REVOKED:
            assert response.revocation_reason is x509.ReasonFlags.key_compromise
        if ca == "demo-rsa":  # a delegated responder certificate, issued by the issuing CA
            (signer,) = response.certificates
            signer.verify_directly_issued_by(issuer_cert)
            usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert ExtendedKeyUsageOID.OCSP_SIGNING in usage
        else:
            assert response.certificates == []
        # an independent check: pyhanko-certvalidator takes it as revocation evidence
        checked = validate(
            leaf.public_bytes(serialization.Encoding.DER),
            ValidationOptions(
                anchors=(root.public_bytes(serialization.Encoding.DER),),
                intermediates=(issuer_cert.public_bytes(serialization.Encoding.DER),),
                ocsps=(body,),
                revocation="soft",
            ),
        )
        assert checked.valid is (expected is ocsp.OCSPCertStatus.GOOD), checked.reason

    # RFC 6960 A.1: GET with the URL-encoded base64 request in the path
    leaf = _certificate(made, ca, "revoked")
    encoded = urllib.parse.quote(base64.b64encode(_request(leaf, issuer_cert, b"g" * 16)), safe="")
    status, body = _get(f"{services}/ocsp/{ca}/{encoded}")
    assert status == 200
    assert ocsp.load_der_ocsp_response(body).certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_the_ca_services_refuse_what_is_not_theirs(made: Path, services: str) -> None:
    ec_root = _certificate(made, "demo-ec", "root")
    ec_citizen = _certificate(made, "demo-ec", "citizen")
    # the RSA CA's responder is not authoritative for the ECDSA CA's certificates
    _, _, body = _post(f"{services}/ocsp/demo-rsa", _request(ec_citizen, ec_root, b"x" * 16))
    assert ocsp.load_der_ocsp_response(body).response_status is (
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    _, _, body = _post(f"{services}/ocsp/demo-ec", b"\x30\x03garbage")
    assert ocsp.load_der_ocsp_response(body).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    assert _get(f"{services}/ocsp/demo-sm2")[0] == 404  # SM2: CRLs only
    assert _get(f"{services}/ocsp/nobody")[0] == 404
    for name in ("demo-ec", "demo-rsa", "demo-rsa-root", "demo-sm2"):
        status, body = _get(f"{services}/crl/{name}.crl")
        assert status == 200
        assert body == (made / "crl" / f"{name}.crl").read_bytes()
    for path in ("/crl/nobody.crl", "/crl/..%2Fmanifest.json.crl", "/crl/../manifest.json",
                 "/manifest.json", "/demo-rsa/root.key"):  # fmt: skip
        assert _get(services + path)[0] == 404, path
    status, index = _get(services + "/")
    assert status == 200
    assert b"DEMO PKI" in index


def test_the_revoked_certificates_are_on_their_cas_crls(made: Path) -> None:
    manifest = _manifest(made)
    for ca in manifest["cas"]:
        issuer = _certificate(made, ca["name"], "issuing-ca" if ca["intermediates"] else "root")
        crl = x509.load_der_x509_crl((made / "crl" / f"{ca['name']}.crl").read_bytes())
        assert crl.issuer == issuer.subject
        if ca["key_type"] != "sm2":  # SM2 signatures are checked by `verify` above
            assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        revoked = _certificate(made, ca["name"], "revoked")
        entry = crl.get_revoked_certificate_by_serial_number(revoked.serial_number)
        assert entry is not None
        assert crl.get_revoked_certificate_by_serial_number(
            _certificate(made, ca["name"], "citizen").serial_number
        ) is None  # fmt: skip


def test_reruns_that_cannot_reuse_are_refused_with_a_reason(
    app: Flask, demo: dict[str, Any], tmp_path: Path
) -> None:
    before = invoke_json(app, "list")
    moved = invoke(app, "demo", "--services-url", "http://localhost:9999", "--json")
    assert moved.exit_code == 1
    assert "was made for CA services at http://localhost:90" in json.loads(moved.output)["error"]

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("not a demo PKI")
    refused = invoke(app, "demo", "--out", str(occupied))
    assert refused.exit_code == 1
    assert "holds no demo PKI" in refused.output
    assert "Traceback" not in refused.output

    for url in ("ftp://localhost:90", "http://localhost", "http://localhost:90/path", "x"):
        usage = invoke(app, "demo", "--services-url", url, "--json")
        assert usage.exit_code == 2, url
        assert "--services-url" in json.loads(usage.output)["error"]

    # another demo PKI (new roots) under the same CA names is not registered over the first
    other = invoke(app, "demo", "--out", str(tmp_path / "other"), "--json")
    assert other.exit_code == 1
    assert "registered already with another root" in json.loads(other.output)["error"]
    assert invoke_json(app, "list") == before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.multiprocess
def test_idp_demo_serves_the_demo_ca_services_in_a_process(app: Flask, settings: Settings) -> None:
    port = free_port()
    with app.app_context():
        report = _demo_pki(settings, f"http://127.0.0.1:{port}")
    assert report is not None
    process = _start_demo_ca_services(report, "127.0.0.1")
    assert process is not None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/crl/demo-sm2.crl")
                break
            except urllib.error.URLError:
                assert process.is_alive()
                assert time.monotonic() < deadline, "the demo CA services did not start"
                time.sleep(0.2)
        assert status == 200
        assert body == (Path(report["directory"]) / "crl" / "demo-sm2.crl").read_bytes()
        # a second demo cannot take the same port: it says so instead of failing later
        assert _start_demo_ca_services(report, "127.0.0.1") is None
    finally:
        process.terminate()
        process.join(timeout=10)
    assert not process.is_alive()


def test_every_demo_key_signs_a_sign_in_challenge_for_its_certificate(made: Path) -> None:
    """What the printed ``idp pki sign-challenge`` command does, for every demo key (RSA,
    ECDSA and SM2), and a key of another certificate is not accepted."""
    challenge = "idp-login:" + "A" * 43
    manifest = _manifest(made)
    pairs = [(c["key"], c["certificate"]) for ca in manifest["cas"] for c in ca["certificates"]]
    for key, certificate in pairs:
        fields = sign_challenge(
            (made / key).read_bytes(), (made / certificate).read_bytes(), challenge
        )
        assert fields["challenge"] == challenge
        verify_challenge_signature(fields["certificate"].encode(), challenge, fields["signature"])
    key, _ = pairs[0]
    _, other = pairs[1]
    with pytest.raises(ValueError, match="does not belong"):
        sign_challenge((made / key).read_bytes(), (made / other).read_bytes(), challenge)


@pytest.mark.parametrize("ca", ["demo-rsa", "demo-sm2"])
def test_a_demo_citizen_certificate_signs_in_through_the_certificate_page(
    app: Flask, demo: dict[str, Any], ca: str
) -> None:
    """What ``idp demo`` prints a person to do: the challenge of /login/certificate,
    signed with the demo key files, takes them to the first-use page (the identity
    matches no account yet); the RSA citizen is the demo registry's person."""
    citizen = by_role(demo, ca, "citizen")
    client = app.test_client()
    page = client.get("/login/certificate").get_data(as_text=True)
    match = re.search(r'name="challenge" type="hidden" value="([^"]+)"', page)
    assert match, page
    fields = sign_challenge(
        Path(citizen["key"]).read_bytes(), Path(citizen["certificate"]).read_bytes(), match[1]
    )
    answer = client.post(
        "/login/certificate",
        data={
            "csrf_token": csrf_token(page),
            "challenge": match[1],
            "certificate": fields["certificate"],
            "signature": fields["signature"],
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"].startswith("/login/certificate/new")
    first_use = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert ca in first_use
    assert citizen["identifier_masked"] in first_use
