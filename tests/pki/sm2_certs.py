"""SM2 test PKI made with the OpenSSL 3 command line (GB/T 39786 style: SM2 keys,
SM2-with-SM3 signatures, distinguishing ID ``1234567812345678``): roots, intermediates,
leaves, CRLs, and cross-certificates from an ECDSA/RSA CA (``tests/pki/certs.py``) over
an SM2 CA. Nothing here is made by our own SM2 code, so the tests check ``pki.sm2``
against an independent implementation."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import pem

from tests.pki.certs import Issued

DISTID = "distid:1234567812345678"
_serials = itertools.count(0x5A2000)


@dataclass(frozen=True)
class Sm2Issued:
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> bytes:
        return self.cert_path.read_bytes()

    @property
    def der(self) -> bytes:
        der: bytes = pem.unarmor(self.pem)[2]
        return der

    @property
    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()

    @property
    def serial(self) -> int:
        out = _openssl("x509", "-in", str(self.cert_path), "-noout", "-serial")
        return int(out.decode().strip().split("=", 1)[1], 16)


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=False, timeout=30
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _subject(cn: str, o: str) -> str:
    return f"/C=CN/O={o}/CN={cn}"


def _key(directory: Path, stem: str) -> Path:
    key = directory / f"{stem}.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", str(key))
    return key


def _extensions(
    directory: Path, stem: str, *, ca: bool, crl_url: str | None, extra: Sequence[str] = ()
) -> Path:
    lines = ["[req]", "distinguished_name=dn", "[dn]", "[v3]", "subjectKeyIdentifier=hash"]
    lines.append("authorityKeyIdentifier=keyid")
    if ca:
        lines += ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
    else:
        lines += ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
    if crl_url is not None:
        lines.append(f"crlDistributionPoints=URI:{crl_url}")
    lines += list(extra)
    path = directory / f"{stem}.ext"
    path.write_text("\n".join(lines) + "\n")
    return path


def sm2_root(directory: Path, cn: str = "SM2 Root CA", *, days: int = 365) -> Sm2Issued:
    """A self-signed SM2 root."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = cn.replace(" ", "_")
    key = _key(directory, stem)
    cert = directory / f"{stem}.pem"
    ext = _extensions(directory, stem, ca=True, crl_url=None)
    _openssl(
        "req", "-new", "-x509", "-key", str(key), "-sm3", "-sigopt", DISTID,
        "-subj", _subject(cn, "SM2 Test CA"), "-days", str(days),
        "-set_serial", str(next(_serials)), "-config", str(ext), "-extensions", "v3",
        "-out", str(cert),
    )  # fmt: skip
    return Sm2Issued(cert, key)


def _csr(directory: Path, stem: str, key: Path, subject: str) -> Path:
    csr = directory / f"{stem}.csr"
    config = directory / f"{stem}.req.cnf"
    config.write_text("[req]\ndistinguished_name=dn\n[dn]\n")
    _openssl(
        "req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-subj", subject,
        "-config", str(config), "-out", str(csr),
    )  # fmt: skip
    return csr


def _issue(
    directory: Path,
    stem: str,
    csr: Path,
    issuer_cert: Path,
    issuer_key: Path,
    *,
    sm2_issuer: bool,
    ext: Path,
    days: int,
    distid: str = DISTID,
) -> Path:
    cert = directory / f"{stem}.pem"
    digest = ["-sm3", "-sigopt", distid] if sm2_issuer else ["-sha256"]
    _openssl(
        "x509", "-req", "-in", str(csr), "-vfyopt", DISTID,
        "-CA", str(issuer_cert), "-CAkey", str(issuer_key), *digest,
        "-set_serial", str(next(_serials)), "-days", str(days),
        "-extfile", str(ext), "-extensions", "v3", "-out", str(cert),
    )  # fmt: skip
    return cert


