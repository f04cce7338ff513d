"""The files of one demo CA: keys, certificates, PKCS#12 bundles and CRLs.

``idp pki demo`` (``pki.demo``) needs local CAs that look like the city's: an RSA CA
with a root and an issuing intermediate, an ECDSA P-256 CA, and an SM2 CA (GB/T
39786: SM2 keys, SM2-with-SM3 signatures, distinguishing ID ``1234567812345678``).
The RSA and ECDSA ones are made with ``cryptography``; cryptography cannot sign with
SM2, so the SM2 CA is made with the OpenSSL 3 command line, as the tests' SM2 PKI is.

Everything here is for the demo: keys are written unencrypted (0600) so that ``idp pki
sign-challenge`` can use them, next to PKCS#12 copies protected by one printed
password. ``make_ca_files`` writes a CA's files under a directory and returns what it
made as a JSON-able dict (paths relative to that directory); ``sign_crl`` re-signs a
CA's CRL from that dict, so a second run can refresh CRLs without new keys.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accounts import identifiers
from idp.core.keys import write_private_file
from pki.identity import IdentityKind

KeyType = Literal["rsa", "ec", "sm2"]
Role = Literal["citizen", "enterprise", "revoked"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

SM2_DISTID: Final = "distid:1234567812345678"
CA_DAYS: Final = 10 * 365
LEAF_DAYS: Final = 2 * 365
CRL_DAYS: Final = 7
REVOCATION_REASON: Final = "keyCompromise"
_OPENSSL_TIMEOUT: Final = 30


class DemoCaError(Exception):
    """A demo CA could not be made (the message says why, in one line)."""


@dataclass(frozen=True)
class Holder:
    """A certificate holder of a demo CA. ``where`` is the identity rule's SOURCE the
    identifier goes in (``ext:OID``, ``subject:serialNumber``,
    ``subject:organizationIdentifier``); ``value`` what is written there when it is
    not the bare identifier (an ETSI ``NTRCN-`` prefix, say)."""

    role: Role
    name: str
    kind: IdentityKind
    identifier: str
    where: str
    value: str | None = None


@dataclass(frozen=True)
class CaSpec:
    name: str
    key_type: KeyType
    organisation: str
    root_cn: str
    issuing_cn: str | None  # an intermediate that issues the leaves, or None: the root does
    policy: str  # the CA's own certificate policy OID
    identity_rules: tuple[str, ...]
    revocation: str
    delegated_ocsp: bool  # a responder certificate signs OCSP, not the issuing CA
    holders: tuple[Holder, ...]

    @property
    def has_ocsp(self) -> bool:
        return self.key_type != "sm2"


@dataclass(frozen=True)
class Urls:
    """Where the demo CA services serve CRLs and OCSP (``pki.demo``)."""

    base: str

    def crl(self, name: str) -> str:
        return f"{self.base}/crl/{name}.crl"

    def ocsp(self, name: str) -> str:
        return f"{self.base}/ocsp/{name}"


def resident_id(address: str, birth: str, sequence: str) -> str:
    """A GB 11643 number with its MOD 11-2 check character (demo identities)."""
    body = address + birth + sequence
    return body + identifiers.id_check_char(body)


def credit_code(region: str, organisation_body: str) -> str:
    """A GB 32100 unified social credit code (registration authority 9, enterprise 1)
    with both check characters."""
    organisation = organisation_body + identifiers.org_check_char(organisation_body)
    body = "91" + region + organisation
    return body + identifiers.uscc_check_char(body)


def make_ca_files(
    spec: CaSpec, directory: Path, urls: Urls, password: str, now: datetime
) -> dict[str, Any]:
    """Write ``spec``'s keys, certificates, PKCS#12 files and CRLs under ``directory``
    (``<name>/...`` and ``crl/...``); the manifest entry describing them."""
    (directory / spec.name).mkdir(parents=True, mode=0o700)
    (directory / "crl").mkdir(exist_ok=True, mode=0o755)
    now = now.replace(microsecond=0)
    if spec.key_type == "sm2":
        entry = _Sm2Maker(spec, directory, urls, password, now).make()
    else:
        entry = _CryptographyMaker(spec, directory, urls, password, now).make()
    for crl_name in entry["crls"]:
        sign_crl(directory, entry, crl_name, number=1, now=now)
    return entry


def sign_crl(
    directory: Path, entry: dict[str, Any], crl_name: str, *, number: int, now: datetime
) -> Path:
    """(Re-)sign the CRL ``crl_name`` of the CA ``entry`` (from ``make_ca_files``):
    valid ``CRL_DAYS`` from ``now``, listing the CA's revoked entries for it."""
    crl = entry["crls"][crl_name]
    revoked = [r for r in entry["revoked"] if r["crl"] == crl_name]
    out = directory / "crl" / f"{crl_name}.crl"
    issuer_cert = directory / crl["issuer"]
    issuer_key = directory / crl["key"]
    if entry["key_type"] == "sm2":
        der = _sm2_crl(directory / entry["name"], issuer_cert, issuer_key, revoked, number, now)
    else:
        der = _cryptography_crl(issuer_cert, issuer_key, revoked, number, now)
    temporary = out.with_suffix(".tmp")
    temporary.write_bytes(der)
    temporary.replace(out)
    return out


