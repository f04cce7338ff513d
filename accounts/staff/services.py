"""Government staff: an account appointed to a department (``idp users staff``) with
roles (issue 12): ``counter_verifier`` verifies people at a service counter
(``accounts.realname.counter``), ``level_administrator`` lowers a level,
``client_administrator`` registers services, ``statistics_viewer`` reads the hall's
statistics (``accounts.statistics``). A staff function on the pages needs the
role, the staff member's own real-name level 4 or more and a second factor in the
session (``check_staff``); the services check the role; both audit the staff member as
the actor. The operator's commands (``idp realname counter-verify --staff``) run with
the server's own authority and check the role only."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from accounts.people.models import User
from accounts.staff.errors import (
    InvalidDepartment,
    InvalidStaffRole,
    NotStaff,
    StaffLevelTooLow,
    StaffNeedsRole,
    StaffNeedsSecondFactor,
)
from idp.core.audit.services import AuditLog

MAX_DEPARTMENT = 100
STAFF_LEVEL = 4  # a member of staff's own real-name level, at least


class StaffRole(enum.StrEnum):
    COUNTER_VERIFIER = "counter_verifier"
    LEVEL_ADMINISTRATOR = "level_administrator"
    CLIENT_ADMINISTRATOR = "client_administrator"
    STATISTICS_VIEWER = "statistics_viewer"


# the role an appointment gives when none is named (what staff could always do)
DEFAULT_ROLES = (StaffRole.COUNTER_VERIFIER,)


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

    def appoint(
        self,
        user: User,
        department: str,
        *,
        actor: str,
        roles: Sequence[str] = DEFAULT_ROLES,
    ) -> str:
        """Make the account staff of ``department`` (or move it there) with ``roles``;
        returns the department as stored."""
        clean = _clean_text(department, MAX_DEPARTMENT)
        if clean is None:
            raise InvalidDepartment()
        checked = sorted({_role(role).value for role in roles})
        if not checked:
            raise InvalidStaffRole()
        previous = user.staff_department
        user.staff_department = clean
        user.staff_roles = checked
        self._audit.record(
            "staff.appoint",
            subject=user.subject,
            actor=actor,
            details={"department": clean, "previous": previous, "roles": checked},
        )
        self._session.commit()
        return clean

    def revoke(self, user: User, *, actor: str) -> str:
        """End the account's staff role; returns the department it had."""
        previous = user.staff_department
        if previous is None:
            raise NotStaff()
        user.staff_department = None
        user.staff_roles = []
        self._audit.record(
            "staff.revoke", subject=user.subject, actor=actor, details={"department": previous}
        )
        self._session.commit()
        return previous


def has_role(user: User, role: StaffRole) -> bool:
    return user.staff_department is not None and role.value in (user.staff_roles or [])


def check_staff(
    user: User, role: StaffRole, *, amr: Sequence[str], level_of: Callable[[User], int]
) -> None:
    """May ``user`` use the staff function of ``role`` now? Raises, in this order:
    ``NotStaff``, ``StaffNeedsRole``, ``StaffLevelTooLow`` (their own real-name level
    below ``STAFF_LEVEL``), ``StaffNeedsSecondFactor`` (no ``otp`` in the session's
    ``amr``). ``level_of`` is ``RealNameService.level``."""
    if user.staff_department is None or user.status.value != "active":
        raise NotStaff()
    if not has_role(user, role):
        raise StaffNeedsRole(role=role.value)
    if level_of(user) < STAFF_LEVEL:
        raise StaffLevelTooLow(level=STAFF_LEVEL)
    if "otp" not in amr and "mfa" not in amr:
        raise StaffNeedsSecondFactor()


def _role(value: str) -> StaffRole:
    try:
        return StaffRole(value)
    except ValueError:
        raise InvalidStaffRole() from None