def sm2_ca(
    directory: Path, cn: str, issuer: Sm2Issued, *, crl_url: str | None = None, days: int = 365
) -> Sm2Issued:
    """An SM2 intermediate CA signed by an SM2 CA."""
    stem = cn.replace(" ", "_")
    key = _key(directory, stem)
    csr = _csr(directory, stem, key, _subject(cn, "SM2 Test CA"))
    ext = _extensions(directory, stem, ca=True, crl_url=crl_url)
    cert = _issue(
        directory, stem, csr, issuer.cert_path, issuer.key_path, sm2_issuer=True, ext=ext,
        days=days,
    )  # fmt: skip
    return Sm2Issued(cert, key)


def sm2_leaf(
    directory: Path,
    issuer: Sm2Issued,
    cn: str = "SM2 Person",
    *,
    crl_url: str | None = None,
    days: int = 90,
    distid: str = DISTID,
) -> Sm2Issued:
    """An SM2 end-entity certificate signed by an SM2 CA (with the distinguishing ID
    ``distid``, OpenSSL's ``-sigopt`` form)."""
    stem = cn.replace(" ", "_")
    key = _key(directory, stem)
    csr = _csr(directory, stem, key, _subject(cn, "SM2 Test Holder"))
    ext = _extensions(directory, stem, ca=False, crl_url=crl_url)
    cert = _issue(
        directory, stem, csr, issuer.cert_path, issuer.key_path, sm2_issuer=True, ext=ext,
        days=days, distid=distid,
    )  # fmt: skip
    return Sm2Issued(cert, key)


def cross_certify(
    directory: Path, issuer: Issued, subject: Sm2Issued, *, policies: Sequence[str] = ()
) -> bytes:
    """A cross-certificate from an ECDSA/RSA CA (``tests/pki/certs.py``) over the SM2
    CA ``subject``: the SM2 CA's name and SM2 key, signed with SHA-256 by ``issuer``.
    Returns DER."""
    stem = f"cross_{subject.cert_path.stem}"
    issuer_cert = directory / f"{stem}.issuer.pem"
    issuer_key = directory / f"{stem}.issuer.key"
    issuer_cert.write_bytes(issuer.pem)
    issuer_key.write_bytes(issuer.key_pem)
    subject_line = _openssl(
        "x509", "-in", str(subject.cert_path), "-noout", "-subject", "-nameopt", "compat"
    )
    name = subject_line.decode().strip().removeprefix("subject=")
    csr = _csr(directory, stem, subject.key_path, name)
    extra = [f"certificatePolicies={','.join(policies)}"] if policies else []
    ext = _extensions(directory, stem, ca=True, crl_url=None, extra=extra)
    cert = _issue(
        directory, stem, csr, issuer_cert, issuer_key, sm2_issuer=False, ext=ext, days=365
    )
    der: bytes = pem.unarmor(cert.read_bytes())[2]
    return der


def sm2_crl(directory: Path, issuer: Sm2Issued, revoked: Sequence[Sm2Issued] = ()) -> bytes:
    """A CRL signed by the SM2 CA ``issuer`` (``openssl ca -gencrl``) listing
    ``revoked`` (reason keyCompromise). Returns DER."""
    stem = f"crl_{issuer.cert_path.stem}"
    work = directory / stem
    work.mkdir(parents=True, exist_ok=True)
    index = work / "index.txt"
    index.write_text("")
    (work / "crlnumber").write_text("01\n")
    config = work / "ca.cnf"
    config.write_text(
        "\n".join(
            [
                "[ca]",
                "default_ca = sm2",
                "[sm2]",
                f"database = {index}",
                f"crlnumber = {work / 'crlnumber'}",
                f"certificate = {issuer.cert_path}",
                f"private_key = {issuer.key_path}",
                "default_md = sm3",
                "default_crl_days = 7",
                "crl_extensions = crl_ext",
                "[crl_ext]",
                "authorityKeyIdentifier = keyid",
                "",
            ]
        )
    )
    for holder in revoked:
        _openssl(
            "ca", "-config", str(config), "-revoke", str(holder.cert_path),
            "-crl_reason", "keyCompromise", "-batch",
        )  # fmt: skip
    out = work / "crl.pem"
    _openssl("ca", "-config", str(config), "-gencrl", "-sigopt", DISTID, "-batch", "-out", str(out))
    der: bytes = pem.unarmor(out.read_bytes())[2]
    return der