# --- RSA and ECDSA, with cryptography --------------------------------------------------


class _CryptographyMaker:
    def __init__(
        self, spec: CaSpec, directory: Path, urls: Urls, password: str, now: datetime
    ) -> None:
        self.spec = spec
        self.directory = directory
        self.home = directory / spec.name
        self.urls = urls
        self.password = password
        self.now = now

    def make(self) -> dict[str, Any]:
        spec = self.spec
        root_key = self._key()
        root_name = _name(spec.root_cn, organisation=spec.organisation)
        root = self._sign(
            _ca_builder(root_name, root_name, root_key, root_key, self.now, path_length=None),
            root_key,
        )
        self._write("root", root, root_key)
        issuer, issuer_key, issuer_stem = root, root_key, "root"
        intermediates = []
        crls = {spec.name: {"issuer": f"{spec.name}/root.pem", "key": f"{spec.name}/root.key"}}
        if spec.issuing_cn is not None:
            key = self._key()
            builder = _ca_builder(
                _name(spec.issuing_cn, organisation=spec.organisation), root_name, key, root_key,
                self.now, path_length=0,
            )  # fmt: skip
            builder = builder.add_extension(_policies(spec.policy), critical=False)
            builder = builder.add_extension(
                _distribution_point(self.urls.crl(f"{spec.name}-root")), critical=False
            )
            issuer, issuer_key, issuer_stem = self._sign(builder, root_key), key, "issuing-ca"
            self._write(issuer_stem, issuer, issuer_key)
            intermediates.append(f"{spec.name}/{issuer_stem}.pem")
            crls = {
                spec.name: {
                    "issuer": f"{spec.name}/{issuer_stem}.pem",
                    "key": f"{spec.name}/{issuer_stem}.key",
                },
                f"{spec.name}-root": {
                    "issuer": f"{spec.name}/root.pem",
                    "key": f"{spec.name}/root.key",
                },
            }
        leaf_ocsp: dict[str, str] = {
            "issuer": f"{spec.name}/{issuer_stem}.pem",
            "key": f"{spec.name}/{issuer_stem}.key",
        }
        if spec.delegated_ocsp:
            leaf_ocsp = self._ocsp_signer(issuer, issuer_key, leaf_ocsp)
        # the issuing CA's responder, and the root's (for the intermediate) when there is one
        ocsp = [leaf_ocsp]
        if issuer_stem != "root":
            ocsp.append({"issuer": f"{spec.name}/root.pem", "key": f"{spec.name}/root.key"})
        certificates, revoked = [], []
        chain = [issuer] if issuer is root else [issuer, root]
        for holder in spec.holders:
            key = self._key()
            builder = _leaf_builder(holder, issuer, key, issuer_key, self.now)
            builder = builder.add_extension(_policies(spec.policy), critical=False)
            builder = builder.add_extension(
                _distribution_point(self.urls.crl(spec.name)), critical=False
            )
            builder = builder.add_extension(_ocsp_access(self.urls.ocsp(spec.name)), critical=False)
            certificate = self._sign(builder, issuer_key)
            self._write(holder.role, certificate, key)
            p12 = pkcs12.serialize_key_and_certificates(
                holder.name.encode(), key, certificate, chain,
                serialization.BestAvailableEncryption(self.password.encode()),
            )  # fmt: skip
            (self.home / f"{holder.role}.p12").write_bytes(p12)
            (self.home / f"{holder.role}.p12").chmod(0o600)
            certificates.append(_certificate_entry(spec, holder, certificate.serial_number))
            if holder.role == "revoked":
                revoked.append(_revoked_entry(spec.name, certificate.serial_number, self.now))
        return _entry(spec, intermediates, crls, ocsp, certificates, revoked)

    def _ocsp_signer(
        self, issuer: x509.Certificate, issuer_key: PrivateKey, default: dict[str, str]
    ) -> dict[str, str]:
        key = self._key()
        cn = f"{self.spec.issuing_cn or self.spec.root_cn} OCSP Responder"
        subject = _name(cn, organisation=self.spec.organisation)
        builder = _base_builder(subject, issuer.subject, key, issuer_key, self.now, days=365)
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
            .add_extension(x509.OCSPNoCheck(), critical=False)
        )
        certificate = self._sign(builder, issuer_key)
        self._write("ocsp-signer", certificate, key)
        return {
            **default,
            "signer": f"{self.spec.name}/ocsp-signer.pem",
            "signer_key": f"{self.spec.name}/ocsp-signer.key",
        }

    def _key(self) -> PrivateKey:
        if self.spec.key_type == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
        return builder.sign(key, hashes.SHA256())

    def _write(self, stem: str, certificate: x509.Certificate, key: PrivateKey) -> None:
        (self.home / f"{stem}.pem").write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        write_private_file(
            self.home / f"{stem}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def _name(
    cn: str, *, organisation: str | None = None, extra: Sequence[x509.NameAttribute[Any]] = ()
) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if organisation is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    attributes.extend(extra)
    return x509.Name(attributes)


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: PrivateKey,
    issuer_key: PrivateKey,
    now: datetime,
    *,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: PrivateKey,
    issuer_key: PrivateKey,
    now: datetime,
    *,
    path_length: int | None,
) -> x509.CertificateBuilder:
    return (
        _base_builder(subject, issuer, key, issuer_key, now, days=CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
    )


def _leaf_builder(
    holder: Holder, issuer: x509.Certificate, key: PrivateKey, issuer_key: PrivateKey, now: datetime
) -> x509.CertificateBuilder:
    value = holder.value or holder.identifier
    extra: list[x509.NameAttribute[Any]] = []
    extensions: list[x509.UnrecognizedExtension] = []
    if holder.where == "subject:serialNumber":
        extra.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, value))
    elif holder.where == "subject:organizationIdentifier":
        extra.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, value))
    elif holder.where.startswith("ext:"):
        oid = x509.ObjectIdentifier(holder.where.removeprefix("ext:"))
        extensions.append(x509.UnrecognizedExtension(oid, _utf8_string(value)))
    else:  # pragma: no cover - the specs are constants
        raise DemoCaError(f"unknown identity place {holder.where!r}")
    organisation = holder.name if holder.kind == "organisation" else None
    subject = _name(holder.name, organisation=organisation, extra=extra)
    builder = (
        _base_builder(subject, issuer.subject, key, issuer_key, now, days=LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _policies(oid: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(oid), None)])


