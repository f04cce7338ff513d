"""pki.validation: paths, policies and policy mapping through a bridge, revocation
modes, bounds on path building, decoding of untrusted input, and the reasons given."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asn1crypto import x509 as asn1_x509
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID

from pki.validation import (
    MAX_BUILD_STEPS,
    MAX_CERTIFICATES,
    MAX_PATH_LENGTH,
    BadInput,
    RevocationMode,
    ValidationOptions,
    load_certificates,
    load_crls,
    subject_of,
    validate,
)
from pki.verify_cli import verify
from tests.pki.certs import (
    DAY,
    NOW,
    Issued,
    PrivateKey,
    ca_key_usage,
    make_ca,
    make_crl,
    make_leaf,
    name,
    new_key,
)

PLATFORM = "2.16.156.339.1.1.1"  # the bridge's (platform) policy
LOCAL = "1.2.156.112570.1.1.1"  # a local CA's policy
OTHER_LOCAL = "1.2.156.112570.1.1.9"
ID_NUMBER = "11010519491231002X"


# --- helpers ----------------------------------------------------------------------------


def cross_certificate(
    issuer: Issued,
    subject: Issued,
    *,
    policies: Sequence[str] = (),
    mappings: Sequence[tuple[str, str]] = (),
    require_explicit_policy: int | None = None,
    inhibit_policy_mapping: int | None = None,
    permitted: Sequence[x509.Name] = (),
    not_after: datetime | None = None,
) -> Issued:
    """``issuer`` certifies ``subject``'s name and key (a cross-certificate), with
    certificatePolicies, policyMappings (issuerDomainPolicy, subjectDomainPolicy) and
    policyConstraints as a bridge would issue them."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.cert.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(subject.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(not_after or NOW + 300 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            ca_key_usage(),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject.key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in policies]
            ),
            critical=False,
        )
    if mappings:
        value = asn1_x509.PolicyMappings(
            [{"issuer_domain_policy": a, "subject_domain_policy": b} for a, b in mappings]
        ).dump()
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ExtensionOID.POLICY_MAPPINGS, value), critical=True
        )
    if require_explicit_policy is not None or inhibit_policy_mapping is not None:
        builder = builder.add_extension(
            x509.PolicyConstraints(require_explicit_policy, inhibit_policy_mapping),
            critical=True,
        )
    if permitted:
        builder = builder.add_extension(
            x509.NameConstraints([x509.DirectoryName(n) for n in permitted], None),
            critical=True,
        )
    return Issued(builder.sign(issuer.key, hashes.SHA256()), subject.key)


