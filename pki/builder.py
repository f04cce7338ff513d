"""The certificates and CRLs the bridge signs, assembled with ``asn1crypto`` and signed
through a ``BridgeKey``.

``cryptography``'s builders take only key types it can load, and a local CA's root may
hold an SM2 key: a cross-certificate copies the root's ``SubjectPublicKeyInfo`` bytes
as they are, so the TBS structure is assembled here and the bridge key signs it.

Profile (RFC 5280; what OpenSSL's ``verify -x509_strict -policy_check`` and the Federal
Bridge's cross-certificates carry): subject and authority key identifiers, critical
basicConstraints (CA), critical keyUsage ``keyCertSign``/``cRLSign``, the bridge CRL's
distribution point; a cross-certificate also carries ``certificatePolicies`` (the
platform policies it maps), ``policyMappings`` (issuerDomainPolicy = platform OID,
subjectDomainPolicy = the local CA's OID) and, when asked, ``policyConstraints``,
``inhibitAnyPolicy`` and ``nameConstraints`` (critical).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import crl, x509

from pki.keys import BridgeKey

# Dates from 2050 on are GeneralizedTime (RFC 5280 4.1.2.5).
_UTC_TIME_END = 2050


@dataclass(frozen=True)
class CrossConstraints:
    """What ``idp pki cross-certify`` may add (None: not set)."""

    require_explicit_policy: int | None = None
    inhibit_policy_mapping: int | None = None
    inhibit_any_policy: int | None = None
    permitted_subtrees: tuple[bytes, ...] = field(default=())  # DER Names


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: str | None = None  # asn1crypto CRLReason name, e.g. "cessation_of_operation"


def new_serial() -> int:
    """A positive serial number of at most 20 octets (RFC 5280 4.1.2.2)."""
    return secrets.randbits(159) | 1


def _time(value: datetime) -> x509.Time:
    if value.year >= _UTC_TIME_END:
        return x509.Time({"general_time": value})
    return x509.Time({"utc_time": value})


def _extension(name: str, value: object, *, critical: bool = False) -> dict[str, object]:
    return {"extn_id": name, "critical": critical, "extn_value": value}


def _ca_extensions(
    subject_key_id: bytes, authority_key_id: bytes, crl_url: str
) -> list[dict[str, object]]:
    return [
        _extension("basic_constraints", {"ca": True}, critical=True),
        _extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True),
        _extension("key_identifier", subject_key_id),
        _extension("authority_key_identifier", {"key_identifier": authority_key_id}),
        _extension(
            "crl_distribution_points",
            [{"distribution_point": {"full_name": [_uri(crl_url)]}}],
        ),
    ]


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def _policies(oids: Sequence[str]) -> list[dict[str, str]]:
    return [{"policy_identifier": oid} for oid in oids]


def _sign_certificate(key: BridgeKey, tbs: x509.TbsCertificate) -> bytes:
    signature = key.sign(tbs.dump())
    certificate = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": key.signature_algorithm(),
            "signature_value": signature,
        }
    )
    return bytes(certificate.dump())


def bridge_certificate(
    key: BridgeKey,
    *,
    subject: bytes,
    policies: Sequence[str],
    crl_url: str,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    """The bridge's self-signed certificate (DER); ``subject`` is a DER Name."""
    public_key = key.public_key_info()
    key_id = bytes(public_key.sha1)
    name = x509.Name.load(subject)
    extensions = _ca_extensions(key_id, key_id, crl_url)
    extensions.append(_extension("certificate_policies", _policies(policies)))
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": new_serial(),
            "signature": key.signature_algorithm(),
            "issuer": name,
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": name,
            "subject_public_key_info": public_key,
            "extensions": extensions,
        }
    )
    return _sign_certificate(key, tbs)


def cross_certificate(
    key: BridgeKey,
    *,
    bridge: bytes,
    local_root: bytes,
    serial: int,
    policy_map: Sequence[tuple[str, str]],
    constraints: CrossConstraints,
    crl_url: str,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    """A bridge -> local-root cross-certificate (DER). ``policy_map`` holds (local OID,
    platform OID) pairs. The subject, its public key and its key identifier are the
    local root's own, so the local CA's certificates chain to it by name and key id."""
    bridge_cert = x509.Certificate.load(bridge)
    root = x509.Certificate.load(local_root)
    root_tbs = root["tbs_certificate"]
    subject_key_id = root.key_identifier or bytes(root.public_key.sha1)
    bridge_key_id = bridge_cert.key_identifier or bytes(bridge_cert.public_key.sha1)
    platform_policies = list(dict.fromkeys(platform for _, platform in policy_map))
    extensions = _ca_extensions(subject_key_id, bridge_key_id, crl_url)
    extensions.append(_extension("certificate_policies", _policies(platform_policies)))
    extensions.append(
        _extension(
            "policy_mappings",
            [
                {"issuer_domain_policy": platform, "subject_domain_policy": local}
                for local, platform in policy_map
            ],
            critical=True,
        )
    )
    policy_constraints = {}
    if constraints.require_explicit_policy is not None:
        policy_constraints["require_explicit_policy"] = constraints.require_explicit_policy
    if constraints.inhibit_policy_mapping is not None:
        policy_constraints["inhibit_policy_mapping"] = constraints.inhibit_policy_mapping
    if policy_constraints:
        extensions.append(_extension("policy_constraints", policy_constraints, critical=True))
    if constraints.inhibit_any_policy is not None:
        extensions.append(
            _extension("inhibit_any_policy", constraints.inhibit_any_policy, critical=True)
        )
    if constraints.permitted_subtrees:
        subtrees = [
            {"base": x509.GeneralName(name="directory_name", value=x509.Name.load(der))}
            for der in constraints.permitted_subtrees
        ]
        extensions.append(
            _extension("name_constraints", {"permitted_subtrees": subtrees}, critical=True)
        )
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": key.signature_algorithm(),
            "issuer": bridge_cert.subject,
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": root_tbs["subject"],
            "subject_public_key_info": root_tbs["subject_public_key_info"],
            "extensions": extensions,
        }
    )
    return _sign_certificate(key, tbs)


def bridge_crl(
    key: BridgeKey,
    *,
    bridge: bytes,
    number: int,
    revoked: Sequence[RevokedEntry],
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    """The bridge's CRL (DER): the cross-certificates it revoked."""
    bridge_cert = x509.Certificate.load(bridge)
    bridge_key_id = bridge_cert.key_identifier or bytes(bridge_cert.public_key.sha1)
    entries = []
    for entry in revoked:
        item: dict[str, object] = {
            "user_certificate": entry.serial,
            "revocation_date": _time(entry.revoked_at),
        }
        if entry.reason:
            item["crl_entry_extensions"] = [_extension("crl_reason", entry.reason)]
        entries.append(item)
    tbs: dict[str, object] = {
        "version": "v2",
        "signature": key.signature_algorithm(),
        "issuer": bridge_cert.subject,
        "this_update": _time(this_update),
        "next_update": _time(next_update),
        "crl_extensions": [
            _extension("crl_number", number),
            _extension("authority_key_identifier", {"key_identifier": bridge_key_id}),
        ],
    }
    if entries:
        tbs["revoked_certificates"] = entries
    tbs_list = crl.TbsCertList(tbs)
    signature = key.sign(tbs_list.dump())
    certificate_list = crl.CertificateList(
        {
            "tbs_cert_list": tbs_list,
            "signature_algorithm": key.signature_algorithm(),
            "signature": signature,
        }
    )
    return bytes(certificate_list.dump())
