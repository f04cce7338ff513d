"""Government staff and real-name level 5 at a service counter (design.md sections 4, 5).

A member of staff (an account with ``staff_department``, set with ``idp users staff``)
examines a citizen's original identity document in person and records what they saw.
That proves more than the registry match of level 3: the number is confirmed for the
account ("one person, one identity" applies as for level 3, through the unique
``identities.verified_number_index``) and a level 5 ``Verification`` is recorded with
the department as its source and the staff member as its actor.

The counter is also where a wrong confirmed identity is corrected: a check with another
document replaces the account's identity, and the verifications that rested on the old
document end with a reason the user sees in their history.

No Flask here: the staff page (``accounts.staff.views``) and ``idp realname counter-verify``
both call ``CounterService``.
"""

from __future__ import annotations

from accounts.people.models import User, UserStatus
from accounts.realname.errors import InvalidReference, OwnAccount
from accounts.realname.models import Verification, VerificationMethod
from accounts.realname.services import DocumentClaim, RealNameService
from accounts.staff.errors import NotStaff, StaffNeedsRole
from accounts.staff.services import StaffRole, _clean_text, has_role, staff_actor

COUNTER_LEVEL = 5


REPLACED_REASON = "replaced at a service counter"


MAX_REFERENCE = 100


def _checked_input(
    name: str, number: str, reference: str | None
) -> tuple[DocumentClaim, str | None]:
    """The document (it replaces a wrong identity) and the reference, or the error that
    says which is wrong."""
    claim = DocumentClaim.checked(name, number, replace_reason=REPLACED_REASON)
    evidence: str | None = None
    if reference is not None and reference.strip():
        evidence = _clean_text(reference, MAX_REFERENCE)
        if evidence is None:
            raise InvalidReference()
    return claim, evidence


class CounterService:
    def __init__(self, realname: RealNameService) -> None:
        self._realname = realname

    def verify_at_counter(
        self, user: User, name: str, number: str, *, staff: User, reference: str | None
    ) -> Verification:
        """Record that ``staff`` examined ``user``'s original document in person: the
        number is confirmed for the account and level 5 recorded. Refusals leave the
        account as it was; they and the success are audited with the staff member as
        the actor and without the number or the name."""
        actor = staff_actor(staff)
        if staff.staff_department is None or staff.status is not UserStatus.ACTIVE:
            self._refuse(user, actor, "not_staff")
            raise NotStaff()
        if not has_role(staff, StaffRole.COUNTER_VERIFIER):
            self._refuse(user, actor, "no_role")
            raise StaffNeedsRole(role=StaffRole.COUNTER_VERIFIER.value)
        if staff.id == user.id:
            self._refuse(user, actor, "own_account")
            raise OwnAccount()
        claim, evidence = _checked_input(name, number, reference)
        department = staff.staff_department
        return self._realname.record_verification(
            user,
            method=VerificationMethod.COUNTER,
            level=COUNTER_LEVEL,
            source=f"counter:{department}",
            evidence_ref=evidence,
            actor=actor,
            document=claim,
            details={"department": department},
        )

    def _refuse(self, user: User, actor: str, reason: str) -> None:
        self._realname.record_refusal(
            user, method=VerificationMethod.COUNTER, reason=reason, actor=actor
        )
