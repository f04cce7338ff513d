"""Organisations (legal persons), keyed by their unified social credit code."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base, utcnow


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
