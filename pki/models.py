"""The bridge CA, the registered local CAs, the cross-certificates the bridge issued
them, and the certificates bound to accounts and organisations.

Everything that decides who gets in lives here (a revoked cross-certificate cuts its CA
off; a binding maps a certificate to an account). Nothing here holds an identity
number or a subject DN in clear: a binding keeps the identity's blind index and its
masked form.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.core.db import Base, enum_column_values, utcnow


class CaStatus(enum.StrEnum):
    IMPORTED = "imported"  # registered, no cross-certificate yet: not trusted
    CROSS_CERTIFIED = "cross_certified"  # trusted through its live cross-certificate
    REVOKED = "revoked"  # its cross-certificate is revoked: cut off


class BridgeCa(Base):
    """The platform's bridge CA (one row). Its private key is held by a ``BridgeKey``
    (``key_ref`` says where); the CRL it last signed is kept for serving."""

    __tablename__ = "pki_bridge"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(500))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    policies: Mapped[list[str]] = mapped_column(JSON)
    key_ref: Mapped[str] = mapped_column(String(200))
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    crl_next_update: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LocalCa(Base):
    """One of the city's certificate authorities: its root and intermediates, how its
    policy OIDs map to the platform's, how identities are read from its certificates,
    and how their revocation is checked."""

    __tablename__ = "pki_local_cas"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    root_der: Mapped[bytes] = mapped_column(LargeBinary)
    intermediates: Mapped[list[str]] = mapped_column(JSON)  # base64 DER
    policy_map: Mapped[list[list[str]]] = mapped_column(JSON)  # [[local, platform], ...]
    identity_rules: Mapped[list[str]] = mapped_column(JSON)  # KIND:SOURCE, in order
    crl_urls: Mapped[list[str]] = mapped_column(JSON)
    ocsp_url: Mapped[str | None] = mapped_column(String(500))
    revocation: Mapped[str] = mapped_column(String(8))  # off | soft | hard | require
    status: Mapped[CaStatus] = mapped_column(
        Enum(CaStatus, native_enum=False, length=16, values_callable=enum_column_values),
        default=CaStatus.IMPORTED,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]

    cross_certificates: Mapped[list[CrossCertificate]] = relationship(
        back_populates="local_ca", order_by="CrossCertificate.id"
    )


class CrossCertificate(Base):
    """A bridge -> local-root cross-certificate. Revoked ones stay (the CRL lists them)."""

    __tablename__ = "pki_cross_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    local_ca_id: Mapped[int] = mapped_column(
        ForeignKey("pki_local_cas.id", ondelete="CASCADE"), index=True
    )
    serial: Mapped[str] = mapped_column(String(64), unique=True)  # hex
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    not_after: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revocation_reason: Mapped[str | None] = mapped_column(String(32))

    local_ca: Mapped[LocalCa] = relationship(back_populates="cross_certificates")


class CertificateBinding(Base):
    """A certificate bound to an account (a person's) or to an organisation (an
    enterprise certificate, bound by its credit code's blind index)."""

    __tablename__ = "pki_certificate_bindings"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    local_ca_id: Mapped[int | None] = mapped_column(
        ForeignKey("pki_local_cas.id", ondelete="SET NULL")
    )
    ca_name: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the DER
    serial: Mapped[str] = mapped_column(String(64))  # hex
    identity_kind: Mapped[str] = mapped_column(String(16))  # person | organisation
    identifier_type: Mapped[str] = mapped_column(String(48))
    identity_index: Mapped[str] = mapped_column(String(64), index=True)
    identifier_masked: Mapped[str] = mapped_column(String(32))
    not_after: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
