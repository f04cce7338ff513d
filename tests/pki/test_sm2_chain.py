"""SM2 chains (GB/T 39786: SM2 keys, SM2-with-SM3 signatures, distinguishing ID
1234567812345678) made by OpenSSL 3 and validated through pyhanko-certvalidator with
our SM2 signature hook: SM2 all the way, an ECDSA or RSA bridge over an SM2 CA, SM2
CRLs, tampering, and the ``verify`` command."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import algos, x509
from click.testing import CliRunner
from cryptography.exceptions import InvalidSignature

from pki.validation import SignatureChecker, ValidationOptions, subject_of, validate
from pki.verify_cli import verify
from tests.pki.certs import Issued, make_ca
from tests.pki.sm2_certs import Sm2Issued, cross_certify, sm2_ca, sm2_crl, sm2_leaf, sm2_root


@dataclass(frozen=True)
class Sm2Pki:
    directory: Path
    root: Sm2Issued
    ca: Sm2Issued
    leaf: Sm2Issued
    other: Sm2Issued
    crl: bytes  # by the SM2 issuing CA, revoking ``leaf`` (keyCompromise)
    root_crl: bytes


@pytest.fixture(scope="module")
def sm2(tmp_path_factory: pytest.TempPathFactory) -> Sm2Pki:
    directory = tmp_path_factory.mktemp("sm2")
    root = sm2_root(directory)
    ca = sm2_ca(directory, "SM2 Issuing CA", root)
    leaf = sm2_leaf(directory, ca, "SM2 Person")
    other = sm2_leaf(directory, ca, "SM2 Other Person")
    return Sm2Pki(
        directory=directory, root=root, ca=ca, leaf=leaf, other=other,
        crl=sm2_crl(directory, ca, [leaf]), root_crl=sm2_crl(directory, root),
    )  # fmt: skip


def _flip_last_signature_bit(der: bytes) -> bytes:
    """Flip a bit of the signature's ``s`` (the last bytes of the DER certificate)."""
    tampered = bytearray(der)
    tampered[-2] ^= 0x01
    return bytes(tampered)


