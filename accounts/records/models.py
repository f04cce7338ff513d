"""Service records (办事信息): an application's progress and result, pushed by the
service system (an OAuth client) that handles it, for a person or an organisation.

A record names its holder by account or organisation (exactly one), never by an
identity document number; ``subject_sub`` keeps the subject as the client named it (its
public or pairwise ``sub``), so answers to the client use the client's own vocabulary.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.core.db import Base, enum_column_values, utcnow


class RecordStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    MORE_INFO_NEEDED = "more_info_needed"
    COMPLETED = "completed"
    REJECTED = "rejected"


class HolderKind(enum.StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


_STATUS = Enum(RecordStatus, native_enum=False, length=32, values_callable=enum_column_values)


class ServiceRecord(Base):
    __tablename__ = "service_records"
    __table_args__ = (
        # idempotent creation: one record per (client, external id)
        UniqueConstraint("client_id", "external_id"),
        CheckConstraint("(user_id IS NULL) <> (organisation_id IS NULL)", name="one_holder"),
        CheckConstraint("counter_visits >= 0", name="counter_visits_not_negative"),
        CheckConstraint(
            "satisfaction IS NULL OR (satisfaction >= 1 AND satisfaction <= 5)",
            name="satisfaction_range",
        ),
        Index("ix_service_records_client_status", "client_id", "status"),
        # the hall's statistics: records of a range of months
        Index("ix_service_records_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE")
    )
    external_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    # the subject as the client knows it (its sub for the person or organisation)
    subject_sub: Mapped[str] = mapped_column(String(200))
    service_name: Mapped[str] = mapped_column(String(200))
    item_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[RecordStatus] = mapped_column(_STATUS)
    result_url: Mapped[str | None] = mapped_column(String(2000))
    done_online: Mapped[bool] = mapped_column(default=False)
    counter_visits: Mapped[int] = mapped_column(default=0)
    satisfaction: Mapped[int | None]
    rated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    events: Mapped[list[RecordEvent]] = relationship(
        order_by="RecordEvent.id", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def holder_kind(self) -> HolderKind:
        return HolderKind.PERSON if self.user_id is not None else HolderKind.ORGANISATION


class RecordEvent(Base):
    """One entry of a record's timeline: the status it entered, when, and why."""

    __tablename__ = "service_record_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(
        ForeignKey("service_records.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    status: Mapped[RecordStatus] = mapped_column(_STATUS)
    remark: Mapped[str | None] = mapped_column(String(500))
