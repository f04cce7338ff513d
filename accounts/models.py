"""Accounts and their credentials."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.core.db import Base, enum_column_values, utcnow


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class User(Base):
    """A natural person's account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable, opaque, never reused: the OpenID Connect public subject identifier.
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    username: Mapped[str] = mapped_column(String(64))
    # NFKC + casefold of the username: what uniqueness and sign-in compare.
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None]
    # Sign-in sessions that began before this instant are no longer honoured
    # (set when the password changes, so other browsers are signed out).
    sessions_valid_after: Mapped[datetime | None]
    # Shown to services that ask for the "profile" / "email" scopes.
    display_name: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    updated_at: Mapped[datetime | None]
    # Mainland mobile number, AES-GCM encrypted, with a keyed blind index for lookup.
    phone_encrypted: Mapped[str | None] = mapped_column(Text)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[UserStatus] = mapped_column(
        Enum(UserStatus, native_enum=False, length=16, values_callable=enum_column_values),
        default=UserStatus.ACTIVE,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Government staff: the department this account works for (it may then verify
    # people at a service counter); None for everyone else. Set with `idp users staff`.
    staff_department: Mapped[str | None] = mapped_column(String(100))

    # Kept in step with a confirmed TotpCredential by TotpService, so that sign-in and
    # authorization need not load the credential.
    totp_enabled: Mapped[bool] = mapped_column(default=False)

    totp: Mapped[TotpCredential | None] = relationship(
        back_populates="user", cascade="all, delete-orphan", uselist=False
    )

    @property
    def subject(self) -> str:
        """How audit events name this account."""
        return f"user:{self.public_id}"

    @property
    def has_totp(self) -> bool:
        return self.totp_enabled


class TotpCredential(Base):
    """An authenticator app's seed (encrypted); confirmed once a first code matched."""

    __tablename__ = "totp_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None]
    # The newest accepted time step: codes at or before it are refused (single use).
    last_used_step: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="totp")


class RecoveryCode(Base):
    """A single-use fallback code, stored as a keyed hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VerificationMethod(enum.StrEnum):
    """How a real-name level was reached (design.md section 5)."""

    SMS = "sms"  # level 2: self-declared, phone possession
    REGISTRY = "registry"  # level 3: matched against the population registry
    FACE = "face"  # level 4: face check against the registry photo
    COUNTER = "counter"  # level 5: in person at a service counter
    CERTIFICATE = "certificate"  # level 5: a digital certificate


class Identity(Base):
    """The identity document an account stands for: number and name encrypted, with
    keyed blind indexes. ``verified_number_index`` is set once the registry confirmed
    the number for this account; its uniqueness is "one person, one identity"."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    document_kind: Mapped[str] = mapped_column(String(48))
    number_encrypted: Mapped[str] = mapped_column(Text)
    number_index: Mapped[str] = mapped_column(String(64), index=True)
    verified_number_index: Mapped[str | None] = mapped_column(String(64), unique=True)
    name_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]


class Organisation(Base):
    """A legal person (enterprise, institution), keyed by its unified social credit
    code: encrypted, with a keyed blind index that is unique (one organisation per
    code). Its level, like a person's, is the highest live verification."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    uscc_encrypted: Mapped[str] = mapped_column(Text)
    uscc_index: Mapped[str] = mapped_column(String(64), unique=True)
    name_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]

    @property
    def subject(self) -> str:
        """How audit events name this organisation."""
        return f"org:{self.public_id}"


class Verification(Base):
    """One proof of identity of a person (``user_id``) or of an organisation
    (``organisation_id``): the level it reached, how, when, from which source and with
    which evidence. The level is the highest live one."""

    __tablename__ = "verifications"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (organisation_id IS NULL)", name="one_holder"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[VerificationMethod] = mapped_column(
        Enum(VerificationMethod, native_enum=False, length=16, values_callable=enum_column_values)
    )
    level: Mapped[int]
    verified_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    # e.g. "registry:local", "registry:https://..."; never personal data
    source: Mapped[str] = mapped_column(String(200))
    # the source's reference for this check (a transaction id), if it gave one
    evidence_ref: Mapped[str | None] = mapped_column(String(200))
    # who did it when not the user: "staff:<id>" at a counter, "cli"
    actor: Mapped[str | None] = mapped_column(String(100))
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(200))


class RegistryRecord(Base):
    """The local copy of a registry (embedded mode and tests, `idp registry import`):
    keyed hashes only, of the document number and of the name, never the values."""

    __tablename__ = "registry_records"
    __table_args__ = (UniqueConstraint("kind", "number_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "person" | "organisation"
    number_index: Mapped[str] = mapped_column(String(64))
    name_index: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
