"""Real-name levels (Guangdong 可信等级, design.md section 5) and the verifications
that reach them.

An account's level is the highest level of its live verifications (not ended, not
expired); with none it is 1 (registered, nothing proved). Each verification method
adds a ``Verification`` record and an audit event. Document numbers and names are
stored encrypted with keyed blind indexes; a number confirmed by the registry belongs
to one account only ("one person, one identity": a unique index, so two accounts
racing for one number cannot both win).

So far: level 3 against the population registry (``verify_with_registry``), and
lowering a level (``end_verifications``). Levels 2, 4 and 5 use the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.adapters.registry import (
    NUMBER_INDEX,
    Answer,
    Registry,
    RegistryUnavailable,
    normalise_name,
)
from accounts.identifiers import check, mask
from accounts.organisations.models import Organisation
from accounts.people.models import User
from accounts.realname.errors import (
    IdentityAlreadyVerified,
    IdentityTaken,
    InvalidDocument,
    InvalidName,
    RegistryDown,
    RegistryMismatch,
)
from accounts.realname.models import Identity, Verification, VerificationMethod
from idp.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher

UNVERIFIED = 1


EXPIRED_REASON = "expired"


NUMBER_CONTEXT = "identities.number_encrypted"


NAME_CONTEXT = "identities.name_encrypted"


PERSON_KINDS = frozenset(
    {
        "resident_id",
        "hong_kong_residence_permit",
        "macau_residence_permit",
        "taiwan_residence_permit",
        "foreign_permanent_residence_id",
        "foreign_permanent_residence_id_2004",
    }
)


def checked_document(number: str) -> tuple[str, str]:
    """A person's document number, normalised, and its kind; ``InvalidDocument`` if it
    is not one (every method checks the same rules)."""
    checked = check(number, expect="person_id")
    if not checked["valid"] or checked["kind"] not in PERSON_KINDS:
        raise InvalidDocument()
    return str(checked["normalized"]), str(checked["kind"])


def checked_name(name: str) -> str:
    """The name as compared and stored (``normalise_name``); ``InvalidName`` if empty or
    longer than 64 characters."""
    clean = normalise_name(name)
    if not clean or len(clean) > 64:
        raise InvalidName()
    return clean


def confirmed_holder(session: Session, number_index: str) -> int | None:
    """The account for which this document number is confirmed, if any."""
    return session.scalar(
        select(Identity.user_id).where(Identity.verified_number_index == number_index)
    )


def live_verifications(
    session: Session, holder: ColumnElement[bool], now: datetime
) -> list[Verification]:
    """The verifications of ``holder`` (a user's or an organisation's) that still count:
    not ended, not expired."""
    return [
        v
        for v in session.scalars(
            select(Verification).where(holder, Verification.ended_at.is_(None))
        )
        if v.expires_at is None or v.expires_at > now
    ]


def verification_history(session: Session, holder: ColumnElement[bool]) -> list[Verification]:
    """Every verification of ``holder``, newest first (what the user sees)."""
    return list(
        session.scalars(
            select(Verification)
            .where(holder)
            .order_by(Verification.verified_at.desc(), Verification.id.desc())
        )
    )


@dataclass(frozen=True)
class RealNameStatus:
    level: int
    document_kind: str | None
    masked_number: str | None
    verifications: list[Verification]


@dataclass(frozen=True)
class Assurance:
    level: int
    verification: Verification
    document_kind: str
    number: str
    name: str


class RealNameService:
    def __init__(
        self,
        session: Session,
        cipher: DataCipher,
        audit: AuditLog,
        clock: Clock,
        registry: Registry,
        *,
        registry_valid_days: int,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._audit = audit
        self._clock = clock
        self._registry = registry
        self._registry_valid_days = registry_valid_days

    # -- reading -----------------------------------------------------------------------

    def level(self, user: User) -> int:
        levels = [v.level for v in self._live(user)]
        return max(levels, default=UNVERIFIED)

    def status(self, user: User) -> RealNameStatus:
        identity = self._identity(user)
        history = verification_history(self._session, Verification.user_id == user.id)
        return RealNameStatus(
            level=self.level(user),
            document_kind=identity.document_kind if identity else None,
            masked_number=mask(self.number_of(identity)) if identity else None,
            verifications=history,
        )

    def number_of(self, identity: Identity) -> str:
        return self._cipher.decrypt(identity.number_encrypted, context=NUMBER_CONTEXT)

    def name_of(self, identity: Identity) -> str:
        return self._cipher.decrypt(identity.name_encrypted, context=NAME_CONTEXT)

    def assurance(self, user: User) -> Assurance | None:
        """What the account's level rests on, for ``verified_claims``: the strongest live
        verification and the identity document (decrypted); None at level 1."""
        live = self._live(user)
        identity = self._identity(user)
        if not live or identity is None:
            return None
        strongest = max(live, key=lambda v: (v.level, v.verified_at))
        return Assurance(
            level=strongest.level,
            verification=strongest,
            document_kind=identity.document_kind,
            number=self.number_of(identity),
            name=self.name_of(identity),
        )

    # -- level 3: the population registry ----------------------------------------------

    def verify_with_registry(self, user: User, name: str, number: str) -> Verification:
        """Match name + document number against the population registry and record
        level 3. Refusals leave the account as it was and are audited (without the
        number or the name)."""
        document, kind = checked_document(number)
        clean_name = checked_name(name)
        number_index = self._cipher.blind_index(document, purpose=NUMBER_INDEX)
        identity = self._identity(user)
        if identity and identity.verified_number_index not in (None, number_index):
            raise IdentityAlreadyVerified()
        try:
            result = self._registry.match("person", document, clean_name)
        except RegistryUnavailable as exc:
            self._refuse(user, "registry_unavailable", error=str(exc)[:200])
            raise RegistryDown() from None
        if result.answer is not Answer.MATCH:
            self._refuse(user, result.answer.value)
            raise RegistryMismatch()
        # only after the registry matched: whether a number is taken is not told to
        # someone who does not also know the name that goes with it
        if confirmed_holder(self._session, number_index) not in (None, user.id):
            self._refuse(user, "identity_taken")
            raise IdentityTaken()
        now = self._clock.now()
        if identity is None:
            identity = Identity(user_id=user.id, created_at=now)
            self._session.add(identity)
        identity.document_kind = kind
        identity.number_encrypted = self._cipher.encrypt(document, context=NUMBER_CONTEXT)
        identity.number_index = number_index
        identity.name_encrypted = self._cipher.encrypt(clean_name, context=NAME_CONTEXT)
        identity.verified_number_index = number_index
        identity.updated_at = now
        verification = Verification(
            user_id=user.id,
            method=VerificationMethod.REGISTRY,
            level=3,
            verified_at=now,
            expires_at=now + timedelta(days=self._registry_valid_days),
            source=self._registry.source,
            evidence_ref=result.reference,
        )
        self._session.add(verification)
        try:
            self._session.flush()
        except IntegrityError:
            # another account had the number confirmed between our check and our write
            self._session.rollback()
            self._refuse(user, "identity_taken")
            raise IdentityTaken() from None
        self._audit.record(
            "realname.verify",
            subject=user.subject,
            details={"method": "registry", "level": 3, "document_kind": kind},
        )
        self._session.commit()
        return verification

    # -- lifecycle ---------------------------------------------------------------------

    def end_verifications(self, user: User, *, above: int, reason: str, actor: str) -> int:
        """Lower the account's level to at most ``above`` by ending the verifications
        over it (an administrator's decision, with a reason); returns how many ended."""
        now = self._clock.now()
        ended = 0
        for verification in self._live(user):
            if verification.level > above:
                verification.ended_at = now
                verification.end_reason = reason[:200]
                ended += 1
        self._audit.record(
            "realname.lower",
            subject=user.subject,
            actor=actor,
            details={"to_at_most": above, "ended": ended, "reason": reason[:200]},
        )
        self._session.commit()
        return ended

    def record_expiries(self) -> int:
        """Mark every verification whose time ran out as ended ("expired"), with one
        audit event per account or organisation, so that expiry, like every other change
        of level, is in the audit log (the level itself never counted an expired
        record). Run daily by an operator (`idp realname expire`); returns how many
        verifications it marked."""
        now = self._clock.now()
        expired = list(
            self._session.scalars(
                select(Verification)
                .where(Verification.ended_at.is_(None), Verification.expires_at <= now)
                .order_by(Verification.id)
            )
        )
        by_holder: dict[str, list[Verification]] = {}
        for verification in expired:
            assert verification.expires_at is not None
            verification.ended_at = verification.expires_at
            verification.end_reason = EXPIRED_REASON
            by_holder.setdefault(self._holder_subject(verification), []).append(verification)
        for subject, ended in by_holder.items():
            self._audit.record(
                "realname.expire",
                subject=subject,
                details={
                    "levels": sorted({v.level for v in ended}),
                    "methods": sorted({v.method.value for v in ended}),
                },
            )
        self._session.commit()
        return len(expired)

    def _holder_subject(self, verification: Verification) -> str:
        if verification.user_id is not None:
            user = self._session.get(User, verification.user_id)
            return user.subject if user else f"user-id:{verification.user_id}"
        organisation = self._session.get(Organisation, verification.organisation_id)
        return organisation.subject if organisation else f"org-id:{verification.organisation_id}"

    # -- helpers -----------------------------------------------------------------------

    def _live(self, user: User) -> list[Verification]:
        return live_verifications(self._session, Verification.user_id == user.id, self._clock.now())

    def _identity(self, user: User) -> Identity | None:
        return self._session.scalar(select(Identity).where(Identity.user_id == user.id))

    def _refuse(self, user: User, reason: str, **details: str) -> None:
        self._audit.record(
            "realname.verify",
            FAILURE,
            subject=user.subject,
            details={"method": "registry", "reason": reason, **details},
        )
        self._session.commit()