def _distribution_point(url: str) -> x509.CRLDistributionPoints:
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
    return x509.CRLDistributionPoints([point])


def _ocsp_access(url: str) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url)
            )
        ]
    )


def _utf8_string(value: str) -> bytes:
    """DER UTF8String (how GM/T 0015 extensions carry the number in most CAs)."""
    raw = value.encode()
    if len(raw) >= 128:  # pragma: no cover - identifiers are 18 characters
        raise DemoCaError("an identity value is too long")
    return bytes([0x0C, len(raw)]) + raw


def _cryptography_crl(
    issuer_file: Path, key_file: Path, revoked: Sequence[dict[str, Any]], number: int, now: datetime
) -> bytes:
    issuer = x509.load_pem_x509_certificate(issuer_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):  # pragma: no cover
        raise DemoCaError(f"{key_file} is not an RSA or EC key")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry["serial"], 16))
            .revocation_date(datetime.fromisoformat(entry["revoked_at"]))
            .add_extension(x509.CRLReason(x509.ReasonFlags(entry["reason"])), critical=False)
            .build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# --- SM2, with the OpenSSL 3 command line ----------------------------------------------


def _openssl(*args: str, env: dict[str, str] | None = None) -> bytes:
    try:
        # the arguments are ours (paths under the demo directory, fixed options)
        result = subprocess.run(  # noqa: S603
            ["openssl", *args],  # noqa: S607 - OpenSSL 3 from PATH, as the tests use it
            capture_output=True,
            check=False,
            timeout=_OPENSSL_TIMEOUT,
            env=None if env is None else {**os.environ, **env},
        )
    except FileNotFoundError:
        raise DemoCaError("the SM2 demo CA needs the openssl command (OpenSSL 3)") from None
    except subprocess.TimeoutExpired:
        raise DemoCaError(f"openssl {args[0]} took longer than {_OPENSSL_TIMEOUT} s") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise DemoCaError(f"openssl {args[0]} failed: {message[0] if message else 'no message'}")
    return result.stdout


