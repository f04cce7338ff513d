"""Organisations (legal persons, intermediaries, government departments), keyed by their
unified social credit code, and the authorisations that let people act for them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base, enum_column_values, utcnow


class OrganisationKind(enum.StrEnum):
    ENTERPRISE = "enterprise"  # enterprises and institutions (legal persons)
    INTERMEDIARY = "intermediary"  # 中介机构: acts for client enterprises
    DEPARTMENT = "department"  # a government department


class Organisation(Base):
    """A legal person (enterprise, institution), an intermediary or a department, keyed
    by its unified social credit code: encrypted, with a keyed blind index that is
    unique (one organisation per code). Its level, like a person's, is the highest live
    verification. ``representative_index`` is the blind index of the legal
    representative's document number as the legal-person registry last named it."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    uscc_encrypted: Mapped[str] = mapped_column(Text)
    uscc_index: Mapped[str] = mapped_column(String(64), unique=True)
    name_encrypted: Mapped[str] = mapped_column(Text)
    kind: Mapped[OrganisationKind] = mapped_column(
        Enum(OrganisationKind, native_enum=False, length=16, values_callable=enum_column_values),
        default=OrganisationKind.ENTERPRISE,
        server_default=OrganisationKind.ENTERPRISE.value,
    )
    representative_index: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]

    @property
    def subject(self) -> str:
        """How audit events name this organisation."""
        return f"org:{self.public_id}"


class Role(enum.StrEnum):
    LEGAL_REPRESENTATIVE = "legal_representative"  # named by the registry; administers
    ADMINISTRATOR = "administrator"  # adds and revokes agents
    AGENT = "agent"  # 经办人: acts within the authorisation's scope


class AuthorisationStatus(enum.StrEnum):
    PENDING = "pending"  # offered; the agent has not confirmed
    ACTIVE = "active"  # live between starts_at and ends_at
    REVOKED = "revoked"  # ended by the organisation
    RENOUNCED = "renounced"  # ended by the agent
    ENDED = "ended"  # ended by the platform (a new legal representative, ...)


class Authorisation(Base):
    """One person's authority to act for one organisation: the role, the scope (all
    services, or named clients and scopes), and the dates. An invitation names the
    person by account (``user_id``) or by the blind index of their document number
    (``invitee_index``), matched when they confirm. Rows are never deleted: ended ones
    are the organisation's history."""

    __tablename__ = "org_authorisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    invitee_index: Mapped[str | None] = mapped_column(String(64), index=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=24, values_callable=enum_column_values)
    )
    status: Mapped[AuthorisationStatus] = mapped_column(
        Enum(AuthorisationStatus, native_enum=False, length=16, values_callable=enum_column_values),
        default=AuthorisationStatus.PENDING,
    )
    all_services: Mapped[bool] = mapped_column(Boolean, default=True)
    clients: Mapped[list[str]] = mapped_column(JSON, default=list)  # client ids
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)  # OAuth scopes
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]  # None: until ended (a legal representative)
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(200))
