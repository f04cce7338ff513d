"""Upstream OpenID providers added with ``idp federation add-upstream`` and the links
between an upstream's subjects and local accounts.

The client secret is stored encrypted with the data keyring (``*_encrypted``, bound to
its column). A link is keyed by the upstream's issuer and subject (OpenID Connect Core
5.7: only that pair identifies an end user), never by e-mail, phone or name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base, utcnow

SECRET_CONTEXT = "federation_upstreams.client_secret_encrypted"


class Upstream(Base):
    """An upstream provider added by the command line (TOML ``[[upstream_providers]]``
    entries are not stored here). ``discovery`` and ``jwks`` are the last documents
    fetched from it, at ``fetched_at``."""

    __tablename__ = "federation_upstreams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(500), unique=True)
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    token_auth_method: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    identity_claim: Mapped[str | None] = mapped_column(String(255))
    identity_type: Mapped[str | None] = mapped_column(String(32))
    level_claim: Mapped[str | None] = mapped_column(String(255))
    level_map: Mapped[list[list[Any]]] = mapped_column(JSON)  # [[theirs, ours], ...]
    link_min_level: Mapped[int] = mapped_column(Integer)
    discovery: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fetched_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UpstreamLink(Base):
    """An upstream subject that signs in to a local account."""

    __tablename__ = "federation_links"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    upstream: Mapped[str] = mapped_column(String(63))
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
