"""A natural person's account."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

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
    # Staff roles within the department (issue 12): counter_verifier,
    # level_administrator, client_administrator.
    staff_roles: Mapped[list[str]] = mapped_column(default=list, server_default="[]")

    # Kept in step with a confirmed TotpCredential (accounts.credentials) by TotpService,
    # so that sign-in and authorization need not load the credential.
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    # "This wasn't me" (the activity page): the next sign-in must set a new password
    # before the session starts.
    password_reset_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The holder asked for deletion: after this instant `idp users purge-deleted` erases
    # the account; signing in before it offers to cancel.
    deletion_due_at: Mapped[datetime | None] = mapped_column(index=True)

    @property
    def subject(self) -> str:
        """How audit events name this account."""
        return f"user:{self.public_id}"

    @property
    def has_totp(self) -> bool:
        return self.totp_enabled
