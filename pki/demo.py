"""The demo PKI: three local CAs registered with the bridge, so that ``idp demo`` shows
certificate sign-in end to end (issue 11, part 5). DEMO ONLY: its keys lie unencrypted
in the data directory and its PKCS#12 password is printed.

``prepare`` makes (or re-uses) the CA files under ``<data_dir>/pki/demo/``: an RSA-2048
CA with a root and an issuing intermediate, an ECDSA P-256 CA and an SM2 CA, each with
its own policy OID, identity rules and revocation mode, a citizen certificate, an
enterprise certificate and a revoked one (on its CA's CRL, and answered "revoked" by
OCSP). The first citizen certificate names ``DEMO_PERSON``, whom the demo registry
knows. The files are made in a scratch directory and moved into place at the end, so a
directory either holds a whole demo PKI (``manifest.json``) or nothing: a second run
re-uses it and only re-signs the CRLs. The certificates name the address of the CA
services (CRL distribution points, OCSP), so a directory made for one address is not
re-used for another.

``register`` creates the bridge if there is none and imports and cross-certifies the
CAs that are not registered yet (mapping each CA's policy to the platform's default
policy); a CA registered already with the same root is left as it is, a revoked
cross-certificate is not re-issued behind the operator's back, and a name registered
with another root is refused.

``serve_demo_ca_services`` is the local CAs' web server: ``/crl/NAME.crl`` and the OCSP
responders at ``/ocsp/NAME`` (``pki.ocsp_responder``). The SM2 CA has no responder
(cryptography cannot sign SM2): it publishes a CRL only.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from accounts.demo_people import DEMO_PERSON
from idp.core.clock import Clock, SystemClock
from idp.core.keys import write_private_file
from pki.builder import CrossConstraints
from pki.demo_certs import (
    CaSpec,
    DemoCaError,
    Holder,
    Urls,
    credit_code,
    make_ca_files,
    resident_id,
    sign_crl,
)
from pki.identity import (
    GMT0015_CREDIT_CODE_2023,
    GMT0015_IDENTITY_NUMBER,
    GMT0015_ORGANIZATION_CODE,
)
from pki.models import CaStatus
from pki.ocsp_responder import OcspResponder, handle_wsgi
from pki.services import DEFAULT_POLICY, CaRequest, PkiError, PkiService

WARNING: Final = (
    "THIS IS A DEMO PKI: its CA keys lie unencrypted on this disk and its PKCS#12 "
    "password is printed. Never register it on a production platform."
)
DEMO_SUBDIRECTORY: Final = Path("pki") / "demo"
MANIFEST: Final = "manifest.json"
MANIFEST_VERSION: Final = 1
SERVICES_PORT_OFFSET: Final = 10  # the CA services listen on the issuer's port + 10
OCSP_VALIDITY: Final = timedelta(hours=1)

# UUID-derived OIDs (ITU-T X.667), one per demo CA: unique without registration
RSA_POLICY: Final = "2.25.297848240196810826676571461805481664051"
EC_POLICY: Final = "2.25.248511811893019047994707163820070383247"
SM2_POLICY: Final = "2.25.100787467080502611935511232253736784215"

_EXT_ID = f"ext:{GMT0015_IDENTITY_NUMBER}"
# Revocation modes: the ECDSA CA is "hard" (a sign-in fails when neither its OCSP
# responder nor its CRL can be used: stop the CA services to see it); the RSA CA, whose
# citizen is the demo registry's person, and the SM2 CA are "soft".
DEMO_CAS: Final = (
    CaSpec(
        name="demo-rsa",
        key_type="rsa",
        organisation="Demo RSA CA (DEMO ONLY)",
        root_cn="Demo RSA Root CA",
        issuing_cn="Demo RSA Issuing CA",
        policy=RSA_POLICY,
        identity_rules=(f"person:{_EXT_ID}", f"organisation:ext:{GMT0015_ORGANIZATION_CODE}"),
        revocation="soft",
        delegated_ocsp=True,
        holders=(
            Holder("citizen", DEMO_PERSON[0], "person", DEMO_PERSON[1], _EXT_ID),
            Holder(
                "enterprise",
                "东莞示例科技有限公司",
                "organisation",
                credit_code("441900", "MA4X2B7C"),
                f"ext:{GMT0015_ORGANIZATION_CODE}",
            ),
            Holder("revoked", "李四", "person", resident_id("441900", "19850315", "123"), _EXT_ID),
        ),
    ),
    CaSpec(
        name="demo-ec",
        key_type="ec",
        organisation="Demo ECDSA CA (DEMO ONLY)",
        root_cn="Demo ECDSA CA",
        issuing_cn=None,
        policy=EC_POLICY,
        identity_rules=(
            "person:subject:serialNumber",
            "organisation:subject:organizationIdentifier",
        ),
        revocation="hard",
        delegated_ocsp=False,
        holders=(
            Holder(
                "citizen",
                "张伟",
                "person",
                resident_id("441900", "19900708", "215"),
                "subject:serialNumber",
            ),
            Holder(
                "enterprise",
                "东莞示范贸易有限公司",
                "organisation",
                credit_code("441900", "MA5L8K3D"),
                "subject:organizationIdentifier",
                value="NTRCN-" + credit_code("441900", "MA5L8K3D"),
            ),
            Holder(
                "revoked",
                "赵六",
                "person",
                resident_id("441900", "19780101", "338"),
                "subject:serialNumber",
            ),
        ),
    ),
    CaSpec(
        name="demo-sm2",
        key_type="sm2",
        organisation="Demo SM2 CA (DEMO ONLY)",
        root_cn="Demo SM2 CA",
        issuing_cn=None,
        policy=SM2_POLICY,
        identity_rules=(f"person:{_EXT_ID}", f"organisation:ext:{GMT0015_CREDIT_CODE_2023}"),
        revocation="soft",
        delegated_ocsp=False,
        holders=(
            Holder("citizen", "陈静", "person", resident_id("441900", "19950520", "046"), _EXT_ID),
            Holder(
                "enterprise",
                "东莞示例制造有限公司",
                "organisation",
                credit_code("441900", "MA6P9T2E"),
                f"ext:{GMT0015_CREDIT_CODE_2023}",
            ),
            Holder("revoked", "孙七", "person", resident_id("441900", "19820909", "457"), _EXT_ID),
        ),
    ),
)
_CA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class DemoPkiError(Exception):
    """The demo PKI cannot be made, re-used or registered (one line saying why)."""


def default_directory(data_dir: Path) -> Path:
    return data_dir / DEMO_SUBDIRECTORY


def default_services_url(issuer: str, port: int | None = None) -> str:
    """``http://<issuer's host>:<port>``; the port defaults to the issuer's + 10."""
    parts = urlsplit(issuer)
    host = parts.hostname or "127.0.0.1"
    if port is None:
        port = (parts.port or (443 if parts.scheme == "https" else 80)) + SERVICES_PORT_OFFSET
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