class _Sm2Maker:
    def __init__(
        self, spec: CaSpec, directory: Path, urls: Urls, password: str, now: datetime
    ) -> None:
        self.spec = spec
        self.home = directory / spec.name
        self.urls = urls
        self.password = password
        self.now = now

    def make(self) -> dict[str, Any]:
        spec = self.spec
        root_key = self._key("root")
        root = self.home / "root.pem"
        _openssl(
            "req", "-new", "-x509", "-utf8", "-key", str(root_key), "-sm3", "-sigopt", SM2_DISTID,
            "-subj", _openssl_subject(spec.root_cn, spec.organisation), "-days", str(CA_DAYS),
            "-set_serial", str(_serial()), "-config", str(self._extensions("root", ca=True)),
            "-extensions", "v3", "-out", str(root),
        )  # fmt: skip
        certificates, revoked = [], []
        for holder in spec.holders:
            key = self._key(holder.role)
            csr = self.home / f"{holder.role}.csr"
            request_config = self.home / "req.cnf"
            request_config.write_text("[req]\ndistinguished_name=dn\n[dn]\n")
            organisation = holder.name if holder.kind == "organisation" else None
            _openssl(
                "req", "-new", "-utf8", "-key", str(key), "-sm3", "-sigopt", SM2_DISTID,
                "-subj", _openssl_subject(holder.name, organisation),
                "-config", str(request_config), "-out", str(csr),
            )  # fmt: skip
            serial = _serial()
            extensions = self._extensions(holder.role, ca=False, holder=holder)
            cert = self.home / f"{holder.role}.pem"
            _openssl(
                "x509", "-req", "-in", str(csr), "-vfyopt", SM2_DISTID, "-CA", str(root),
                "-CAkey", str(root_key), "-sm3", "-sigopt", SM2_DISTID, "-set_serial", str(serial),
                "-days", str(LEAF_DAYS), "-extfile", str(extensions),
                "-extensions", "v3", "-out", str(cert),
            )  # fmt: skip
            csr.unlink()
            p12 = self.home / f"{holder.role}.p12"
            _openssl(
                "pkcs12", "-export", "-inkey", str(key), "-in", str(cert), "-certfile", str(root),
                "-name", holder.name, "-passout", "env:DEMO_PKCS12_PASSWORD", "-out", str(p12),
                env={"DEMO_PKCS12_PASSWORD": self.password},
            )  # fmt: skip
            p12.chmod(0o600)
            certificates.append(_certificate_entry(spec, holder, serial))
            if holder.role == "revoked":
                revoked.append(_revoked_entry(spec.name, serial, self.now))
        for scratch in self.home.glob("*.cnf"):
            scratch.unlink()
        crls = {spec.name: {"issuer": f"{spec.name}/root.pem", "key": f"{spec.name}/root.key"}}
        return _entry(spec, [], crls, [], certificates, revoked)

    def _key(self, stem: str) -> Path:
        path = self.home / f"{stem}.key"
        pem = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2")
        write_private_file(path, pem)
        return path

    def _extensions(self, stem: str, *, ca: bool, holder: Holder | None = None) -> Path:
        lines = ["[req]", "distinguished_name=dn", "[dn]", "[v3]", "subjectKeyIdentifier=hash"]
        lines.append("authorityKeyIdentifier=keyid")
        if ca:
            lines += ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
        else:
            lines += [
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,nonRepudiation",
                "extendedKeyUsage=clientAuth",
                f"certificatePolicies={self.spec.policy}",
                f"crlDistributionPoints=URI:{self.urls.crl(self.spec.name)}",
            ]
        if holder is not None:
            value = holder.value or holder.identifier
            if not holder.where.startswith("ext:"):  # pragma: no cover - the specs are constants
                raise DemoCaError("the SM2 demo CA writes identities in extensions only")
            lines.append(f"{holder.where.removeprefix('ext:')}=ASN1:UTF8String:{value}")
        path = self.home / f"{stem}.ext.cnf"
        path.write_text("\n".join(lines) + "\n")
        return path


