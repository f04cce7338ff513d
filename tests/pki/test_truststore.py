"""Validation through the platform's trust store (`idp pki verify` without --anchor):
the bridge as the one anchor, each registered CA reached through its live
cross-certificate with its policies mapped, and refusals in the store's terms."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pki.container import Pki
from pki.identity import GMT0015_IDENTITY_NUMBER
from pki.validation import ValidationOptions
from tests.pki.certs import NOW, Issued, make_ca, make_crl, make_leaf, utf8_string
from tests.pki.revocation_certs import OcspResponder, RevocationServer, closed_port_url
from tests.pki.test_bridge import invoke, invoke_json, write

PLATFORM = "2.25.1"
LOCAL_A = "1.2.156.1.1"
LOCAL_B = "1.2.156.2.1"
PERSON = "11010519491231002X"


def _verify(app: Flask, tmp_path: Path, leaf: Issued, *extra: str) -> tuple[int, Any]:
    leaf_file = write(tmp_path / "leaf.pem", leaf)
    result = invoke(app, "verify", str(leaf_file), *extra, "--json")
    return result.exit_code, json.loads(result.output)


def _register(app: Flask, tmp_path: Path, name: str, root: Issued, local: str, *extra: str) -> None:
    root_file = write(tmp_path / f"{name}.pem", root)
    invoke_json(
        app, "import-ca", "--name", name, "--root", str(root_file),
        "--policy-map", f"{local}={PLATFORM}", "--revocation", "off", *extra,
    )  # fmt: skip


@pytest.fixture
def cas(app: Flask, tmp_path: Path) -> dict[str, Issued]:
    """A bridge with two CAs: A (RSA, with an intermediate) and B (EC), both
    cross-certified; C imported but not cross-certified."""
    invoke_json(app, "init-bridge", "--policy", PLATFORM)
    root_a = make_ca("Root A", key="rsa", policies=[LOCAL_A])
    issuing_a = make_ca("Issuing A", root_a, policies=[LOCAL_A])
    root_b = make_ca("Root B", policies=[LOCAL_B])
    root_c = make_ca("Root C", policies=[LOCAL_B])
    intermediate = write(tmp_path / "issuing-a.pem", issuing_a)
    _register(app, tmp_path, "ca-a", root_a, LOCAL_A, "--intermediate", str(intermediate))
    _register(app, tmp_path, "ca-b", root_b, LOCAL_B)
    _register(app, tmp_path, "ca-c", root_c, LOCAL_B)
    invoke_json(app, "cross-certify", "ca-a")
    invoke_json(app, "cross-certify", "ca-b")
    return {"a": issuing_a, "b": root_b, "c": root_c, "root_a": root_a}


def _person(issuer: Issued, policy: str, **kwargs: Any) -> Issued:
    return make_leaf(
        issuer,
        "王小丽",
        policies=[policy],
        identity_extensions=[(GMT0015_IDENTITY_NUMBER, utf8_string(PERSON))],
        **kwargs,
    )


def test_a_certificate_of_each_ca_validates_through_the_bridge(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    code, out = _verify(app, tmp_path, _person(cas["a"], LOCAL_A))
    assert (code, out["valid"]) == (0, True), out
    # leaf -> issuing -> cross-certificate of root A -> bridge
    assert out["path"][1:3] == [cas["a"].subject, cas["root_a"].subject]
    assert len(out["path"]) == 4
    code, out = _verify(app, tmp_path, _person(cas["b"], LOCAL_B))
    assert (code, out["valid"]) == (0, True), out


def test_the_result_names_the_ca_and_its_mapped_policy(app: Flask, cas: dict[str, Issued]) -> None:
    with app.app_context():
        from idp.core.runtime import db

        result = Pki.of().trust.validate(
            db(), _person(cas["b"], LOCAL_B).der, ValidationOptions(anchors=(), revocation=None)
        )
    assert result.valid, result.reason
    assert result.ca == "ca-b"
    assert result.policies == {PLATFORM}


def test_a_certificate_without_a_mapped_policy_is_refused(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    # CA B's policy is LOCAL_B; a certificate under LOCAL_A is not mapped for it
    code, out = _verify(app, tmp_path, _person(cas["b"], LOCAL_A))
    assert code == 1
    assert "no acceptable certificate policy" in out["reason"]
    code, out = _verify(app, tmp_path, make_leaf(cas["b"], "No policy"))
    assert code == 1
    assert "polic" in out["reason"]


def test_mapping_inhibited_refuses_the_bridge_path(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    code, out = _verify(app, tmp_path, _person(cas["b"], LOCAL_B), "--inhibit-policy-mapping")
    assert code == 1
    assert "policy" in out["reason"]


def test_an_unregistered_ca_is_named_in_the_refusal(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    stranger = make_ca("Stranger CA", policies=[LOCAL_B])
    code, out = _verify(app, tmp_path, _person(stranger, LOCAL_B))
    assert code == 1
    assert "CN=Stranger CA" in out["reason"]
    assert "not a CA registered" in out["reason"]


def test_an_imported_ca_is_not_trusted_before_its_cross_certificate(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    code, out = _verify(app, tmp_path, _person(cas["c"], LOCAL_B))
    assert code == 1
    assert out["reason"] == "the CA 'ca-c' is registered but not cross-certified yet"


def test_a_revoked_cross_certificate_cuts_its_ca_off_in_every_mode(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    leaf = _person(cas["b"], LOCAL_B)
    assert _verify(app, tmp_path, leaf)[0] == 0
    invoke_json(app, "revoke-cross-cert", "ca-b")
    for mode in ("off", "soft", "hard", "require"):
        code, out = _verify(app, tmp_path, leaf, "--revocation", mode)
        assert code == 1, mode
        assert "'ca-b' is cut off" in out["reason"], out
    # the other CA is untouched
    assert _verify(app, tmp_path, _person(cas["a"], LOCAL_A))[0] == 0


def test_a_new_cross_certificate_after_revocation_trusts_the_ca_again(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    leaf = _person(cas["b"], LOCAL_B)
    invoke_json(app, "revoke-cross-cert", "ca-b")
    assert _verify(app, tmp_path, leaf)[0] == 1
    invoke_json(app, "cross-certify", "ca-b")
    assert _verify(app, tmp_path, leaf)[0] == 0


def test_expired_and_tampered_certificates_are_refused(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    expired = _person(
        cas["b"], LOCAL_B, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1)
    )
    code, out = _verify(app, tmp_path, expired)
    assert code == 1
    assert out["reason"].startswith("the certificate expired on")
    good = _person(cas["b"], LOCAL_B)
    tampered = bytearray(good.der)
    tampered[-5] ^= 0x01  # inside the signature
    (tmp_path / "tampered.der").write_bytes(bytes(tampered))
    result = invoke(app, "verify", str(tmp_path / "tampered.der"), "--json")
    assert result.exit_code == 1
    assert "signature" in result.output


def test_without_a_bridge_the_store_says_so(app: Flask, tmp_path: Path) -> None:
    root = make_ca("Root", policies=[LOCAL_A])
    code, out = _verify(app, tmp_path, _person(root, LOCAL_A))
    assert code == 1
    assert "no bridge CA" in out["reason"]


def test_the_store_sees_changes_made_by_another_process(
    app: Flask, tmp_path: Path, cas: dict[str, Issued]
) -> None:
    """The snapshot is rebuilt when the rows change, whoever changed them: here a row
    written without the service (as another worker's commit would look) is seen once
    the snapshot's age is up (a second in production)."""
    leaf = _person(cas["b"], LOCAL_B)
    with app.app_context():
        from idp.core.runtime import db

        trust = Pki.of().trust
        trust.max_age = 0.05
        options = ValidationOptions(anchors=(), revocation="off")
        assert trust.validate(db(), leaf.der, options).valid
        from sqlalchemy import update

        from pki.models import CaStatus, LocalCa

        db().execute(
            update(LocalCa)
            .where(LocalCa.name == "ca-b")
            .values(status=CaStatus.REVOKED, updated_at=NOW + timedelta(seconds=1))
        )
        db().commit()
        time.sleep(0.1)
        refused = trust.validate(db(), leaf.der, options)
        assert not refused.valid
        assert "cut off" in refused.reason


# -- revocation through the store: each CA's configured mode -----------------------------


@pytest.fixture
def revocation_server() -> Iterator[RevocationServer]:
    with RevocationServer() as server:
        yield server


def _register_with_revocation(
    app: Flask, tmp_path: Path, root: Issued, mode: str, *urls: str
) -> None:
    invoke_json(app, "init-bridge", "--policy", PLATFORM)
    root_file = write(tmp_path / "revoking-root.pem", root)
    invoke_json(
        app, "import-ca", "--name", "ca-r", "--root", str(root_file),
        "--policy-map", f"{LOCAL_B}={PLATFORM}", "--revocation", mode, *urls,
    )  # fmt: skip
    invoke_json(app, "cross-certify", "ca-r")


def test_a_certificate_revoked_by_crl_is_refused_through_the_store(
    app: Flask, tmp_path: Path, revocation_server: RevocationServer
) -> None:
    root = make_ca("Revoking CA", policies=[LOCAL_B])
    good, revoked = _person(root, LOCAL_B), _person(root, LOCAL_B)
    revocation_server.files["/ca.crl"] = make_crl(
        root, [(revoked.cert.serial_number, NOW - timedelta(hours=2))]
    )
    _register_with_revocation(
        app, tmp_path, root, "hard", "--crl-url", revocation_server.url("/ca.crl")
    )
    assert _verify(app, tmp_path, good)[0] == 0
    code, out = _verify(app, tmp_path, revoked)
    assert code == 1
    assert out["reason"].startswith("the certificate was revoked on")
    assert out["reason"].endswith("by CRL")
    # the CRL is cached until its nextUpdate: one fetch for both validations
    assert revocation_server.hits["/ca.crl"] == 1


def test_a_certificate_revoked_by_ocsp_is_refused_through_the_store(
    app: Flask, tmp_path: Path, revocation_server: RevocationServer
) -> None:
    root = make_ca("OCSP CA", policies=[LOCAL_B])
    good, revoked = _person(root, LOCAL_B), _person(root, LOCAL_B)
    revocation_server.responder = OcspResponder(
        root,
        known={good.cert.serial_number},
        revoked={revoked.cert.serial_number: (NOW - timedelta(hours=1), None)},
    )
    _register_with_revocation(
        app, tmp_path, root, "require", "--ocsp-url", revocation_server.url("/ocsp")
    )
    assert _verify(app, tmp_path, good)[0] == 0
    code, out = _verify(app, tmp_path, revoked)
    assert code == 1
    assert "revoked" in out["reason"]
    assert out["reason"].endswith("by OCSP")


@pytest.mark.parametrize(("mode", "valid"), [("soft", True), ("hard", False), ("require", False)])
def test_the_mode_decides_when_the_ocsp_responder_is_down(
    app: Flask, tmp_path: Path, mode: str, valid: bool
) -> None:
    root = make_ca("Down CA", policies=[LOCAL_B])
    _register_with_revocation(app, tmp_path, root, mode, "--ocsp-url", closed_port_url())
    code, out = _verify(app, tmp_path, _person(root, LOCAL_B))
    assert out["valid"] is valid, out
    assert code == (0 if valid else 1)
    if not valid:
        assert "OCSP" in out["reason"]


def test_a_given_crl_answers_offline_in_require_mode(app: Flask, tmp_path: Path) -> None:
    """`idp pki verify --crl` without --anchor: the CRL given is used before any fetch,
    so `require` works with the network down."""
    root = make_ca("Offline CA", policies=[LOCAL_B])
    _register_with_revocation(app, tmp_path, root, "off", "--crl-url", closed_port_url("/x.crl"))
    leaf, revoked = _person(root, LOCAL_B), _person(root, LOCAL_B)
    crl_file = tmp_path / "given.crl"
    crl_file.write_bytes(make_crl(root, [(revoked.cert.serial_number, NOW - timedelta(hours=1))]))
    code, out = _verify(app, tmp_path, leaf, "--crl", str(crl_file), "--revocation", "require")
    assert (code, out["valid"]) == (0, True), out
    code, out = _verify(app, tmp_path, revoked, "--crl", str(crl_file), "--revocation", "require")
    assert code == 1
    assert "revoked" in out["reason"]
    # the CA's own mode (off) applies without --revocation
    assert _verify(app, tmp_path, revoked)[0] == 0


def test_a_path_validated_before_still_has_its_revocation_checked(
    app: Flask, tmp_path: Path
) -> None:
    """The second validation of a certificate reuses its validated path (the path
    cache), but never the revocation answer of the first."""
    root = make_ca("Cached CA", policies=[LOCAL_B])
    _register_with_revocation(app, tmp_path, root, "require")
    leaf = _person(root, LOCAL_B)
    clean, listing = tmp_path / "clean.crl", tmp_path / "listing.crl"
    clean.write_bytes(make_crl(root, []))
    listing.write_bytes(make_crl(root, [(leaf.cert.serial_number, NOW - timedelta(hours=1))]))
    assert _verify(app, tmp_path, leaf, "--crl", str(clean))[0] == 0
    code, out = _verify(app, tmp_path, leaf, "--crl", str(listing))
    assert code == 1
    assert "revoked" in out["reason"]