# --- the files --------------------------------------------------------------------------


@dataclass
class DemoPki:
    """A demo PKI directory and its manifest (paths in it are relative to it)."""

    directory: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> DemoPki:
        path = directory / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DemoPkiError(f"{directory} holds no demo PKI ({MANIFEST} is missing)") from None
        except (OSError, ValueError) as exc:
            raise DemoPkiError(f"{path} cannot be read: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
            raise DemoPkiError(f"{path} is not a demo PKI manifest of this version")
        pki = cls(directory, manifest)
        missing = [name for name in pki.files() if not (directory / name).is_file()]
        if missing:
            raise DemoPkiError(
                f"the demo PKI in {directory} is incomplete ({missing[0]} is missing)"
            )
        return pki

    @property
    def services_url(self) -> str:
        return str(self.manifest["services_url"])

    @property
    def password(self) -> str:
        return str(self.manifest["pkcs12_password"])

    @property
    def cas(self) -> list[dict[str, Any]]:
        return list(self.manifest["cas"])

    def path(self, relative: str) -> Path:
        return self.directory / relative

    def files(self) -> Iterable[str]:
        for ca in self.manifest["cas"]:
            yield ca["root"]
            yield from ca["intermediates"]
            for crl in ca["crls"].values():
                yield crl["issuer"]
                yield crl["key"]
            for certificate in ca["certificates"]:
                yield from (certificate["certificate"], certificate["key"], certificate["pkcs12"])

    def crl_file(self, name: str) -> Path | None:
        if not _CA_NAME.fullmatch(name):
            return None
        for ca in self.cas:
            if name in ca["crls"]:
                return self.directory / "crl" / f"{name}.crl"
        return None

    def responders(self, clock: Clock | None = None) -> dict[str, list[OcspResponder]]:
        """The OCSP responders of each CA that has them, by CA name."""
        found: dict[str, list[OcspResponder]] = {}
        for ca in self.cas:
            if ca["ocsp"]:
                found[ca["name"]] = [self._responder(ca, entry, clock) for entry in ca["ocsp"]]
        return found

    def _responder(
        self, ca: dict[str, Any], entry: dict[str, str], clock: Clock | None
    ) -> OcspResponder:
        issuer = x509.load_pem_x509_certificate(self.path(entry["issuer"]).read_bytes())
        signer = entry.get("signer")
        signer_der = None
        if signer is not None:
            signer_der = x509.load_pem_x509_certificate(
                self.path(signer).read_bytes()
            ).public_bytes(serialization.Encoding.DER)
        key = serialization.load_pem_private_key(
            self.path(entry.get("signer_key", entry["key"])).read_bytes(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise DemoPkiError(f"{ca['name']}: the OCSP signing key is not RSA or EC")
        crl_names = [name for name, crl in ca["crls"].items() if crl["issuer"] == entry["issuer"]]
        revoked = {
            int(item["serial"], 16): (
                datetime.fromisoformat(item["revoked_at"]),
                str(item["reason"]),
            )
            for item in ca["revoked"]
            if item["crl"] in crl_names
        }
        return OcspResponder(
            issuer.public_bytes(serialization.Encoding.DER),
            key,
            signer_der,
            status=revoked.get,
            validity=OCSP_VALIDITY,
            clock=clock,
        )

    def refresh_crls(self, now: datetime) -> None:
        """Re-sign every CRL (a new number, valid for a week from now)."""
        number = int(self.manifest.get("crl_number", 1)) + 1
        for ca in self.cas:
            for name in ca["crls"]:
                sign_crl(self.directory, ca, name, number=number, now=now)
        self.manifest["crl_number"] = number
        _write_manifest(self.directory, self.manifest, replace=True)


def prepare(
    directory: Path, services_url: str, *, clock: Clock | None = None
) -> tuple[DemoPki, bool]:
    """The demo PKI in ``directory``: re-used (CRLs re-signed) when it is there, else
    made. Returns it and whether it was made now."""
    now = (clock or SystemClock()).now().replace(microsecond=0)
    if (directory / MANIFEST).exists():
        pki = DemoPki.load(directory)
        if pki.services_url != services_url:
            raise DemoPkiError(
                f"the demo PKI in {directory} was made for CA services at {pki.services_url}, "
                f"not {services_url} (its certificates name that address); use that address, "
                "or another directory (--out)"
            )
        try:
            pki.refresh_crls(now)
        except (DemoCaError, OSError) as exc:
            raise DemoPkiError(f"the demo CRLs cannot be re-signed: {exc}") from None
        return pki, False
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DemoPkiError(f"{directory} exists and holds no demo PKI; remove it or choose --out")
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = directory.parent / f".{directory.name}.{secrets.token_hex(4)}.partial"
    try:
        scratch.mkdir(mode=0o700)
        manifest = _make(scratch, services_url, now)
        if directory.exists():
            directory.rmdir()  # empty, checked above
        scratch.rename(directory)
    except (DemoCaError, OSError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if (directory / MANIFEST).exists():  # another run made it meanwhile
            return prepare(directory, services_url, clock=clock)
        raise DemoPkiError(f"the demo PKI cannot be made in {directory}: {exc}") from None
    return DemoPki(directory, manifest), True


def _make(directory: Path, services_url: str, now: datetime) -> dict[str, Any]:
    urls = Urls(services_url)
    password = "-".join(secrets.token_hex(3) for _ in range(3))
    cas = [make_ca_files(spec, directory, urls, password, now) for spec in DEMO_CAS]
    (directory / "README.txt").write_text(
        f"{WARNING}\n\nMade by `idp pki demo` on {now.isoformat()} for CA services at "
        f"{services_url}.\nSee {MANIFEST} for what is here (it holds the PKCS#12 password).\n",
        encoding="utf-8",
    )
    manifest = {
        "version": MANIFEST_VERSION,
        "warning": WARNING,
        "created_at": now.isoformat(),
        "services_url": services_url,
        "pkcs12_password": password,
        "crl_number": 1,
        "cas": cas,
    }
    _write_manifest(directory, manifest, replace=False)
    return manifest


def _write_manifest(directory: Path, manifest: dict[str, Any], *, replace: bool) -> None:
    """The manifest holds the PKCS#12 password: owner-only, written atomically."""
    data = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode()
    target = directory / MANIFEST
    if not replace:
        write_private_file(target, data)
        return
    temporary = directory / f".{MANIFEST}.{secrets.token_hex(4)}"
    write_private_file(temporary, data)
    temporary.replace(target)


# --- registration -----------------------------------------------------------------------


def register(
    service: PkiService, pki: DemoPki, *, commit: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Register the demo CAs with the platform (the caller commits); what was done.
    ``commit`` is called once a new bridge is made: its key file is on disk by then,
    and a bridge record rolled back with a later failure would leave the key orphaned
    (``init-bridge`` then refuses to run)."""
    bridge = service.bridge()
    bridge_created = bridge is None
    if bridge is None:
        bridge = service.init_bridge(None, ())
        if commit is not None:
            commit()
    platform = DEFAULT_POLICY if DEFAULT_POLICY in bridge.policies else bridge.policies[0]
    (pki.directory / "bridge.pem").write_bytes(_pem(bridge.certificate_der))
    cas = []
    for spec, entry in zip(DEMO_CAS, pki.cas, strict=True):
        cas.append(_register_ca(service, pki, spec, entry, platform))
    return {
        "bridge": {
            "subject": bridge.subject,
            "created": bridge_created,
            "certificate": str(pki.directory / "bridge.pem"),
            "platform_policy": platform,
        },
        "cas": cas,
    }


def _register_ca(
    service: PkiService, pki: DemoPki, spec: CaSpec, entry: dict[str, Any], platform: str
) -> dict[str, Any]:
    root = _der(pki.path(entry["root"]))
    intermediates = tuple(_der(pki.path(p)) for p in entry["intermediates"])
    urls = Urls(pki.services_url)
    crl_urls = tuple(urls.crl(name) for name in entry["crls"])
    ocsp_url = urls.ocsp(spec.name) if entry["ocsp"] else None
    ca = service.find_ca(spec.name)
    if ca is None:
        ca = service.import_ca(
            CaRequest(
                name=spec.name,
                root=root,
                intermediates=intermediates,
                policy_map=((spec.policy, platform),),
                identity_rules=spec.identity_rules,
                crl_urls=crl_urls,
                ocsp_url=ocsp_url,
                revocation=spec.revocation,
            )
        )
        registration = "imported"
    elif ca.root_der != root:
        raise DemoPkiError(
            f"a local CA named {spec.name!r} is registered already with another root (an "
            f"earlier demo PKI?); revoke its cross-certificate and use another --out, or "
            f"start from a fresh data directory"
        )
    else:
        registration = "registered already"
    if service.live_cross_certificate(ca) is not None:
        cross = "live already"
    elif ca.status is CaStatus.REVOKED:
        cross = "revoked at the bridge (left so; `idp pki cross-certify` re-issues it)"
    else:
        service.cross_certify(spec.name, CrossConstraints())
        cross = "issued"
    live = service.live_cross_certificate(ca)
    cross_file = None
    if live is not None:
        cross_file = pki.directory / spec.name / "cross-certificate.pem"
        cross_file.write_bytes(_pem(live.certificate_der))
    return {
        "name": spec.name,
        "key_type": spec.key_type,
        "local_policy": spec.policy,
        "platform_policy": platform,
        "identity_rules": list(spec.identity_rules),
        "revocation": spec.revocation,
        "crl_urls": list(crl_urls),
        "ocsp_url": ocsp_url,
        "registration": registration,
        "cross_certificate": cross,
        "root": str(pki.path(entry["root"])),
        "intermediates": [str(pki.path(p)) for p in entry["intermediates"]],
        "cross_certificate_file": None if cross_file is None else str(cross_file),
    }


def run(
    service: PkiService,
    directory: Path,
    services_url: str,
    *,
    clock: Clock | None = None,
    commit: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``idp pki demo``: prepare the files, register them; the report (JSON-able).
    The caller commits (or rolls back on an error); ``commit`` as for ``register``."""
    pki, made = prepare(directory, services_url, clock=clock)
    try:
        registered = register(service, pki, commit=commit)
    except PkiError as exc:
        raise DemoPkiError(str(exc)) from None
    files = ("certificate", "key", "pkcs12")
    certificates = [
        {**certificate, **{key: str(pki.path(certificate[key])) for key in files}}
        for ca in pki.cas
        for certificate in ca["certificates"]
    ]
    return {
        "demo": True,
        "warning": WARNING,
        "directory": str(directory),
        "files": "created" if made else "reused",
        "services_url": pki.services_url,
        "pkcs12_password": pki.password,
        **registered,
        "certificates": certificates,
    }


def _der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


# --- the CA services --------------------------------------------------------------------


WsgiStart = Callable[..., object]


class DemoCaServices:
    """WSGI: the demo CAs' CRLs (read from disk per request, so re-signed ones are
    served) and OCSP responders."""

    def __init__(self, pki: DemoPki, *, clock: Clock | None = None) -> None:
        self.pki = pki
        self.responders = pki.responders(clock)

    def __call__(self, environ: dict[str, object], start_response: WsgiStart) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/")
        status, content_type, body = self._route(environ, path)
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def _route(self, environ: dict[str, object], path: str) -> tuple[str, str, bytes]:
        if path.startswith("/crl/") and path.endswith(".crl"):
            crl = self.pki.crl_file(path[len("/crl/") : -len(".crl")])
            if crl is not None and crl.is_file():
                return "200 OK", "application/pkix-crl", crl.read_bytes()
        elif path.startswith("/ocsp/"):
            name, _, tail = path[len("/ocsp/") :].partition("/")
            responders = self.responders.get(name)
            if responders is not None:
                answer = handle_wsgi(responders, environ, tail)
                return (
                    f"{answer.status} {'OK' if answer.status == 200 else 'Error'}",
                    answer.content_type,
                    answer.body,
                )
        elif path == "/":
            lines = [WARNING, ""]
            for ca in self.pki.cas:
                lines.extend(f"CRL  /crl/{crl}.crl" for crl in ca["crls"])
                if ca["name"] in self.responders:
                    lines.append(f"OCSP /ocsp/{ca['name']}")
            return "200 OK", "text/plain; charset=utf-8", ("\n".join(lines) + "\n").encode()
        return "404 Not Found", "text/plain", b"not found\n"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        del code, size  # the demo's console is for the person trying it


def make_demo_ca_server(directory: Path, host: str, port: int) -> BaseWSGIServer:
    """A threaded HTTP server for the demo CA services in ``directory`` (port 0: a free
    one, see ``server.port``); the caller runs ``serve_forever`` and ``shutdown``."""
    app = DemoCaServices(DemoPki.load(directory))
    return make_server(host, port, app, threaded=True, request_handler=_QuietHandler)


def serve_demo_ca_services(directory: Path, host: str, port: int) -> None:
    """Serve the demo CA services until the process ends (``idp demo`` runs it in a
    daemon process)."""
    server = make_demo_ca_server(directory, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