def _openssl_subject(cn: str, organisation: str | None) -> str:
    parts = ["/C=CN"]
    if organisation is not None:
        parts.append(f"/O={_escape(organisation)}")
    parts.append(f"/CN={_escape(cn)}")
    return "".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+").replace("=", "\\=")


def _serial() -> int:
    """A positive 63-bit serial (RFC 5280: at most 20 octets; random, unguessable)."""
    return secrets.randbits(63) | 1 << 62


def _sm2_crl(
    home: Path,
    issuer: Path,
    key: Path,
    revoked: Sequence[dict[str, Any]],
    number: int,
    now: datetime,
) -> bytes:
    """``openssl ca -gencrl`` over an index written here (status R, revocation time and
    reason, serial), so the CRL can be re-signed with the same entries any time."""
    work = home / "crl-work"
    work.mkdir(exist_ok=True, mode=0o700)
    expiry = (now + timedelta(days=LEAF_DAYS)).strftime("%y%m%d%H%M%SZ")
    rows = []
    for entry in revoked:
        when = datetime.fromisoformat(entry["revoked_at"]).strftime("%y%m%d%H%M%SZ")
        serial = f"{int(entry['serial'], 16):X}"
        serial = serial if len(serial) % 2 == 0 else "0" + serial
        rows.append(f"R\t{expiry}\t{when},{entry['reason']}\t{serial}\tunknown\t/CN=revoked\n")
    index = work / "index.txt"
    index.write_text("".join(rows))
    (work / "index.txt.attr").write_text("unique_subject = no\n")
    (work / "crlnumber").write_text(
        f"{number:02X}" if len(f"{number:X}") % 2 == 0 else f"0{number:X}"
    )
    config = work / "ca.cnf"
    config.write_text(
        "\n".join(
            [
                "[ca]", "default_ca = sm2", "[sm2]", f"database = {index}",
                f"crlnumber = {work / 'crlnumber'}", f"certificate = {issuer}",
                f"private_key = {key}",
                "default_md = sm3", f"default_crl_days = {CRL_DAYS}", "crl_extensions = crl_ext",
                "[crl_ext]", "authorityKeyIdentifier = keyid", "",
            ]
        )
    )  # fmt: skip
    out = _openssl("ca", "-config", str(config), "-gencrl", "-sigopt", SM2_DISTID, "-batch")
    return _pem_to_der(out)


def _pem_to_der(pem: bytes) -> bytes:
    try:
        _, _, der = asn1_pem.unarmor(pem)
    except ValueError:
        raise DemoCaError("openssl ca -gencrl wrote no PEM CRL") from None
    return bytes(der)


# --- the manifest entries ---------------------------------------------------------------


def _certificate_entry(spec: CaSpec, holder: Holder, serial: int) -> dict[str, Any]:
    stem = f"{spec.name}/{holder.role}"
    return {
        "ca": spec.name,
        "role": holder.role,
        "name": holder.name,
        "kind": holder.kind,
        "identity_source": holder.where,
        "identifier_masked": identifiers.mask(holder.identifier),
        "serial": f"{serial:x}",
        "certificate": f"{stem}.pem",
        "key": f"{stem}.key",
        "pkcs12": f"{stem}.p12",
        "revoked": holder.role == "revoked",
    }


def _revoked_entry(crl_name: str, serial: int, now: datetime) -> dict[str, Any]:
    return {
        "crl": crl_name,
        "serial": f"{serial:x}",
        "revoked_at": (now - timedelta(hours=1)).isoformat(),
        "reason": REVOCATION_REASON,
    }


def _entry(
    spec: CaSpec,
    intermediates: list[str],
    crls: dict[str, dict[str, str]],
    ocsp: list[dict[str, str]],
    certificates: list[dict[str, Any]],
    revoked: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "key_type": spec.key_type,
        "policy": spec.policy,
        "root": f"{spec.name}/root.pem",
        "intermediates": intermediates,
        "crls": crls,
        "ocsp": ocsp,
        "certificates": certificates,
        "revoked": revoked,
    }
