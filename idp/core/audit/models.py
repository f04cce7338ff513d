"""Audit events and the chain head."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base

GENESIS_MAC = "0" * 64


class AuditEvent(Base):
    """One security event. Rows are only ever inserted; ``mac`` chains them."""

    __tablename__ = "audit_events"
    # the hall's statistics count one kind of event over a range of months
    __table_args__ = (Index("ix_audit_events_event_created_at", "event", "created_at"),)

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    created_at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(128))
    subject: Mapped[str | None] = mapped_column(String(128), index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]]
    mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """A single row holding the newest sequence number and MAC.

    Appending updates this row first, which serialises appenders (a row lock on
    PostgreSQL, the write lock on SQLite), and lets ``verify`` detect deleted tail rows.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int]
    mac: Mapped[str] = mapped_column(String(64))
