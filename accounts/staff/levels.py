"""Lowering a citizen's real-name level by a member of staff (issue 12).

A level is lowered when the documents behind it are doubted (reported stolen, a
verification made in error): the verifications above the level the account keeps end,
with the staff member's reason, which the citizen sees in their history. The operator
has the same power on the command line (``idp realname lower``, actor ``cli``); here
the staff member needs the ``level_administrator`` role and may not lower their own
account (a stolen staff session must not be able to hide its own record). Every
refusal is audited as ``realname.lower`` with outcome failure and the staff member as
the actor, as the success is by ``RealNameService.end_verifications``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from accounts.people.models import User, UserStatus
from accounts.realname.services import UNVERIFIED, RealNameService
from accounts.staff.errors import (
    InvalidKeptLevel,
    InvalidLowerReason,
    NotStaff,
    OwnLevel,
    StaffNeedsRole,
)
from accounts.staff.services import StaffRole, _clean_text, has_role, staff_actor
from idp.core.audit.services import FAILURE, AuditLog

EVENT = "realname.lower"
MAX_REASON = 200
HIGHEST_KEPT = 4  # level 5 is the highest there is: keeping 5 lowers nothing
KEPT_LEVELS = range(UNVERIFIED, HIGHEST_KEPT + 1)


class LevelService:
    def __init__(self, session: Session, realname: RealNameService, audit: AuditLog) -> None:
        self._session = session
        self._realname = realname
        self._audit = audit

    def lower(self, staff: User, citizen: User, *, keep: int, reason: str) -> int:
        """End ``citizen``'s verifications above level ``keep`` (1-4) with ``reason``;
        returns how many ended (0 when the level was already that low). Checks, in this
        order, that ``staff`` is active staff with the role, that the account is not
        their own, the level and the reason; a refusal changes nothing."""
        if staff.staff_department is None or staff.status is not UserStatus.ACTIVE:
            self.refuse(staff, citizen, "not_staff")
            raise NotStaff()
        if not has_role(staff, StaffRole.LEVEL_ADMINISTRATOR):
            self.refuse(staff, citizen, "no_role")
            raise StaffNeedsRole(role=StaffRole.LEVEL_ADMINISTRATOR.value)
        if staff.id == citizen.id:
            self.refuse(staff, citizen, "own_account")
            raise OwnLevel()
        if keep not in KEPT_LEVELS:
            raise InvalidKeptLevel()
        clean = _clean_text(reason, MAX_REASON)
        if clean is None:
            raise InvalidLowerReason()
        return self._realname.end_verifications(
            citizen, above=keep, reason=clean, actor=staff_actor(staff)
        )

    def refuse(self, staff: User, citizen: User | None, reason: str) -> None:
        """Audit (and commit) a refused lowering: the page's own checks (the staff
        member's level, a second factor) call this too. ``citizen`` None: not known
        (the refusal came before the form was read)."""
        self._audit.record(
            EVENT,
            FAILURE,
            subject=citizen.subject if citizen else None,
            actor=staff_actor(staff),
            details={"reason": reason},
        )
        self._session.commit()
