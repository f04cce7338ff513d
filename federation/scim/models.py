"""What SCIM adds to an account it provisioned: which client owns it, the client's
``externalId``, when provisioning last changed it, and whether the client deleted it
(the account stays, disabled; the SCIM resource is gone)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base, utcnow


class ScimUser(Base):
    """One account provisioned by one SCIM client (an account has at most one)."""

    __tablename__ = "scim_users"
    __table_args__ = (Index("ix_scim_users_client_external", "client_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # the OAuth client (client credentials, scope ``scim``) that created it
    client_id: Mapped[str] = mapped_column(String(100))
    # the client's own identifier for the person (RFC 7643 3.1: caseExact)
    external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # DELETE: the account is disabled and the resource answers 404 from then on
    deleted_at: Mapped[datetime | None]
