"""Government staff: an account appointed to a department (``idp users staff``) may
verify people at a service counter (``accounts.realname.counter``)."""

from __future__ import annotations

import unicodedata

from sqlalchemy.orm import Session

from accounts.people.models import User
from accounts.staff.errors import InvalidDepartment, NotStaff
from idp.core.audit.services import AuditLog

MAX_DEPARTMENT = 100


def staff_actor(staff: User) -> str:
    """How verifications and audit events name a member of staff."""
    return f"staff:{staff.public_id}"


def _clean_text(value: str, limit: int) -> str | None:
    """NFKC, trimmed, single-spaced; None if empty, too long or with control characters
    (line breaks, tabs)."""
    folded = unicodedata.normalize("NFKC", value)
    if any(unicodedata.category(ch).startswith("C") for ch in folded):
        return None
    text = " ".join(folded.split())
    return text if text and len(text) <= limit else None


class StaffService:
    """Who is government staff: appoint to a department, revoke (both audited)."""

    def __init__(self, session: Session, audit: AuditLog) -> None:
        self._session = session
        self._audit = audit

    def appoint(self, user: User, department: str, *, actor: str) -> str:
        """Make the account staff of ``department`` (or move it there); returns the
        department as stored."""
        clean = _clean_text(department, MAX_DEPARTMENT)
        if clean is None:
            raise InvalidDepartment()
        previous = user.staff_department
        user.staff_department = clean
        self._audit.record(
            "staff.appoint",
            subject=user.subject,
            actor=actor,
            details={"department": clean, "previous": previous},
        )
        self._session.commit()
        return clean

    def revoke(self, user: User, *, actor: str) -> str:
        """End the account's staff role; returns the department it had."""
        previous = user.staff_department
        if previous is None:
            raise NotStaff()
        user.staff_department = None
        self._audit.record(
            "staff.revoke", subject=user.subject, actor=actor, details={"department": previous}
        )
        self._session.commit()
        return previous