def crl_with_reasons(
    issuer: Issued, entries: Sequence[tuple[int, datetime, x509.ReasonFlags]]
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - DAY)
        .next_update(NOW + 7 * DAY)
        .add_extension(x509.CRLNumber(7), critical=False)
    )
    for serial, when, reason in entries:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(when)
            .add_extension(x509.CRLReason(reason), critical=False)
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def forged_by(issuer: Issued, key: PrivateKey, cn: str = "Test Person", **parts: str) -> Issued:
    """A leaf naming ``issuer`` (its name and key identifier) as its issuer, signed by
    someone else's key."""
    leaf_key = new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn, **parts))
        .issuer_name(issuer.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    return Issued(builder.sign(key, hashes.SHA256()), leaf_key)


def options(anchors: Sequence[Issued], *others: Issued, **kwargs: object) -> ValidationOptions:
    return ValidationOptions(
        anchors=tuple(a.der for a in anchors),
        intermediates=tuple(o.der for o in others),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root = make_ca("Test Root")
    ca = make_ca("Test Issuing CA", root)
    return {"root": root, "ca": ca, "leaf": make_leaf(ca, serial_number=ID_NUMBER)}


# --- paths ------------------------------------------------------------------------------


def test_valid_chain(pki: dict[str, Issued]) -> None:
    result = validate(pki["leaf"].der, options([pki["root"]], pki["ca"]))
    assert result.valid
    assert result.reason == "valid"
    assert result.path == (pki["leaf"].subject, pki["ca"].subject, pki["root"].subject)
    assert result.certificates == (pki["leaf"].der, pki["ca"].der, pki["root"].der)


def test_leaf_given_as_pem(pki: dict[str, Issued]) -> None:
    assert validate(pki["leaf"].pem, options([pki["root"]], pki["ca"])).valid


def test_expired_leaf() -> None:
    root = make_ca("Root")
    leaf = make_leaf(root, not_before=NOW - 30 * DAY, not_after=NOW - 2 * DAY)
    result = validate(leaf.der, options([root]))
    assert not result.valid
    expected = (NOW - 2 * DAY).strftime("%Y-%m-%d %H:%M:%S")
    assert result.reason == f"the certificate expired on {expected} UTC"
    assert result.path == (leaf.subject, root.subject)


def test_validation_time_in_the_past_accepts_a_now_expired_leaf() -> None:
    root = make_ca("Root", not_before=NOW - 60 * DAY)
    leaf = make_leaf(root, not_before=NOW - 30 * DAY, not_after=NOW - 2 * DAY)
    assert validate(leaf.der, options([root], at=NOW - 10 * DAY)).valid
    naive = (NOW - 10 * DAY).replace(tzinfo=None)  # read as UTC
    assert validate(leaf.der, options([root], at=naive)).valid


def test_not_yet_valid_leaf() -> None:
    root = make_ca("Root")
    leaf = make_leaf(root, not_before=NOW + 3 * DAY)
    result = validate(leaf.der, options([root]))
    assert not result.valid
    assert result.reason.startswith("the certificate is not valid before ")


def test_expired_intermediate_is_named() -> None:
    root = make_ca("Root")
    ca = make_ca("Lapsed CA", root, not_before=NOW - 90 * DAY, not_after=NOW - DAY)
    leaf = make_leaf(ca, not_before=NOW - 10 * DAY, not_after=NOW + 10 * DAY)
    result = validate(leaf.der, options([root], ca))
    assert not result.valid
    assert result.reason.startswith(f"intermediate certificate {ca.subject} expired on ")


def test_unknown_anchor(pki: dict[str, Issued]) -> None:
    stranger = make_ca("Stranger Root")
    result = validate(pki["leaf"].der, options([stranger], pki["ca"]))
    assert not result.valid
    assert result.reason.startswith("no path to a trust anchor")
    assert pki["root"].subject in result.reason  # the issuer that was not found
    assert result.path == ()


def test_no_anchor_given(pki: dict[str, Issued]) -> None:
    result = validate(pki["leaf"].der, options([], pki["ca"]))
    assert (result.valid, result.reason) == (False, "no trust anchor was given")


def test_missing_intermediate(pki: dict[str, Issued]) -> None:
    result = validate(pki["leaf"].der, options([pki["root"]]))
    assert not result.valid
    assert f"the issuer {pki['ca'].subject} of the certificate" in result.reason


def test_self_signed_leaf_that_is_not_an_anchor(pki: dict[str, Issued]) -> None:
    lone = make_ca("Lone Root")
    result = validate(lone.der, options([pki["root"]]))
    assert result.reason == "the certificate is self-signed and is not one of the trust anchors"


def test_an_anchor_itself_is_valid(pki: dict[str, Issued]) -> None:
    result = validate(pki["root"].der, options([pki["root"]]))
    assert result.valid
    assert result.path == (pki["root"].subject,)


def test_forged_signature_is_refused(pki: dict[str, Issued]) -> None:
    """An attacker's leaf that names the real CA as issuer, signed with the attacker's
    key (same issuer name and key identifier claims are not enough)."""
    forged = forged_by(pki["ca"], new_key(), serial_number=ID_NUMBER)
    result = validate(forged.der, options([pki["root"]], pki["ca"]))
    assert not result.valid
    assert result.reason == "the signature of the certificate does not verify"


def test_flipped_signature_bit_is_refused(pki: dict[str, Issued]) -> None:
    tampered = bytearray(pki["leaf"].der)
    tampered[-5] ^= 0x01
    result = validate(bytes(tampered), options([pki["root"]], pki["ca"]))
    assert not result.valid
    assert "does not verify" in result.reason


def test_key_type_that_does_not_match_the_signature_algorithm() -> None:
    """A leaf naming an RSA CA as issuer, signed with ECDSA: pyhanko's default
    validator would trip an assertion; it is a signature that does not verify."""
    rsa_root = make_ca("RSA Root", key="rsa")
    forged = forged_by(rsa_root, new_key())
    result = validate(forged.der, options([rsa_root]))
    assert (result.valid, result.reason) == (
        False,
        "the signature of the certificate does not verify",
    )


def test_intermediate_that_is_not_a_ca() -> None:
    root = make_ca("Root")
    not_ca = make_leaf(root, "Not A CA")
    leaf = make_leaf(not_ca)
    result = validate(leaf.der, options([root], not_ca))
    assert not result.valid
    assert result.reason.startswith(f"intermediate certificate {not_ca.subject} is not a CA")


def test_reasons_never_carry_the_leaf_subject() -> None:
    """A person's subject may hold the identity number: reasons name the leaf only as
    'the certificate' (the path, for the operator, lists it)."""
    root = make_ca("Root")
    ca = make_ca("Issuing CA", root)
    expired = make_leaf(ca, serial_number=ID_NUMBER, not_after=NOW - DAY, not_before=NOW - 9 * DAY)
    forged = forged_by(ca, new_key(), serial_number=ID_NUMBER)
    revoked = make_leaf(ca, serial_number=ID_NUMBER, serial=4242)
    constrained = cross_certificate(root, ca, permitted=[name("Somewhere Else")])
    results = [
        validate(expired.der, options([root], ca)),
        validate(forged.der, options([root], ca)),
        validate(
            revoked.der,
            options([root], ca, crls=(make_crl(ca, [(4242, NOW - DAY)]),), revocation="soft"),
        ),
        validate(revoked.der, options([root], constrained)),
        validate(revoked.der, options([make_ca("Stranger")], ca)),
    ]
    for result in results:
        assert not result.valid
        assert ID_NUMBER not in result.reason
        assert "Test Person" not in result.reason
    assert "outside the permitted subtrees" in results[3].reason


# --- policies and the bridge ------------------------------------------------------------


def test_policy_required_and_present() -> None:
    root = make_ca("Root")
    ca = make_ca("CA", root, policies=[LOCAL])
    leaf = make_leaf(ca, policies=[LOCAL])
    result = validate(
        leaf.der, options([root], ca, policies=frozenset({LOCAL}), require_explicit_policy=True)
    )
    assert result.valid
    assert result.policies == frozenset({LOCAL})


def test_policy_required_and_absent() -> None:
    root = make_ca("Root")
    ca = make_ca("CA", root, policies=[LOCAL])
    leaf = make_leaf(ca)  # no certificatePolicies
    result = validate(leaf.der, options([root], ca, require_explicit_policy=True))
    assert not result.valid
    assert result.reason.startswith("no acceptable certificate policy")
    # without the requirement the path is valid, with no policy
    relaxed = validate(leaf.der, options([root], ca))
    assert (relaxed.valid, relaxed.policies) == (True, frozenset())


def test_policy_not_in_the_acceptable_set() -> None:
    root = make_ca("Root")
    ca = make_ca("CA", root, policies=[LOCAL])
    leaf = make_leaf(ca, policies=[LOCAL])
    result = validate(
        leaf.der,
        options([root], ca, policies=frozenset({OTHER_LOCAL}), require_explicit_policy=True),
    )
    assert not result.valid
    assert result.reason.startswith("no acceptable certificate policy")


@pytest.fixture(scope="module")
def bridge() -> dict[str, Issued]:
    """Bridge (anchor) -> cross-certificate (certificatePolicies PLATFORM, policyMappings
    PLATFORM -> LOCAL) -> the local root's key -> leaf with the local OID. The local
    root's own self-signed certificate is given too, as a trust store holds it."""
    bridge_ca = make_ca("City Bridge CA", policies=[PLATFORM])
    local_root = make_ca("District CA", key="rsa")  # its self-signed form asserts no policy
    cross = cross_certificate(
        bridge_ca, local_root, policies=[PLATFORM], mappings=[(PLATFORM, LOCAL)]
    )
    return {
        "bridge": bridge_ca,
        "local_root": local_root,
        "cross": cross,
        "leaf": make_leaf(local_root, policies=[LOCAL]),
        "unmapped": make_leaf(local_root, "Other Policy Person", policies=[OTHER_LOCAL]),
    }


def _bridged(b: dict[str, Issued], **kwargs: object) -> ValidationOptions:
    # the self-signed local root first: path building tries it, fails, backtracks
    return options(
        [b["bridge"]],
        b["local_root"],
        b["cross"],
        policies=frozenset({PLATFORM}),
        require_explicit_policy=True,
        **kwargs,
    )


def test_policy_mapping_through_the_bridge(bridge: dict[str, Issued]) -> None:
    result = validate(bridge["leaf"].der, _bridged(bridge))
    assert result.valid, result.reason
    assert result.policies == frozenset({PLATFORM})  # in the anchor's (platform) domain
    assert result.path == (
        bridge["leaf"].subject,
        bridge["local_root"].subject,
        bridge["bridge"].subject,
    )
    assert result.certificates[1] == bridge["cross"].der


def test_policy_mapping_inhibited_is_refused(bridge: dict[str, Issued]) -> None:
    result = validate(bridge["leaf"].der, _bridged(bridge, inhibit_policy_mapping=True))
    assert not result.valid
    assert result.reason.startswith("no acceptable certificate policy")


def test_unmapped_local_policy_is_refused(bridge: dict[str, Issued]) -> None:
    result = validate(bridge["unmapped"].der, _bridged(bridge))
    assert not result.valid
    assert result.reason.startswith("no acceptable certificate policy")


def test_bridge_side_inhibit_policy_mapping_cuts_mapping_below(bridge: dict[str, Issued]) -> None:
    """A bridge sub-CA whose certificate says inhibitPolicyMapping 0: the mapping in the
    cross-certificate it issues below is not allowed."""
    sub = cross_certificate(
        bridge["bridge"], make_ca("Bridge Sub CA"), policies=[PLATFORM], inhibit_policy_mapping=0
    )
    cross = cross_certificate(
        sub, bridge["local_root"], policies=[PLATFORM], mappings=[(PLATFORM, LOCAL)]
    )
    explicit = {"policies": frozenset({PLATFORM}), "require_explicit_policy": True}
    result = validate(bridge["leaf"].der, options([bridge["bridge"]], sub, cross, **explicit))
    assert not result.valid
    assert result.reason.startswith("no acceptable certificate policy")
    allowed = cross_certificate(bridge["bridge"], make_ca("Bridge Sub CA"), policies=[PLATFORM])
    below = cross_certificate(
        allowed, bridge["local_root"], policies=[PLATFORM], mappings=[(PLATFORM, LOCAL)]
    )
    assert validate(
        bridge["leaf"].der, options([bridge["bridge"]], allowed, below, **explicit)
    ).valid


def test_bridge_with_an_intermediate_below_the_local_root(bridge: dict[str, Issued]) -> None:
    issuing = make_ca("District Issuing CA", bridge["local_root"], policies=[LOCAL])
    leaf = make_leaf(issuing, policies=[LOCAL])
    bridged = options(
        [bridge["bridge"]], issuing, bridge["cross"], policies=frozenset({PLATFORM}),
        require_explicit_policy=True,
    )  # fmt: skip
    result = validate(leaf.der, bridged)
    assert result.valid, result.reason
    assert len(result.path) == 4


# --- revocation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocable:
    root: Issued
    ca: Issued
    leaves: dict[str, Issued]  # "with_cdp", "without_cdp"
    crls: dict[str, bytes]  # "revoking", "good", "root", "wrong_issuer", "bad_signature"

    def check(self, leaf: str, crl: str | None, mode: RevocationMode) -> tuple[bool, str]:
        crls = (self.crls["root"],) + ((self.crls[crl],) if crl else ())
        result = validate(
            self.leaves[leaf].der, options([self.root], self.ca, crls=crls, revocation=mode)
        )
        return result.valid, result.reason


@pytest.fixture(scope="module")
def revocable() -> Revocable:
    root = make_ca("Revocation Root")
    ca = make_ca("Revocation CA", root)
    other = make_ca("Unrelated CA")
    revoking = crl_with_reasons(
        ca,
        [(0x1001, NOW - DAY, x509.ReasonFlags.key_compromise),
         (0x1002, NOW - DAY, x509.ReasonFlags.superseded)],
    )  # fmt: skip
    bad_signature = bytearray(revoking)
    bad_signature[-4] ^= 0x01
    return Revocable(
        root=root,
        ca=ca,
        leaves={
            "with_cdp": make_leaf(ca, "With CDP", serial=0x1001, crl_url="http://127.0.0.1:9/c"),
            "without_cdp": make_leaf(ca, "Without CDP", serial=0x1002),
        },
        crls={
            "revoking": revoking,
            "good": make_crl(ca),
            "root": make_crl(root),
            "wrong_issuer": make_crl(other, [(0x1001, NOW - DAY), (0x1002, NOW - DAY)]),
            "bad_signature": bytes(bad_signature),
        },
    )


def test_revoked_by_crl_in_hard_mode(revocable: Revocable) -> None:
    valid, reason = revocable.check("with_cdp", "revoking", "hard")
    assert not valid
    when = (NOW - DAY).strftime("%Y-%m-%d %H:%M:%S")
    assert reason == f"the certificate was revoked on {when} UTC (keyCompromise) by CRL"


@pytest.mark.parametrize("mode", ["soft", "hard", "require"])
def test_a_given_crl_applies_without_a_distribution_point(
    revocable: Revocable, mode: RevocationMode
) -> None:
    """pyhanko's soft/hard-fail only look at CRLs for certificates that name a
    distribution point; a CRL given for the issuer is checked all the same here."""
    valid, reason = revocable.check("without_cdp", "revoking", mode)
    assert not valid
    assert reason.endswith("(superseded) by CRL")


def test_off_ignores_crls(revocable: Revocable) -> None:
    assert revocable.check("with_cdp", "revoking", "off") == (True, "valid")


@pytest.mark.parametrize("mode", ["soft", "hard", "require"])
def test_good_crl_in_every_mode(revocable: Revocable, mode: RevocationMode) -> None:
    assert revocable.check("with_cdp", "good", mode) == (True, "valid")


@pytest.mark.parametrize("leaf", ["with_cdp", "without_cdp"])
@pytest.mark.parametrize("crl", ["wrong_issuer", "bad_signature"])
def test_unusable_crl_ignored_in_soft_mode(revocable: Revocable, leaf: str, crl: str) -> None:
    assert revocable.check(leaf, crl, "soft") == (True, "valid")


@pytest.mark.parametrize("mode", ["hard", "require"])
@pytest.mark.parametrize("crl", ["wrong_issuer", "bad_signature"])
def test_unusable_crl_refused_in_hard_and_require_modes(
    revocable: Revocable, crl: str, mode: RevocationMode
) -> None:
    valid, reason = revocable.check("with_cdp", crl, mode)
    assert not valid
    assert "of the certificate" in reason or "for the certificate" in reason
    if crl == "bad_signature":
        assert reason.endswith("CRL signature could not be verified")


def test_hard_mode_accepts_a_certificate_naming_no_crl_when_none_applies(
    revocable: Revocable,
) -> None:
    assert revocable.check("without_cdp", "wrong_issuer", "hard") == (True, "valid")
    valid, reason = revocable.check("without_cdp", "wrong_issuer", "require")
    assert not valid
    assert reason == "no valid CRL or OCSP response for the certificate (revocation mode require)"


def test_forged_empty_crl_does_not_hide_a_revocation(revocable: Revocable) -> None:
    """An attacker adds an empty CRL in the CA's name, signed by another key."""
    forged = make_crl(Issued(revocable.ca.cert, new_key()), number=99)
    leaf = revocable.leaves["with_cdp"].der
    for extra in ((forged,), (forged, revocable.crls["revoking"])):
        crls = (revocable.crls["root"], *extra)
        result = validate(
            leaf, options([revocable.root], revocable.ca, crls=crls, revocation="require")
        )
        assert not result.valid
    assert "revoked on" in result.reason


def test_require_without_any_crl(revocable: Revocable) -> None:
    result = validate(
        revocable.leaves["without_cdp"].der,
        options([revocable.root], revocable.ca, revocation="require"),
    )
    assert not result.valid
    assert result.reason.startswith("no valid CRL or OCSP response for intermediate certificate")


def test_default_mode_is_soft_with_crls_and_off_without(revocable: Revocable) -> None:
    anchors, ca = [revocable.root], revocable.ca
    with_crl = options(anchors, ca, crls=(revocable.crls["revoking"],), revocation=None)
    assert not validate(revocable.leaves["without_cdp"].der, with_crl).valid
    without = options(anchors, ca, revocation=None)
    assert validate(revocable.leaves["with_cdp"].der, without).valid


def _ocsp_response(issuer: Issued, leaf: Issued, *, revoked: bool) -> bytes:
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf.cert,
        issuer=issuer.cert,
        algorithm=hashes.SHA256(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=NOW - timedelta(hours=1),
        next_update=NOW + DAY,
        revocation_time=NOW - DAY if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    )
    response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert).sign(
        issuer.key, hashes.SHA256()
    )
    return response.public_bytes(serialization.Encoding.DER)


def test_ocsp_good_and_revoked() -> None:
    root = make_ca("OCSP Root")
    leaf = make_leaf(root, ocsp_url="http://127.0.0.1:9/ocsp")
    good = options([root], ocsps=(_ocsp_response(root, leaf, revoked=False),), revocation="require")
    assert validate(leaf.der, good).valid
    revoked = options([root], ocsps=(_ocsp_response(root, leaf, revoked=True),), revocation="soft")
    result = validate(leaf.der, revoked)
    assert not result.valid
    assert result.reason.endswith("(keyCompromise) by OCSP")
    other = make_leaf(root, "Someone Else", ocsp_url="http://127.0.0.1:9/ocsp")
    mismatched = options(
        [root], ocsps=(_ocsp_response(root, other, revoked=False),), revocation="require"
    )
    assert not validate(leaf.der, mismatched).valid


class _CrlHandler(BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def crl_server() -> Iterator[tuple[str, type[_CrlHandler]]]:
    handler = type("Handler", (_CrlHandler,), {"body": b"", "hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_fetching_only_when_allowed(crl_server: tuple[str, type[_CrlHandler]]) -> None:
    url, handler = crl_server
    root = make_ca("Fetch Root")
    leaf = make_leaf(root, serial=0x77, crl_url=f"{url}/root.crl")
    handler.body = crl_with_reasons(root, [(0x77, NOW - DAY, x509.ReasonFlags.key_compromise)])
    offline = validate(leaf.der, options([root], revocation="hard"))
    assert (offline.valid, handler.hits) == (False, 0)
    assert offline.reason.startswith("no CRL or OCSP response for the certificate, which names")
    fetched = validate(leaf.der, options([root], revocation="hard", allow_fetching=True))
    assert handler.hits == 1
    assert not fetched.valid
    assert fetched.reason.endswith("(keyCompromise) by CRL")


# --- bounds -----------------------------------------------------------------------------


def test_thousand_certificates_are_refused_up_front(pki: dict[str, Issued]) -> None:
    bundle = pki["ca"].pem * 1000
    with pytest.raises(
        BadInput, match=r"too many PEM blocks \(1000\): at most 64 certificates accepted"
    ):
        load_certificates(bundle)
    many = ValidationOptions(anchors=(pki["root"].der,), intermediates=(pki["ca"].der,) * 1000)
    with pytest.raises(BadInput, match=r"too many certificates \(1002\)"):
        validate(pki["leaf"].der, many)
    assert MAX_CERTIFICATES == 64


def test_cross_certification_loop_ends_with_a_reason() -> None:
    """A cross-certifies B and B cross-certifies A; neither reaches the anchor."""
    a, b = make_ca("Loop CA A"), make_ca("Loop CA B")
    a_by_b, b_by_a = cross_certificate(b, a), cross_certificate(a, b)
    leaf = make_leaf(a)
    result = validate(leaf.der, options([make_ca("Unrelated Root")], a_by_b, b_by_a))
    assert not result.valid
    assert result.reason.startswith("no path to a trust anchor: the cross-certificates form a loop")
    assert a.subject in result.reason
    assert b.subject in result.reason


def test_loop_beside_a_real_path_still_validates() -> None:
    root = make_ca("Bridge Root")
    a, b = make_ca("Loop CA A"), make_ca("Loop CA B")
    leaf = make_leaf(a)
    others = (cross_certificate(b, a), cross_certificate(a, b), cross_certificate(root, b))
    result = validate(leaf.der, options([root], *others))
    assert result.valid, result.reason
    assert result.path == (leaf.subject, a.subject, b.subject, root.subject)


def test_many_same_name_cross_certificates_stop_path_building() -> None:
    """60 certificates with one name, each a candidate issuer of each other: the
    number of paths explodes; building stops after a bounded number of candidates."""
    key = new_key()
    hub = Issued(make_ca("Hub CA").cert, key)
    tangle = [cross_certificate(hub, hub) for _ in range(60)]
    leaf = make_leaf(hub)
    result = validate(leaf.der, options([make_ca("Far Away Root")], *tangle))
    assert not result.valid
    assert f"path building stopped after {MAX_BUILD_STEPS} candidate issuers" in result.reason


def test_path_longer_than_the_limit() -> None:
    chain = [make_ca("Deep Root")]
    for depth in range(MAX_PATH_LENGTH + 1):
        chain.append(make_ca(f"Deep CA {depth}", chain[-1]))
    leaf = make_leaf(chain[-1])
    result = validate(leaf.der, options([chain[0]], *chain[1:]))
    assert not result.valid
    assert result.reason == (
        f"no path to a trust anchor within {MAX_PATH_LENGTH} certificates below the anchor"
    )
    shorter = validate(make_leaf(chain[-3]).der, options([chain[0]], *chain[1:]))
    assert shorter.valid


# --- decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty input"),
        (b"   \n", "empty input"),
        (b"hello, world", "not a valid X.509 certificate"),
        (b"\x30\x82\x01\x00garbage", "not a valid X.509 certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", "no certificate"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not a valid"),
    ],
)
def test_garbage_is_bad_input(data: bytes, fragment: str) -> None:
    with pytest.raises(BadInput, match=fragment) as raised:
        load_certificates(data)
    assert "\n" not in raised.value.reason


def test_truncated_der_is_bad_input(pki: dict[str, Issued]) -> None:
    for cut in (1, 10, len(pki["leaf"].der) // 2, len(pki["leaf"].der) - 1):
        with pytest.raises(BadInput, match=r"not a valid X\.509 certificate"):
            load_certificates(pki["leaf"].der[:cut])
    with pytest.raises(BadInput):
        load_certificates(pki["leaf"].der + b"\x00")  # trailing data
    with pytest.raises(BadInput, match="the certificate is not a valid"):
        validate(pki["leaf"].der[:-20], options([pki["root"]], pki["ca"]))
    with pytest.raises(BadInput, match="trust anchor 1 is not a valid"):
        validate(pki["leaf"].der, ValidationOptions(anchors=(b"\x30\x03\x02\x01\x01",)))


def test_pem_bundle_and_der(pki: dict[str, Issued]) -> None:
    bundle = b"some text first\n" + pki["leaf"].pem + pki["leaf"].key_pem + pki["ca"].pem
    assert load_certificates(bundle) == [pki["leaf"].der, pki["ca"].der]
    assert load_certificates(pki["leaf"].der) == [pki["leaf"].der]
    with pytest.raises(BadInput, match="at most 1 certificate accepted"):
        load_certificates(pki["leaf"].pem + pki["ca"].pem, limit=1)
    with pytest.raises(BadInput, match="expected one certificate to validate, found 2"):
        validate(pki["leaf"].pem + pki["ca"].pem, options([pki["root"]], pki["ca"]))
    assert validate(pki["leaf"].pem + pki["leaf"].key_pem, options([pki["root"]], pki["ca"])).valid


def test_load_crls(pki: dict[str, Issued]) -> None:
    der = make_crl(pki["ca"])
    pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    assert load_crls(der) == [der]
    assert load_crls(pem + pem) == [der, der]
    with pytest.raises(BadInput, match=r"not a valid X\.509 CRL"):
        load_crls(der[:-3])
    with pytest.raises(BadInput, match="no CRL in the PEM data"):
        load_crls(pki["ca"].pem)


def test_subject_of_matches_cryptography(pki: dict[str, Issued]) -> None:
    for issued in pki.values():
        assert subject_of(issued.der) == issued.cert.subject.rfc4514_string()
    assert "2.5.4.5=" + ID_NUMBER in subject_of(pki["leaf"].der)


def test_subject_of_a_certificate_cryptography_would_warn_about() -> None:
    """A non-positive serial makes cryptography warn (an error under our pytest
    settings); the subject is read all the same."""
    leaf = asn1_x509.Certificate.load(make_leaf(make_ca("Root"), "Odd Serial").der)
    tbs = leaf["tbs_certificate"].copy()
    tbs["serial_number"] = -5
    odd = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": leaf["signature_algorithm"],
            "signature_value": leaf["signature_value"],
        }
    ).dump()
    assert subject_of(odd) == "CN=Odd Serial,C=CN"


# --- idp pki verify ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Issued]) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("verify")
    revoking = make_crl(pki["ca"], [(pki["leaf"].cert.serial_number, NOW - DAY)])
    contents = {
        "leaf.pem": pki["leaf"].pem,
        "leaf.der": pki["leaf"].der,
        "root.pem": pki["root"].pem,
        "ca.der": pki["ca"].der,
        "crl.der": revoking,
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
        "noise.bin": bytes(range(256)) * 4,
        "truncated.der": pki["leaf"].der[:100],
        "bundle.pem": pki["ca"].pem * (MAX_CERTIFICATES + 1),
    }
    for file_name, data in contents.items():
        (directory / file_name).write_bytes(data)
    paths = {file_name: str(directory / file_name) for file_name in contents}
    return {**paths, "dir": str(directory), "missing": str(directory / "nope.pem")}


def _verify(*arguments: str, obj: object = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(verify, list(arguments), obj=obj)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def test_cli_valid_and_invalid(files: dict[str, str], pki: dict[str, Issued]) -> None:
    code, out, _ = _verify(
        files["leaf.pem"], "--anchor", files["root.pem"], "--intermediate", files["ca.der"]
    )
    assert code == 0
    assert out == f"valid: {pki['leaf'].subject} <- {pki['ca'].subject} <- {pki['root'].subject}\n"
    code, out, _ = _verify(files["leaf.der"], "--anchor", files["root.pem"])
    assert code == 1
    assert out.startswith("invalid: no path to a trust anchor")
    assert out.count("\n") == 1


def test_cli_json(files: dict[str, str], pki: dict[str, Issued]) -> None:
    code, out, err = _verify(
        files["leaf.der"], "--anchor", files["root.pem"], "--intermediate", files["ca.der"],
        "--policy", "2.5.29.32.0", "--at", NOW.isoformat(), "--json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "valid": True,
        "reason": "valid",
        "path": [pki["leaf"].subject, pki["ca"].subject, pki["root"].subject],
    }


def test_cli_default_revocation_is_soft_with_a_crl(files: dict[str, str]) -> None:
    base = [files["leaf.der"], "--anchor", files["root.pem"], "--intermediate", files["ca.der"]]
    code, out, _ = _verify(*base, "--crl", files["crl.der"], "--json")
    assert code == 1
    assert "was revoked on" in json.loads(out)["reason"]
    assert _verify(*base, "--crl", files["crl.der"], "--revocation", "off")[0] == 0
    assert _verify(*base)[0] == 0


@pytest.mark.parametrize(
    ("bad", "code", "fragment"),
    [
        ("garbage.pem", 1, "the PEM data cannot be read"),
        ("noise.bin", 1, "not a valid X.509 certificate"),
        ("truncated.der", 1, "not a valid X.509 certificate"),
        ("bundle.pem", 1, f"at most {MAX_CERTIFICATES} certificates"),
        ("dir", 2, "is a directory"),
        ("missing", 2, "no such file"),
    ],
)
def test_cli_bad_files(files: dict[str, str], bad: str, code: int, fragment: str) -> None:
    for arguments in (
        [files[bad], "--anchor", files["root.pem"]],
        [files["leaf.der"], "--anchor", files[bad]],
        [files["leaf.der"], "--anchor", files["root.pem"], "--intermediate", files[bad]],
    ):
        got, out, _ = _verify(*arguments, "--json")
        assert got == code
        output = json.loads(out)
        assert output["valid"] is False
        assert output["path"] == []
        assert fragment in output["reason"]
        assert files[bad] in output["reason"]
        got, out, err = _verify(*arguments)
        assert (got, out) == (code, "")
        assert err.startswith("idp: ")
        assert err.count("\n") == 1
    got, out, _ = _verify(
        files["leaf.der"], "--anchor", files["root.pem"], "--crl", files["noise.bin"], "--json"
    )
    assert got == 1
    assert "not a valid X.509 CRL" in json.loads(out)["reason"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--at", "yesterday"), ("--revocation", "sometimes"), ("--policy", "not.an.oid")],
)
def test_cli_bad_options(files: dict[str, str], option: str, value: str) -> None:
    code, out, _ = _verify(
        files["leaf.der"], "--anchor", files["root.pem"], option, value, "--json"
    )
    assert code == 2
    assert json.loads(out)["reason"].startswith(f"{option} ")


def test_cli_without_anchor_needs_the_application(files: dict[str, str]) -> None:
    code, out, _ = _verify(files["leaf.der"], "--json")
    assert code == 2
    assert "needs the application" in json.loads(out)["reason"]
