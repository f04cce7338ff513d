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

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.adapters.registry import NUMBER_INDEX
from accounts.people.models import User, UserStatus
from accounts.realname.errors import IdentityTaken, InvalidReference, OwnAccount
from accounts.realname.models import Identity, Verification, VerificationMethod
from accounts.realname.services import (
    NAME_CONTEXT,
    NUMBER_CONTEXT,
    checked_document,
    checked_name,
    confirmed_holder,
)
from accounts.staff.errors import NotStaff
from accounts.staff.services import _clean_text, staff_actor
from idp.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher

COUNTER_LEVEL = 5


REPLACED_REASON = "replaced at a service counter"


# the verifications that rest on the identity document (a phone check does not)
DOCUMENT_METHODS = (
    VerificationMethod.REGISTRY,
    VerificationMethod.FACE,
    VerificationMethod.COUNTER,
    VerificationMethod.CERTIFICATE,
)


MAX_REFERENCE = 100


def _checked_input(
    name: str, number: str, reference: str | None
) -> tuple[str, str, str, str | None]:
    """Document number (normalised), its kind, the name and the reference, or the error
    that says which is wrong."""
    document, kind = checked_document(number)
    clean_name = checked_name(name)
    evidence: str | None = None
    if reference is not None and reference.strip():
        evidence = _clean_text(reference, MAX_REFERENCE)
        if evidence is None:
            raise InvalidReference()
    return document, kind, clean_name, evidence


class CounterService:
    def __init__(
        self,
        session: Session,
        cipher: DataCipher,
        audit: AuditLog,
        clock: Clock,
        *,
        counter_valid_days: int,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._audit = audit
        self._clock = clock
        self._valid_days = counter_valid_days

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
        if staff.id == user.id:
            self._refuse(user, actor, "own_account")
            raise OwnAccount()
        document, kind, clean_name, evidence = _checked_input(name, number, reference)
        department = staff.staff_department
        number_index = self._cipher.blind_index(document, purpose=NUMBER_INDEX)
        if confirmed_holder(self._session, number_index) not in (None, user.id):
            self._refuse(user, actor, "identity_taken")
            raise IdentityTaken()

        now = self._clock.now()
        identity = self._session.scalar(select(Identity).where(Identity.user_id == user.id))
        replaced = identity is not None and identity.number_index != number_index
        if identity is None:
            identity = Identity(user_id=user.id, created_at=now)
            self._session.add(identity)
        elif replaced:
            self._end_document_verifications(user, now)
        identity.document_kind = kind
        identity.number_encrypted = self._cipher.encrypt(document, context=NUMBER_CONTEXT)
        identity.number_index = number_index
        identity.name_encrypted = self._cipher.encrypt(clean_name, context=NAME_CONTEXT)
        identity.verified_number_index = number_index
        identity.updated_at = now
        verification = Verification(
            user_id=user.id,
            method=VerificationMethod.COUNTER,
            level=COUNTER_LEVEL,
            verified_at=now,
            expires_at=now + timedelta(days=self._valid_days),
            source=f"counter:{department}"[:200],
            evidence_ref=evidence,
            actor=actor,
        )
        self._session.add(verification)
        try:
            self._session.flush()
        except IntegrityError:
            # another account had the number confirmed between our check and our write
            self._session.rollback()
            self._refuse(user, actor, "identity_taken")
            raise IdentityTaken() from None
        self._audit.record(
            "realname.verify",
            subject=user.subject,
            actor=actor,
            details={
                "method": "counter",
                "level": COUNTER_LEVEL,
                "document_kind": kind,
                "department": department,
                "replaced": replaced,
            },
        )
        self._session.commit()
        return verification

    def _end_document_verifications(self, user: User, now: datetime) -> None:
        """The old document's live verifications end, with the reason the user sees."""
        for verification in self._session.scalars(
            select(Verification).where(
                Verification.user_id == user.id,
                Verification.ended_at.is_(None),
                Verification.method.in_(DOCUMENT_METHODS),
            )
        ):
            if verification.expires_at is None or verification.expires_at > now:
                verification.ended_at = now
                verification.end_reason = REPLACED_REASON

    def _refuse(self, user: User, actor: str, reason: str) -> None:
        self._audit.record(
            "realname.verify",
            FAILURE,
            subject=user.subject,
            actor=actor,
            details={"method": "counter", "reason": reason},
        )
        self._session.commit()
