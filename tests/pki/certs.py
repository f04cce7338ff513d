"""Test certificates made with ``cryptography``: CAs, leaves and CRLs with the
extensions the bridge cares about (policies, policy constraints, GM/T 0015 identity
extensions). SM2 certificates are made with OpenSSL 3 (``tests/pki/sm2_certs.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


def name(cn: str, **extra: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if "o" in extra:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, extra["o"]))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if "serial_number" in extra:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, extra["serial_number"]))
    if "organization_identifier" in extra:
        attributes.append(
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, extra["organization_identifier"])
        )
    return x509.Name(attributes)


def _policies(oids: Iterable[str]) -> x509.CertificatePolicies:
    return x509.CertificatePolicies(
        [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in oids]
    )


def _builder(
    subject: x509.Name,
    issuer_name: x509.Name,
    public_key: object,
    *,
    not_before: datetime | None,
    not_after: datetime | None,
    serial: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def make_ca(
    cn: str,
    issuer: Issued | None = None,
    *,
    key: str = "ec",
    policies: Sequence[str] | None = None,
    path_length: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    crl_url: str | None = None,
) -> Issued:
    """A root (no ``issuer``) or an intermediate CA."""
    private_key = new_key(key)
    subject = name(cn, o="Test CA")
    builder = _builder(
        subject,
        subject if issuer is None else issuer.cert.subject,
        private_key.public_key(),
        not_before=not_before,
        not_after=not_after,
        serial=None,
    )
    signer = private_key if issuer is None else issuer.key
    builder = (
        builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if policies is not None:
        builder = builder.add_extension(_policies(policies), critical=False)
    if crl_url is not None:
        builder = builder.add_extension(_distribution_point(crl_url), critical=False)
    return Issued(_sign(builder, signer), private_key)


def make_leaf(
    issuer: Issued,
    cn: str = "Test Person",
    *,
    key: str = "ec",
    policies: Sequence[str] | None = None,
    subject: x509.Name | None = None,
    identity_extensions: Sequence[tuple[str, bytes]] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    **name_parts: str,
) -> Issued:
    """An end-entity certificate; ``identity_extensions`` are (OID, DER value) pairs,
    non-critical (how GM/T 0015 carries the identity number and the credit code)."""
    private_key = new_key(key)
    builder = _builder(
        subject or name(cn, **name_parts),
        issuer.cert.subject,
        private_key.public_key(),
        not_before=not_before,
        not_after=not_after,
        serial=serial,
    )
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if policies is not None:
        builder = builder.add_extension(_policies(policies), critical=False)
    if crl_url is not None:
        builder = builder.add_extension(_distribution_point(crl_url), critical=False)
    if ocsp_url is not None:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.oid.AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(ocsp_url),
                    )
                ]
            ),
            critical=False,
        )
    for oid, value in identity_extensions:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
        )
    return Issued(_sign(builder, issuer.key), private_key)


def make_crl(
    issuer: Issued,
    revoked: Sequence[tuple[int, datetime]] = (),
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    number: int = 1,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or NOW - DAY)
        .next_update(next_update or NOW + 7 * DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def utf8_string(value: str) -> bytes:
    """DER UTF8String (a GM/T 0015 identity extension's plain form)."""
    raw = value.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def printable_string(value: str) -> bytes:
    raw = value.encode()
    assert len(raw) < 128
    return bytes([0x13, len(raw)]) + raw


def ca_key_usage() -> x509.KeyUsage:
    """keyCertSign and cRLSign only: a CA's key usage."""
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _distribution_point(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
