"""Identity documents, verifications (how a level was reached) and the local copy
of the registry."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base, enum_column_values, utcnow


class VerificationMethod(enum.StrEnum):
    """How a real-name level was reached (design.md section 5)."""

    SMS = "sms"  # level 2: self-declared, phone possession
    REGISTRY = "registry"  # level 3: matched against the population registry
    FACE = "face"  # level 4: face check against the registry photo
    COUNTER = "counter"  # level 5: in person at a service counter
    CERTIFICATE = "certificate"  # level 5: a digital certificate
    FEDERATION = "federation"  # 2-5: what an upstream provider asserted (issue 13)


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
    # an organisation's legal representative: the keyed hash of their document number
    representative_index: Mapped[str | None] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
