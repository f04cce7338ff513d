"""The bridge CA's operator commands: created once, local CAs registered and
cross-certified with the profile strict validators expect, cross-certificates revoked
onto the bridge's CRL."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask

from pki.cli import pki_group
from pki.services import DEFAULT_POLICY
from tests.pki.certs import Issued, make_ca, make_leaf

PLATFORM = "2.25.1"
OTHER_PLATFORM = "2.25.2"
LOCAL = "1.2.156.1.1"


def invoke(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(pki_group, list(args), catch_exceptions=False)


def invoke_json(app: Flask, *args: str) -> Any:
    result = invoke(app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def write(path: Path, issued: Issued) -> Path:
    path.write_bytes(issued.pem)
    return path


@pytest.fixture
def root() -> Issued:
    return make_ca("Local Root A", key="rsa")


@pytest.fixture
def bridged(app: Flask, tmp_path: Path, root: Issued) -> Flask:
    invoke_json(app, "init-bridge", "--policy", PLATFORM, "--policy", OTHER_PLATFORM)
    root_file = write(tmp_path / "root.pem", root)
    invoke_json(
        app, "import-ca", "--name", "local-a", "--root", str(root_file),
        "--policy-map", f"{LOCAL}={PLATFORM}",
    )  # fmt: skip
    return app


def test_the_bridge_is_created_once_with_its_key_readable_by_the_owner_only(
    app: Flask, settings: Any
) -> None:
    bridge = invoke_json(app, "init-bridge", "--subject", "CN=Test Bridge,O=Hall,C=CN")
    assert bridge["subject"] == "CN=Test Bridge,O=Hall,C=CN"
    assert bridge["policies"] == [DEFAULT_POLICY]
    certificate = x509.load_pem_x509_certificate(bridge["certificate_pem"].encode())
    assert certificate.subject == certificate.issuer
    key_file = settings.data_dir / "pki" / "bridge-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    again = invoke(app, "init-bridge", "--json")
    assert again.exit_code == 1
    assert "exists already" in json.loads(again.output)["error"]
    listed = invoke_json(app, "list")
    assert listed["bridge"]["certificate_pem"] == bridge["certificate_pem"]


@pytest.mark.parametrize(
    ("subject", "policy"),
    [("not a dn", PLATFORM), ("CN=Bridge", "1.2.x"), ("CN=Bridge", "")],
)
def test_init_bridge_refuses_a_bad_subject_or_policy(app: Flask, subject: str, policy: str) -> None:
    result = invoke(app, "init-bridge", "--subject", subject, "--policy", policy)
    assert result.exit_code == 1
    assert invoke_json(app, "list")["bridge"] is None


def test_import_ca_refuses_what_it_cannot_trust(app: Flask, tmp_path: Path, root: Issued) -> None:
    root_file = write(tmp_path / "root.pem", root)
    mapping = f"{LOCAL}={PLATFORM}"
    no_bridge = invoke(app, "import-ca", "--name", "a", "--root", str(root_file),
                       "--policy-map", mapping)  # fmt: skip
    assert no_bridge.exit_code == 1
    assert "init-bridge" in no_bridge.output

    invoke_json(app, "init-bridge", "--policy", PLATFORM)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    leaf = write(tmp_path / "leaf.pem", make_leaf(root))
    intermediate = write(tmp_path / "int.pem", make_ca("Int", root))
    cases = {
        "garbage": (["--root", str(garbage), "--policy-map", mapping], 1, "not a PEM or DER"),
        "leaf": (["--root", str(leaf), "--policy-map", mapping], 1, "not a CA"),
        "not self-signed": (["--root", str(intermediate), "--policy-map", mapping], 1, "self"),
        "unknown platform policy": (
            ["--root", str(root_file), "--policy-map", f"{LOCAL}=2.25.99"],
            1,
            "platform",
        ),
        "bad pair": (["--root", str(root_file), "--policy-map", "1.2.3"], 2, "LOCAL_OID"),
        "directory": (["--root", str(tmp_path), "--policy-map", mapping], 2, "directory"),
        "bad url": (
            ["--root", str(root_file), "--policy-map", mapping, "--crl-url", "ldap://x"],
            1,
            "URL",
        ),
    }
    for case, (args, code, words) in cases.items():
        result = invoke(app, "import-ca", "--name", "a", *args)
        assert result.exit_code == code, case
        assert words in result.output, case
    assert invoke_json(app, "list")["cas"] == []

    invoke_json(app, "import-ca", "--name", "a", "--root", str(root_file), "--policy-map", mapping)
    twice = invoke(app, "import-ca", "--name", "a", "--root", str(root_file),
                   "--policy-map", mapping)  # fmt: skip
    assert twice.exit_code == 1
    assert "registered already" in twice.output


def _extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[Any]:
    return certificate.extensions.get_extension_for_oid(oid)


def test_a_cross_certificate_carries_the_bridge_profile_and_exactly_the_mapped_policies(
    bridged: Flask, root: Issued, settings: Any
) -> None:
    ca = invoke_json(
        bridged, "cross-certify", "local-a", "--require-explicit-policy", "0",
        "--inhibit-policy-mapping", "1", "--inhibit-any-policy", "0",
        "--permitted-subtree", "O=Test CA,C=CN",
    )  # fmt: skip
    assert ca["status"] == "cross_certified"
    cross = x509.load_pem_x509_certificate(ca["cross_certificate_pem"].encode())
    bridge_pem = invoke_json(bridged, "list")["bridge"]["certificate_pem"]
    bridge = x509.load_pem_x509_certificate(bridge_pem.encode())
    oid = x509.oid.ExtensionOID

    assert cross.issuer == bridge.subject
    assert cross.subject == root.cert.subject
    assert cross.public_key() == root.cert.public_key()
    cross.verify_directly_issued_by(bridge)
    assert _extension(cross, oid.BASIC_CONSTRAINTS).critical
    assert _extension(cross, oid.BASIC_CONSTRAINTS).value.ca
    usage = _extension(cross, oid.KEY_USAGE)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert (
        _extension(cross, oid.SUBJECT_KEY_IDENTIFIER).value
        == _extension(root.cert, oid.SUBJECT_KEY_IDENTIFIER).value
    )
    assert (
        _extension(cross, oid.AUTHORITY_KEY_IDENTIFIER).value.key_identifier
        == _extension(bridge, oid.SUBJECT_KEY_IDENTIFIER).value.digest
    )
    points = _extension(cross, oid.CRL_DISTRIBUTION_POINTS).value
    assert [p.full_name[0].value for p in points] == [f"{settings.issuer}/pki/bridge.crl"]
    policies = _extension(cross, oid.CERTIFICATE_POLICIES).value
    assert [p.policy_identifier.dotted_string for p in policies] == [PLATFORM]
    mappings = _extension(cross, x509.ObjectIdentifier("2.5.29.33"))
    assert mappings.critical
    # policyMappings: SEQUENCE OF (issuerDomainPolicy, subjectDomainPolicy)
    parsed = asn1_x509.Certificate.load(cross.public_bytes(Encoding.DER))
    assert [
        (m["issuer_domain_policy"].dotted, m["subject_domain_policy"].dotted)
        for m in parsed.policy_mappings_value
    ] == [(PLATFORM, LOCAL)]
    constraints = _extension(cross, oid.POLICY_CONSTRAINTS).value
    assert (constraints.require_explicit_policy, constraints.inhibit_policy_mapping) == (0, 1)
    assert _extension(cross, oid.INHIBIT_ANY_POLICY).value.skip_certs == 0
    permitted = _extension(cross, oid.NAME_CONSTRAINTS).value.permitted_subtrees
    assert [n.value.rfc4514_string() for n in permitted] == ["O=Test CA,C=CN"]
    for certificate in (bridge, cross):
        assert _extension(certificate, oid.CRL_DISTRIBUTION_POINTS)
        assert _extension(certificate, oid.AUTHORITY_KEY_IDENTIFIER)

    again = invoke(bridged, "cross-certify", "local-a")
    assert again.exit_code == 1
    assert "revoke it first" in again.output


def _openssl_verify(tmp_path: Path, bridge_pem: str, untrusted: list[bytes], leaf: Issued,
                    *flags: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    (tmp_path / "anchor.pem").write_text(bridge_pem)
    (tmp_path / "untrusted.pem").write_bytes(b"".join(untrusted))
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    return subprocess.run(
        ["openssl", "verify", "-x509_strict", "-policy_check", "-explicit_policy", *flags,
         "-CAfile", str(tmp_path / "anchor.pem"), "-untrusted", str(tmp_path / "untrusted.pem"),
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


def test_openssl_strict_policy_checking_accepts_the_bridge_path(
    bridged: Flask, root: Issued, tmp_path: Path
) -> None:
    """An independent validator (OpenSSL 3, strict, explicit policy) accepts a local
    CA's certificate through the bridge for the platform policy it maps to, and refuses
    it for the platform policy it does not map to, or with mapping inhibited."""
    intermediate = make_ca("Local Issuing A", root, policies=[LOCAL])
    leaf = make_leaf(intermediate, policies=[LOCAL])
    ca = invoke_json(bridged, "cross-certify", "local-a")
    bridge_pem = invoke_json(bridged, "list")["bridge"]["certificate_pem"]
    untrusted = [ca["cross_certificate_pem"].encode(), intermediate.pem, root.pem]

    mapped = _openssl_verify(tmp_path, bridge_pem, untrusted, leaf, "-policy", PLATFORM)
    assert mapped.returncode == 0, mapped.stdout + mapped.stderr
    unmapped = _openssl_verify(tmp_path, bridge_pem, untrusted, leaf, "-policy", OTHER_PLATFORM)
    assert unmapped.returncode != 0
    inhibited = _openssl_verify(
        tmp_path, bridge_pem, untrusted, leaf, "-policy", PLATFORM, "-inhibit_map"
    )
    assert inhibited.returncode != 0


def test_a_revoked_cross_certificate_is_on_the_bridge_crl_served_and_written(
    bridged: Flask, tmp_path: Path
) -> None:
    client = bridged.test_client()
    before = x509.load_der_x509_crl(client.get("/pki/bridge.crl").data)
    ca = invoke_json(bridged, "cross-certify", "local-a")
    serial = int(ca["cross_certificate_serial"], 16)

    revoked = invoke_json(bridged, "revoke-cross-cert", "local-a")
    assert revoked["status"] == "revoked"
    assert revoked["cross_certificate_pem"] is None
    assert revoked["cross_certificate_revoked_at"]
    bridge_pem = invoke_json(bridged, "list")["bridge"]["certificate_pem"]
    bridge = x509.load_pem_x509_certificate(bridge_pem.encode())

    response = client.get("/pki/bridge.crl")
    assert response.status_code == 200
    assert response.mimetype == "application/pkix-crl"
    served = x509.load_der_x509_crl(response.data)
    assert served.is_signature_valid(bridge.public_key())  # type: ignore[arg-type]
    assert served.issuer == bridge.subject
    assert served.get_revoked_certificate_by_serial_number(serial) is not None
    number = served.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    out = tmp_path / "bridge.crl"
    result = invoke(bridged, "crl", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert x509.load_der_x509_crl(out.read_bytes()).get_revoked_certificate_by_serial_number(serial)

    again = invoke(bridged, "revoke-cross-cert", "local-a")
    assert again.exit_code == 1
    assert "no live cross-certificate" in again.output
    # a new cross-certificate may be issued after a revocation; the old stays revoked
    renewed = invoke_json(bridged, "cross-certify", "local-a")
    assert renewed["status"] == "cross_certified"
    assert int(renewed["cross_certificate_serial"], 16) != serial


def test_without_a_bridge_there_is_no_crl(app: Flask, tmp_path: Path) -> None:
    assert app.test_client().get("/pki/bridge.crl").status_code == 404
    result = invoke(app, "crl", "--out", str(tmp_path / "x.crl"))
    assert result.exit_code == 1
    assert not (tmp_path / "x.crl").exists()


def test_list_json_names_each_ca_with_its_mapping_and_status(bridged: Flask) -> None:
    listed = invoke_json(bridged, "list")
    assert set(listed) == {"bridge", "cas"}
    assert {"subject", "certificate_pem", "policies"} <= set(listed["bridge"])
    (ca,) = listed["cas"]
    assert ca["name"] == "local-a"
    assert ca["subject"] == "CN=Local Root A,O=Test CA,C=CN"
    assert ca["status"] == "imported"
    assert ca["policy_map"] == [{"local": LOCAL, "platform": PLATFORM}]
    assert ca["cross_certificate_pem"] is None
    assert ca["revocation"] == "hard"