def test_certificates_really_are_sm2(sm2: Sm2Pki) -> None:
    leaf = x509.Certificate.load(sm2.leaf.der)
    assert leaf["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    assert leaf.public_key["algorithm"]["parameters"].chosen.dotted == "1.2.156.10197.1.301"


def test_sm2_root_intermediate_leaf_validates(sm2: Sm2Pki) -> None:
    result = validate(
        sm2.leaf.der, ValidationOptions(anchors=(sm2.root.der,), intermediates=(sm2.ca.der,))
    )
    assert result.valid, result.reason
    assert result.path == (
        "CN=SM2 Person,O=SM2 Test Holder,C=CN",
        "CN=SM2 Issuing CA,O=SM2 Test CA,C=CN",
        "CN=SM2 Root CA,O=SM2 Test CA,C=CN",
    )
    assert subject_of(sm2.leaf.der) == result.path[0]


def test_tampered_sm2_leaf_signature_is_refused(sm2: Sm2Pki) -> None:
    tampered = _flip_last_signature_bit(sm2.leaf.der)
    result = validate(
        tampered, ValidationOptions(anchors=(sm2.root.der,), intermediates=(sm2.ca.der,))
    )
    assert not result.valid
    assert result.reason == "the signature of the certificate does not verify"


def test_tampered_sm2_intermediate_signature_is_refused(sm2: Sm2Pki) -> None:
    tampered = _flip_last_signature_bit(sm2.ca.der)
    result = validate(
        sm2.leaf.der, ValidationOptions(anchors=(sm2.root.der,), intermediates=(tampered,))
    )
    assert not result.valid
    assert result.reason == (
        "the signature of intermediate certificate CN=SM2 Issuing CA,O=SM2 Test CA,C=CN "
        "does not verify"
    )


def test_sm2_signature_with_another_distinguishing_id_is_refused(sm2: Sm2Pki) -> None:
    """Signed with ID "ALICE123@YAHOO.COM" instead of the default: Z differs, so the
    signature does not verify under GM/T 0009's default ID."""
    odd = sm2_leaf(sm2.directory, sm2.ca, "SM2 Odd ID", distid="distid:ALICE123@YAHOO.COM")
    result = validate(
        odd.der, ValidationOptions(anchors=(sm2.root.der,), intermediates=(sm2.ca.der,))
    )
    assert not result.valid
    assert result.reason == "the signature of the certificate does not verify"


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_ecdsa_or_rsa_bridge_over_an_sm2_ca(sm2: Sm2Pki, key: str) -> None:
    """The bridge (ECDSA P-256 or RSA) cross-certifies the SM2 root: SHA-256 signature
    over an SM2 public key, then SM2 signatures below."""
    bridge: Issued = make_ca(f"Bridge {key}", key=key)
    cross = cross_certify(sm2.directory, bridge, sm2.root)
    options = ValidationOptions(anchors=(bridge.der,), intermediates=(sm2.ca.der, cross))
    result = validate(sm2.leaf.der, options)
    assert result.valid, result.reason
    assert result.path[-1] == bridge.subject
    assert result.certificates[2] == cross
    tampered = validate(_flip_last_signature_bit(sm2.leaf.der), options)
    assert tampered.reason == "the signature of the certificate does not verify"


def test_sm2_crl_revokes(sm2: Sm2Pki) -> None:
    options = ValidationOptions(
        anchors=(sm2.root.der,), intermediates=(sm2.ca.der,),
        crls=(sm2.crl, sm2.root_crl), revocation="require",
    )  # fmt: skip
    revoked = validate(sm2.leaf.der, options)
    assert not revoked.valid
    assert revoked.reason.startswith("the certificate was revoked on ")
    assert revoked.reason.endswith("UTC (keyCompromise) by CRL")
    assert validate(sm2.other.der, options).valid


def test_tampered_sm2_crl_is_not_trusted(sm2: Sm2Pki) -> None:
    tampered = _flip_last_signature_bit(sm2.crl)
    for mode, valid in (("soft", True), ("hard", False), ("require", False)):
        options = ValidationOptions(
            anchors=(sm2.root.der,), intermediates=(sm2.ca.der,),
            crls=(tampered, sm2.root_crl), revocation=mode,  # type: ignore[arg-type]
        )  # fmt: skip
        result = validate(sm2.other.der, options)
        assert result.valid is valid, (mode, result.reason)
        if not valid:
            assert result.reason.endswith("CRL signature could not be verified")


def test_sm2_key_with_another_algorithm_is_refused(sm2: Sm2Pki) -> None:
    """An SM2 key claimed to sign with ECDSA-with-SHA256: refused, not passed to the
    ECDSA code (which does not know the SM2 curve)."""
    leaf = x509.Certificate.load(sm2.leaf.der)
    ca = x509.Certificate.load(sm2.ca.der)
    with pytest.raises(InvalidSignature, match="SM2-with-SM3 only"):
        SignatureChecker().validate_signature(
            leaf["signature_value"].native,
            leaf["tbs_certificate"].dump(),
            ca.public_key,
            algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
        )


def test_verify_command_with_sm2_files(sm2: Sm2Pki) -> None:
    tampered = sm2.directory / "tampered.der"
    tampered.write_bytes(_flip_last_signature_bit(sm2.leaf.der))
    base = ["--anchor", str(sm2.root.cert_path), "--intermediate", str(sm2.ca.cert_path), "--json"]
    ok = CliRunner().invoke(verify, [str(sm2.leaf.cert_path), *base])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["valid"] is True
    bad = CliRunner().invoke(verify, [str(tampered), *base])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout) == {
        "valid": False,
        "reason": "the signature of the certificate does not verify",
        "path": [
            "CN=SM2 Person,O=SM2 Test Holder,C=CN",
            "CN=SM2 Issuing CA,O=SM2 Test CA,C=CN",
            "CN=SM2 Root CA,O=SM2 Test CA,C=CN",
        ],
    }
