"""The platform's trust store: the bridge CA as the one anchor, the registered local CAs
reached through their live cross-certificates, the platform's policies required, and
each CA's revocation settings.

Validation through the store is two steps:

1. RFC 5280 path validation (``pki.validation``, pyhanko underneath) from the leaf to
   the bridge, with the platform's policies as the user-initial-policy-set and an
   explicit policy required, so that a path is valid only if the cross-certificate's
   ``policyMappings`` carried the local policy into the platform's domain. Revocation is
   off in this step.
2. Revocation of each certificate the local CA issued in that path (its intermediates
   and the leaf), by the CA's mode (or the one asked for), through a
   ``pki.revocation.RevocationCheckerer`` (CRLs cached until nextUpdate, OCSP with a
   nonce). The cross-certificates themselves are checked against the bridge's own
   revocation state, held in the database: a revoked one is simply not in the store, so
   a revoked cross-certificate cuts its CA off in every mode, ``off`` included, and
   never needs the network.

The store is a snapshot of the database rows, rebuilt when they change (a cheap
aggregate query per validation tells); a snapshot indexes the CA certificates by
subject, and a validation hands pyhanko only the certificates whose names can chain
from the leaf to the bridge, so its cost does not grow with the number of CAs.

Refusals name the CA where that helps the operator (an unregistered issuer, a CA that is
only imported, a cut-off CA) and never the leaf's subject.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from asn1crypto import x509
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from pki.models import BridgeCa, CaStatus, CrossCertificate, LocalCa
from pki.reasons import Reason
from pki.reasons import certificate as named_certificate
from pki.revocation import RevocationChecker
from pki.validation import (
    BadInput,
    RevocationMode,
    ValidationOptions,
    ValidationResult,
    issuer_of,
    load_certificates,
    validate,
)

# how long a snapshot is used before the database is asked whether the pki rows changed:
# a change made by another process (another worker, `idp pki`) is seen within this time;
# this process's own changes at once (``invalidate``)
VERSION_MAX_AGE = 1.0
# validated paths kept for certificates seen again (``_PathCache``)
PATH_CACHE_SECONDS = 300
PATH_CACHE_SIZE = 10_000
# certificates of the store handed to one validation, at most (the closure of names
# that can chain from one leaf is a few; this bounds a store whose CAs share names)
MAX_CANDIDATES = 256


@dataclass(frozen=True)
class TrustResult(ValidationResult):
    """A validation through the store: the path, and the local CA it ends in."""

    ca: str | None = None  # the local CA's name (None: none reached)
    ca_id: int | None = None
    identity_rules: tuple[str, ...] = ()
    not_after: datetime | None = None  # the leaf's


@dataclass(frozen=True)
class _Ca:
    id: int
    name: str
    status: CaStatus
    subjects: frozenset[bytes]  # hashable names of its root and intermediates
    cross_der: bytes | None  # the live cross-certificate
    intermediates: tuple[bytes, ...]
    crl_urls: tuple[str, ...]
    ocsp_url: str | None
    revocation: str
    identity_rules: tuple[str, ...]
    revoked_at: datetime | None  # of its last cross-certificate, when cut off


@dataclass
class _Snapshot:
    version: tuple[object, ...]
    bridge_der: bytes | None = None
    bridge_subject: bytes = b""
    policies: frozenset[str] = frozenset()
    cas: list[_Ca] = field(default_factory=list)
    by_subject: dict[bytes, list[bytes]] = field(default_factory=dict)  # name -> DERs
    ca_of_cross: dict[bytes, _Ca] = field(default_factory=dict)  # cross DER digest -> CA
    ca_of_subject: dict[bytes, _Ca] = field(default_factory=dict)  # any CA's names


def _name(certificate_der: bytes) -> tuple[bytes, bytes]:
    """(subject, issuer) of a certificate as asn1crypto's normalised hashable names
    (RFC 5280 7.1 comparison)."""
    tbs = x509.Certificate.load(certificate_der)["tbs_certificate"]
    return _hashable(tbs["subject"].dump()), _hashable(tbs["issuer"].dump())


@lru_cache(maxsize=8192)
def _hashable(name_der: bytes) -> bytes:
    """Normalising a name (LDAP string preparation) costs more than the rest of a
    look-up; the same CA names come again and again."""
    return str(x509.Name.load(name_der).hashable).encode()


def _digest(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


class _PathCache:
    """Paths validated recently, so that a certificate seen before (the same USB key
    signing in again) skips path building and RFC 5280 processing; its revocation is
    still checked every time. An entry lives ``PATH_CACHE_SECONDS`` at most and never
    past the end of any certificate of its path; it is keyed by the store's version,
    so any change to the CAs makes every entry unreachable."""

    def __init__(self, size: int = PATH_CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[object, ...], tuple[datetime, TrustResult]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> TrustResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= datetime.now(UTC):
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[object, ...], result: TrustResult) -> None:
        now = datetime.now(UTC)
        ends = [
            x509.Certificate.load(der).not_valid_after.astimezone(UTC)
            for der in result.certificates
        ]
        expires = min([now + timedelta(seconds=PATH_CACHE_SECONDS), *ends])
        with self._lock:
            self._entries[key] = (expires, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class TrustStore:
    """The store for one application: snapshots shared by its requests (threads)."""

    def __init__(
        self, checker: RevocationChecker | None = None, *, max_age: float = VERSION_MAX_AGE
    ) -> None:
        self.checker = checker
        self.max_age = max_age
        self._snapshot: _Snapshot | None = None
        self._checked_at = 0.0  # time.monotonic() of the last version query
        self._lock = threading.Lock()
        self._paths = _PathCache()

    def invalidate(self) -> None:
        """Ask the database again at the next validation (this process changed a row)."""
        self._checked_at = 0.0

    # -- the snapshot --------------------------------------------------------------------

    @staticmethod
    def _version(session: Session) -> tuple[object, ...]:
        """What changes whenever a row the store is built from changes: a CA imported or
        updated, a cross-certificate issued or revoked, the bridge created. One query."""
        values = [
            select(aggregate).scalar_subquery()
            for aggregate in (
                func.count(LocalCa.id),
                func.max(LocalCa.id),
                func.max(LocalCa.updated_at),
                func.count(case((LocalCa.status == CaStatus.CROSS_CERTIFIED, 1))),
                func.count(case((LocalCa.status == CaStatus.REVOKED, 1))),
                func.count(CrossCertificate.id),
                func.max(CrossCertificate.id),
                func.count(CrossCertificate.revoked_at),
                func.max(BridgeCa.id),
            )
        ]
        row = session.execute(select(*values)).one()
        return tuple(row)

    def snapshot(self, session: Session) -> _Snapshot:
        current = self._snapshot
        now = time.monotonic()
        if current is not None and now - self._checked_at < self.max_age:
            return current
        version = self._version(session)
        self._checked_at = now
        if current is not None and current.version == version:
            return current
        with self._lock:
            if self._snapshot is not None and self._snapshot.version == version:
                return self._snapshot
            self._snapshot = self._build(session, version)
            return self._snapshot

    @staticmethod
    def _build(session: Session, version: tuple[object, ...]) -> _Snapshot:
        snapshot = _Snapshot(version=version)
        bridge = session.scalar(select(BridgeCa).order_by(BridgeCa.id).limit(1))
        if bridge is None:
            return snapshot
        snapshot.bridge_der = bridge.certificate_der
        snapshot.bridge_subject = _name(bridge.certificate_der)[0]
        snapshot.policies = frozenset(bridge.policies)
        for ca in session.scalars(select(LocalCa).order_by(LocalCa.id)):
            crosses = session.scalars(
                select(CrossCertificate)
                .where(CrossCertificate.local_ca_id == ca.id)
                .order_by(CrossCertificate.id)
            ).all()
            live = next((c for c in crosses if c.revoked_at is None), None)
            intermediates = tuple(
                der for text in ca.intermediates for der in load_certificates(_b64(text), limit=1)
            )
            names = {_name(ca.root_der)[0]} | {_name(der)[0] for der in intermediates}
            entry = _Ca(
                id=ca.id,
                name=ca.name,
                status=ca.status,
                subjects=frozenset(names),
                cross_der=(
                    live.certificate_der
                    if live is not None and ca.status is CaStatus.CROSS_CERTIFIED
                    else None
                ),
                intermediates=intermediates,
                crl_urls=tuple(ca.crl_urls),
                ocsp_url=ca.ocsp_url,
                revocation=ca.revocation,
                identity_rules=tuple(ca.identity_rules),
                revoked_at=crosses[-1].revoked_at if crosses and live is None else None,
            )
            snapshot.cas.append(entry)
            for subject in names:
                snapshot.ca_of_subject.setdefault(subject, entry)
            if entry.cross_der is None:
                continue  # imported only, or cut off: nothing of it is trusted
            snapshot.ca_of_cross[_digest(entry.cross_der)] = entry
            for der in (entry.cross_der, *intermediates):
                snapshot.by_subject.setdefault(_name(der)[0], []).append(der)
        return snapshot

    # -- validation ----------------------------------------------------------------------

    def validate(
        self, session: Session, leaf_der: bytes, options: ValidationOptions
    ) -> TrustResult:
        """Validate ``leaf_der`` through the store. ``options.anchors`` must be empty
        (the bridge is the anchor); ``options.intermediates`` are extra certificates a
        client sent along; ``options.policies`` None means the platform's policies;
        ``options.revocation`` None means each CA's configured mode. ``BadInput`` for
        input that cannot be decoded, as ``pki.validation.validate``."""
        snapshot = self.snapshot(session)
        if snapshot.bridge_der is None:
            raise BadInput("the platform has no bridge CA yet (`idp pki init-bridge`)")
        key = self._cache_key(snapshot, leaf_der, options)
        trusted = self._paths.get(key) if key is not None else None
        if trusted is None:
            found = self._validate_path(snapshot, leaf_der, options)
            if not found.valid or found.ca is None:
                return found
            trusted = found
            if key is not None:
                self._paths.put(key, trusted)
        ca = snapshot.ca_of_cross[_digest(trusted.certificates[-2])]
        mode = options.revocation or ca.revocation
        reason = self._revocation(trusted, ca, mode, options)
        if reason is not None:
            return replace(trusted, valid=False, reason=reason)
        return trusted

    @staticmethod
    def _cache_key(
        snapshot: _Snapshot, leaf_der: bytes, options: ValidationOptions
    ) -> tuple[object, ...] | None:
        """A validated path is kept for the same certificate bytes, the same store and
        the same options; not for another validation time or extra certificates."""
        if options.at is not None or options.intermediates:
            return None
        return (
            hashlib.sha256(leaf_der).digest(),
            snapshot.version,
            options.policies,
            options.require_explicit_policy,
            options.inhibit_policy_mapping,
            options.inhibit_any_policy,
        )

    def _validate_path(
        self, snapshot: _Snapshot, leaf_der: bytes, options: ValidationOptions
    ) -> TrustResult:
        assert snapshot.bridge_der is not None  # validate() checked
        leaf = load_certificates(leaf_der, limit=1)[0]
        candidates = self._candidates(snapshot, leaf, options.intermediates)
        result = validate(
            leaf,
            replace(
                options,
                anchors=(snapshot.bridge_der,),
                intermediates=candidates,
                policies=options.policies if options.policies is not None else snapshot.policies,
                require_explicit_policy=True,
                revocation="off",
                crls=(),
                ocsps=(),
                max_certificates=2 + len(candidates),
            ),
        )
        if not result.valid:
            return self._refused(snapshot, leaf, result)
        ca = self._ca_of_path(snapshot, result)
        if ca is None:  # the leaf is a cross-certificate or the bridge itself
            return TrustResult(
                valid=False,
                reason=Reason("the certificate is a CA certificate of the platform, not a user's"),
                path=result.path,
            )
        return TrustResult(
            valid=True,
            reason="valid",
            path=result.path,
            certificates=result.certificates,
            policies=result.policies,
            ca=ca.name,
            ca_id=ca.id,
            identity_rules=ca.identity_rules,
            not_after=x509.Certificate.load(leaf).not_valid_after.astimezone(UTC),
        )

    @staticmethod
    def _candidates(snapshot: _Snapshot, leaf: bytes, extra: Sequence[bytes]) -> tuple[bytes, ...]:
        """The store's certificates whose subjects chain from the leaf's issuer up to
        the bridge (breadth first over names), and the extra ones given."""
        found: dict[bytes, None] = dict.fromkeys(extra)
        wanted = [_name(leaf)[1], *(_name(der)[1] for der in extra)]
        seen: set[bytes] = set()
        while wanted and len(found) < MAX_CANDIDATES:
            subject = wanted.pop()
            if subject in seen or subject == snapshot.bridge_subject:
                continue
            seen.add(subject)
            for der in snapshot.by_subject.get(subject, ()):
                if der not in found:
                    found[der] = None
                    wanted.append(_name(der)[1])
        return tuple(found)

    @staticmethod
    def _ca_of_path(snapshot: _Snapshot, result: ValidationResult) -> _Ca | None:
        # leaf -> ... -> cross-certificate -> bridge
        if len(result.certificates) < 3:
            return None
        return snapshot.ca_of_cross.get(_digest(result.certificates[-2]))

    @staticmethod
    def _refused(snapshot: _Snapshot, leaf: bytes, result: ValidationResult) -> TrustResult:
        """A refusal, said in the store's terms where the path ended at a CA the store
        does not trust (yet, or any more)."""
        if result.path or not result.reason.startswith("no path"):
            return TrustResult(valid=False, reason=result.reason, path=result.path)
        issuer = _name(leaf)[1]
        ca = snapshot.ca_of_subject.get(issuer)
        if ca is None:
            for entry in snapshot.cas:
                if issuer in entry.subjects:
                    ca = entry
                    break
        if ca is None:
            return TrustResult(
                valid=False,
                reason=Reason(
                    "the certificate was issued by %(issuer)s, which is not a CA registered "
                    "with the platform",
                    issuer=issuer_of(leaf),
                ),
            )
        if ca.status is CaStatus.REVOKED or ca.revoked_at is not None:
            cut_off = (
                Reason(
                    "the CA %(name)s is cut off: its cross-certificate was revoked at the "
                    "bridge on %(date)s",
                    name=repr(ca.name),
                    date=f"{ca.revoked_at:%Y-%m-%d}",
                )
                if ca.revoked_at
                else Reason(
                    "the CA %(name)s is cut off: its cross-certificate was revoked at the bridge",
                    name=repr(ca.name),
                )
            )
            return TrustResult(
                valid=False,
                reason=cut_off,
                ca=ca.name,
                ca_id=ca.id,
            )
        if ca.cross_der is None:
            return TrustResult(
                valid=False,
                reason=Reason(
                    "the CA %(name)s is registered but not cross-certified yet", name=repr(ca.name)
                ),
                ca=ca.name,
                ca_id=ca.id,
            )
        return TrustResult(valid=False, reason=result.reason, ca=ca.name, ca_id=ca.id)

    def _revocation(
        self, result: TrustResult, ca: _Ca, mode: str, options: ValidationOptions
    ) -> str | None:
        """Revocation of the certificates the local CA issued in the path: from the one
        below its root (the cross-certificate stands for the root) down to the leaf."""
        if mode == "off":
            return None
        if self.checker is None:
            if mode in ("hard", "require"):
                return Reason(
                    "revocation cannot be checked here (revocation mode %(mode)s)", mode=mode
                )
            return None
        chain = result.certificates  # leaf -> ... -> cross -> bridge
        for index in range(len(chain) - 3, -1, -1):
            certificate, issuer = chain[index], chain[index + 1]
            who = named_certificate() if index == 0 else named_certificate(result.path[index])
            status = self.checker.check(
                certificate,
                issuer,
                crl_urls=ca.crl_urls,
                ocsp_url=ca.ocsp_url,
                crls=options.crls,
                at=options.at,
            )
            reason = self.checker.decide(status, mode, who)
            if reason is not None:
                return reason
        return None


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


__all__ = ["RevocationMode", "TrustResult", "TrustStore"]
