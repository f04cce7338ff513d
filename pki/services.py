"""The bridge CA's operations: create the bridge once, register local CAs, issue and
revoke cross-certificates, sign the bridge's CRL.

A local CA is trusted only through a live cross-certificate: ``import-ca`` registers it
(status ``imported``, not trusted yet), ``cross-certify`` issues the bridge -> root
cross-certificate (``cross_certified``), ``revoke-cross-cert`` revokes it (``revoked``:
cut off in every revocation mode, and listed on the bridge's CRL). Every change is
audited and re-signs the CRL when it changes what the CRL says.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.core.audit.services import AuditLog
from idp.core.clock import Clock
from pki import builder
from pki.keys import BridgeKey, BridgeKeyMissing, FileBridgeKey
from pki.models import BridgeCa, CaStatus, CrossCertificate, LocalCa

# A UUID-derived OID (ITU-T X.667: 2.25.<UUID as an integer>), unique without
# registration: the platform's one policy unless `init-bridge --policy` names others.
DEFAULT_POLICY = "2.25.190906420163063373713153101645960441571"
DEFAULT_SUBJECT = "CN=City Identity Bridge CA,O=Online Government Service Hall,C=CN"
BRIDGE_VALID_DAYS = 20 * 365
CRL_VALID_DAYS = 7
CRL_PATH = "/pki/bridge.crl"
REVOCATION_MODES = ("off", "soft", "hard", "require")
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_CA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class PkiError(Exception):
    """The operation is refused; the message says why (one line)."""


@dataclass(frozen=True)
class CaRequest:
    """What ``idp pki import-ca`` registers."""

    name: str
    root: bytes  # DER
    intermediates: tuple[bytes, ...]
    policy_map: tuple[tuple[str, str], ...]  # (local OID, platform OID)
    identity_rules: tuple[str, ...]  # KIND:SOURCE, checked by the caller
    crl_urls: tuple[str, ...]
    ocsp_url: str | None
    revocation: str


def check_oid(value: str) -> str:
    value = value.strip()
    if not _OID.fullmatch(value):
        raise PkiError(f"{value!r} is not an object identifier (dotted digits, e.g. 1.2.3)")
    return value


def parse_dn(value: str) -> x509.Name:
    """An RFC 4514 distinguished name (``CN=...,O=...,C=CN``)."""
    try:
        name = x509.Name.from_rfc4514_string(value)
    except ValueError as exc:
        raise PkiError(f"{value!r} is not an RFC 4514 distinguished name: {exc}") from None
    if not name.rdns:
        raise PkiError("the distinguished name is empty")
    return name


def certificate_subject(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


class PkiService:
    """The bridge and the registered CAs, in the request's (or command's) session."""

    def __init__(
        self,
        session: Session,
        *,
        data_dir: Path,
        crl_url: str,
        clock: Clock,
        audit: AuditLog,
        key: BridgeKey | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change``: called when the bridge, a CA or a cross-certificate changed
        (the app's trust store then asks the database again)."""
        self._session = session
        self._on_change = on_change or (lambda: None)
        self._data_dir = data_dir
        self.crl_url = crl_url
        self._clock = clock
        self._audit = audit
        self._key = key

    # -- reading ----------------------------------------------------------------------------

    def bridge(self) -> BridgeCa | None:
        return self._session.scalars(select(BridgeCa).limit(1)).first()

    def require_bridge(self) -> BridgeCa:
        bridge = self.bridge()
        if bridge is None:
            raise PkiError("there is no bridge CA yet; run `idp pki init-bridge`")
        return bridge

    def _locked_bridge(self) -> BridgeCa:
        """The bridge row, locked until the transaction ends (the CRL number goes up by
        one per CRL, whichever worker signs it)."""
        bridge = self._session.scalars(select(BridgeCa).limit(1).with_for_update()).first()
        if bridge is None:
            raise PkiError("there is no bridge CA yet; run `idp pki init-bridge`")
        return bridge

    def cas(self) -> list[LocalCa]:
        return list(self._session.scalars(select(LocalCa).order_by(LocalCa.name)))

    def find_ca(self, name: str) -> LocalCa | None:
        return self._session.scalars(select(LocalCa).where(LocalCa.name == name)).first()

    def require_ca(self, name: str) -> LocalCa:
        ca = self.find_ca(name)
        if ca is None:
            raise PkiError(f"no local CA named {name!r} is registered")
        return ca

    @staticmethod
    def live_cross_certificate(ca: LocalCa) -> CrossCertificate | None:
        live = [cert for cert in ca.cross_certificates if cert.revoked_at is None]
        return live[-1] if live else None

    # -- the bridge -------------------------------------------------------------------------

    def init_bridge(self, subject: str | None, policies: Sequence[str]) -> BridgeCa:
        if self.bridge() is not None:
            raise PkiError("the bridge CA exists already (it is created once)")
        name = parse_dn(subject or DEFAULT_SUBJECT)
        oids = list(dict.fromkeys(check_oid(oid) for oid in policies)) or [DEFAULT_POLICY]
        try:
            key = FileBridgeKey.create(self._data_dir)
        except FileExistsError:
            raise PkiError(
                f"a bridge key file exists already under {self._data_dir} but no bridge "
                "record does; move the file away to create a new bridge"
            ) from None
        now = self._now()
        certificate = builder.bridge_certificate(
            key,
            subject=name.public_bytes(),
            policies=oids,
            crl_url=self.crl_url,
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(days=BRIDGE_VALID_DAYS),
        )
        bridge = BridgeCa(
            subject=name.rfc4514_string(),
            certificate_der=certificate,
            policies=oids,
            key_ref=key.ref,
            crl_number=0,
            created_at=now,
        )
        self._session.add(bridge)
        self._key = key
        self._sign_crl(bridge)
        self._on_change()
        self._audit.record(
            "pki.bridge_created", subject=f"ca:{bridge.subject}", details={"policies": oids}
        )
        self._session.flush()
        return bridge

    def key(self, bridge: BridgeCa) -> BridgeKey:
        if self._key is None:
            try:
                self._key = FileBridgeKey.load(self._data_dir, bridge.key_ref)
            except BridgeKeyMissing as exc:
                raise PkiError(str(exc)) from None
        return self._key

    # -- local CAs --------------------------------------------------------------------------

    def import_ca(self, request: CaRequest) -> LocalCa:
        bridge = self.require_bridge()
        if not _CA_NAME.fullmatch(request.name):
            raise PkiError(
                "a CA name is 1-64 lower-case letters, digits, '-' or '_', starting with a "
                "letter or digit"
            )
        if self.find_ca(request.name) is not None:
            raise PkiError(f"a local CA named {request.name!r} is registered already")
        if request.revocation not in REVOCATION_MODES:
            raise PkiError(f"--revocation must be one of {', '.join(REVOCATION_MODES)}")
        root = x509.load_der_x509_certificate(request.root)
        _require_ca_certificate(root, "--root")
        if root.subject != root.issuer:
            raise PkiError("--root must be the CA's self-signed root certificate")
        for der in request.intermediates:
            _require_ca_certificate(x509.load_der_x509_certificate(der), "--intermediate")
        if not request.policy_map:
            raise PkiError("at least one --policy-map LOCAL_OID=PLATFORM_OID is required")
        platform = set(bridge.policies)
        for local, mapped in request.policy_map:
            check_oid(local)
            check_oid(mapped)
            if mapped not in platform:
                raise PkiError(
                    f"{mapped} is not one of the platform's policies ({', '.join(bridge.policies)})"
                )
        if len(set(request.policy_map)) != len(request.policy_map):
            raise PkiError("a --policy-map pair is given twice")
        known = {ca.root_der for ca in self.cas()}
        if request.root in known:
            raise PkiError("this root certificate is registered already under another name")
        ca = LocalCa(
            name=request.name,
            subject=root.subject.rfc4514_string(),
            root_der=request.root,
            intermediates=[base64.b64encode(der).decode() for der in request.intermediates],
            policy_map=[[local, mapped] for local, mapped in request.policy_map],
            identity_rules=list(request.identity_rules),
            crl_urls=list(request.crl_urls),
            ocsp_url=request.ocsp_url,
            revocation=request.revocation,
            status=CaStatus.IMPORTED,
            created_at=self._now(),
        )
        self._session.add(ca)
        try:
            self._session.flush()
        except IntegrityError:
            raise PkiError(f"a local CA named {request.name!r} is registered already") from None
        self._on_change()
        self._audit.record(
            "pki.ca_imported",
            subject=f"ca:{ca.name}",
            details={
                "policy_map": ca.policy_map,
                "revocation": ca.revocation,
                "intermediates": len(ca.intermediates),
            },
        )
        return ca

    def cross_certify(self, name: str, constraints: builder.CrossConstraints) -> CrossCertificate:
        bridge = self.require_bridge()
        ca = self.require_ca(name)
        if self.live_cross_certificate(ca) is not None:
            raise PkiError(
                f"{name!r} holds a live cross-certificate; revoke it first "
                "(`idp pki revoke-cross-cert`) to issue another"
            )
        for value in (
            constraints.require_explicit_policy,
            constraints.inhibit_policy_mapping,
            constraints.inhibit_any_policy,
        ):
            if value is not None and not 0 <= value <= 64:
                raise PkiError("a skip count is a number from 0 to 64")
        root = x509.load_der_x509_certificate(ca.root_der)
        bridge_cert = x509.load_der_x509_certificate(bridge.certificate_der)
        now = self._now()
        not_after = min(root.not_valid_after_utc, bridge_cert.not_valid_after_utc)
        if not_after <= now:
            raise PkiError(f"the root of {name!r} has expired; import its new root")
        serial = builder.new_serial()
        der = builder.cross_certificate(
            self.key(bridge),
            bridge=bridge.certificate_der,
            local_root=ca.root_der,
            serial=serial,
            policy_map=[(local, mapped) for local, mapped in ca.policy_map],
            constraints=constraints,
            crl_url=self.crl_url,
            not_before=now - timedelta(minutes=5),
            not_after=not_after,
        )
        cross = CrossCertificate(
            local_ca=ca,
            serial=f"{serial:x}",
            certificate_der=der,
            issued_at=now,
            not_after=not_after,
        )
        self._session.add(cross)
        ca.status = CaStatus.CROSS_CERTIFIED
        ca.updated_at = now
        self._session.flush()
        self._on_change()
        self._audit.record(
            "pki.cross_certified",
            subject=f"ca:{ca.name}",
            details={
                "serial": cross.serial,
                "not_after": not_after.isoformat(),
                "require_explicit_policy": constraints.require_explicit_policy,
                "inhibit_policy_mapping": constraints.inhibit_policy_mapping,
                "inhibit_any_policy": constraints.inhibit_any_policy,
                "permitted_subtrees": len(constraints.permitted_subtrees),
            },
        )
        return cross

    def revoke_cross_cert(
        self, name: str, reason: str = "cessation_of_operation"
    ) -> CrossCertificate:
        bridge = self._locked_bridge()
        ca = self.require_ca(name)
        cross = self.live_cross_certificate(ca)
        if cross is None:
            raise PkiError(f"{name!r} holds no live cross-certificate")
        now = self._now()
        cross.revoked_at = now
        cross.revocation_reason = reason
        ca.status = CaStatus.REVOKED
        ca.updated_at = now
        self._session.flush()
        self._sign_crl(bridge)
        self._on_change()
        self._audit.record(
            "pki.cross_cert_revoked",
            subject=f"ca:{ca.name}",
            details={"serial": cross.serial, "reason": reason},
        )
        return cross

    # -- the bridge's CRL -------------------------------------------------------------------

    def crl(self) -> bytes:
        """The bridge's current CRL (DER), re-signed when it is due (a day before its
        nextUpdate) so that the one served is never stale."""
        bridge = self.require_bridge()
        if self._crl_due(bridge):
            bridge = self._locked_bridge()
            self._session.refresh(bridge)
            if self._crl_due(bridge):  # another worker may have signed it meanwhile
                self._sign_crl(bridge)
                self._session.flush()
        assert bridge.crl_der is not None  # just signed
        return bridge.crl_der

    def _crl_due(self, bridge: BridgeCa) -> bool:
        if bridge.crl_der is None or bridge.crl_next_update is None:
            return True
        return bridge.crl_next_update - timedelta(days=1) <= self._now()

    def revoked_cross_certificates(self) -> list[CrossCertificate]:
        query = select(CrossCertificate).where(CrossCertificate.revoked_at.is_not(None))
        return list(self._session.scalars(query.order_by(CrossCertificate.id)))

    def _sign_crl(self, bridge: BridgeCa) -> None:
        now = self._now()
        bridge.crl_number = (bridge.crl_number or 0) + 1
        entries = [
            builder.RevokedEntry(int(cert.serial, 16), cert.revoked_at, cert.revocation_reason)
            for cert in self.revoked_cross_certificates()
            if cert.revoked_at is not None
        ]
        next_update = now + timedelta(days=CRL_VALID_DAYS)
        bridge.crl_der = builder.bridge_crl(
            self.key(bridge),
            bridge=bridge.certificate_der,
            number=bridge.crl_number,
            revoked=entries,
            this_update=now - timedelta(minutes=5),
            next_update=next_update,
        )
        bridge.crl_next_update = next_update

    def _now(self) -> datetime:
        return self._clock.now().replace(microsecond=0)


def _require_ca_certificate(certificate: x509.Certificate, option: str) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise PkiError(f"{option}: the certificate is not a CA (no basicConstraints)") from None
    if not constraints.value.ca:
        raise PkiError(f"{option}: the certificate is not a CA (basicConstraints cA is false)")
