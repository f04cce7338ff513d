"""Real-name levels (Guangdong 可信等级, design.md section 5) and the verifications
that reach them.

An account's level is the highest level of its live verifications (not ended, not
expired); with none it is 1 (registered, nothing proved). Document numbers and names are
stored encrypted with keyed blind indexes; a number confirmed for an account belongs to
that account only ("one person, one identity": a unique index, so two accounts racing
for one number cannot both win).

Every method records what it proved through ``RealNameService.record_verification``
(docs/decisions/0028-record-verification.md): the ``Verification`` row, its expiry, the
identity document it rests on, the audit event and the commit are written there, once.
The methods keep their own checks (input rules, throttles, the call to the registry, the
SMS gateway or the face service) and audit their refusals with ``record_refusal``. Here
too: level 3 against the population registry (``verify_with_registry``), lowering a level
(``end_verifications``) and recording expiries.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
    VerificationConflict,
)
from accounts.realname.models import Identity, Verification
from accounts.realname.models import VerificationMethod as VerificationMethod  # noqa: PLC0414 - re-exported for pki
from accounts.signals import level_changed
from idp.core.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher

UNVERIFIED = 1
# the levels a verification can reach (1 is "nothing proved", never recorded)
LEVELS = range(2, 6)


EXPIRED_REASON = "expired"


NUMBER_CONTEXT = "identities.number_encrypted"


NAME_CONTEXT = "identities.name_encrypted"


# the audit events of verifications, by holder
PERSON_EVENT = "realname.verify"
ORGANISATION_EVENT = "org.verify"


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


# the verifications that rest on the identity document (a phone check does not)
DOCUMENT_METHODS = (
    VerificationMethod.REGISTRY,
    VerificationMethod.FACE,
    VerificationMethod.COUNTER,
    VerificationMethod.CERTIFICATE,
    VerificationMethod.FEDERATION,
)


Holder = User | Organisation


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


@dataclass(frozen=True)
class DocumentClaim:
    """The identity document a person's verification rests on (the number normalised,
    the name as stored) and what the method proved of it.

    ``confirmed`` (registry, counter, certificate): the source confirmed the number for
    this person. It becomes the account's identity and claims the unique index ("one
    person, one identity"); an account already confirmed with another number is refused,
    unless ``replace_reason`` is set (the counter corrects a wrong identity): then the
    document replaces the account's and the live verifications that rested on the old
    one end with that reason.

    Not confirmed (level 2, self-declared): stored as the account's identity unless the
    account has a confirmed one, which it must then repeat (number and name); it claims
    no index, so nobody can lock the real holder out by declaring their number.
    """

    number: str
    kind: str
    name: str
    confirmed: bool = True
    replace_reason: str | None = None

    def __post_init__(self) -> None:
        if self.replace_reason is not None and not self.confirmed:
            raise ValueError("only a confirmed document can replace an identity")

    @classmethod
    def checked(
        cls, name: str, number: str, *, confirmed: bool = True, replace_reason: str | None = None
    ) -> DocumentClaim:
        """The claim of a document as typed: ``InvalidDocument`` or ``InvalidName`` (in
        that order) when it breaks the rules every method applies."""
        number, kind = checked_document(number)
        return cls(number, kind, checked_name(name), confirmed, replace_reason)


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
        validity: Mapping[VerificationMethod, int],
    ) -> None:
        """``validity``: how many days a verification by each method counts (the
        ``*_level_valid_days`` settings); a method without one must be given its
        verification's end (``expires_at``)."""
        self._session = session
        self._cipher = cipher
        self._audit = audit
        self._clock = clock
        self._registry = registry
        self._validity = dict(validity)

    # -- reading -----------------------------------------------------------------------

    def level(self, holder: Holder) -> int:
        """The level of a person or an organisation: its highest live verification."""
        levels = [v.level for v in self._live(holder)]
        return max(levels, default=UNVERIFIED)

    def history(self, holder: Holder) -> list[Verification]:
        """Every verification of ``holder``, newest first (what the user sees)."""
        return list(
            self._session.scalars(
                select(Verification)
                .where(_holder_clause(holder))
                .order_by(Verification.verified_at.desc(), Verification.id.desc())
            )
        )

    def status(self, user: User) -> RealNameStatus:
        identity = self.identity_of(user)
        return RealNameStatus(
            level=self.level(user),
            document_kind=identity.document_kind if identity else None,
            masked_number=mask(self.number_of(identity)) if identity else None,
            verifications=self.history(user),
        )

    def identity_of(self, user: User) -> Identity | None:
        """The identity document the account stands for (confirmed or declared), if any."""
        return self._session.scalar(select(Identity).where(Identity.user_id == user.id))

    def confirmed_identity(self, user: User) -> Identity | None:
        """The account's identity if a source confirmed it (not only declared)."""
        identity = self.identity_of(user)
        return identity if identity and identity.verified_number_index else None

    def number_index(self, number: str) -> str:
        """The keyed blind index of a normalised document number (what bindings and the
        "one person, one identity" index compare)."""
        return self._cipher.blind_index(number, purpose=NUMBER_INDEX)

    def confirmed_holder(self, number: str) -> User | None:
        """The account whose identity a source confirmed with this (normalised) number."""
        return self._session.scalar(
            select(User)
            .join(Identity, Identity.user_id == User.id)
            .where(Identity.verified_number_index == self.number_index(number))
        )

    def number_of(self, identity: Identity) -> str:
        return self._cipher.decrypt(identity.number_encrypted, context=NUMBER_CONTEXT)

    def name_of(self, identity: Identity) -> str:
        return self._cipher.decrypt(identity.name_encrypted, context=NAME_CONTEXT)

    def assurance(self, user: User) -> Assurance | None:
        """What the account's level rests on, for ``verified_claims``: the strongest live
        verification and the identity document (decrypted); None at level 1."""
        live = self._live(user)
        identity = self.identity_of(user)
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

    def check_claim(self, user: User, claim: DocumentClaim) -> None:
        """``IdentityAlreadyVerified`` when the account's confirmed identity stands against
        ``claim`` (another number; for a declaration, also another name). Methods ask it
        before they call a remote service or send a code; ``record_verification`` asks it
        again, and audits the refusal."""
        if claim.replace_reason is None and self._contradicts(self.identity_of(user), claim):
            raise IdentityAlreadyVerified()

    # -- recording: the one way every method adds a verification --------------------------

    def record_verification(
        self,
        holder: Holder,
        *,
        method: VerificationMethod,
        level: int,
        source: str,
        evidence_ref: str | None = None,
        actor: str | None = None,
        expires_at: datetime | None = None,
        document: DocumentClaim | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Verification:
        """Record that ``holder`` (a person or an organisation) reached ``level`` by
        ``method``, proved by ``source`` (a label such as "registry:local", never personal
        data) with the source's reference for the check (``evidence_ref``), done by
        ``actor`` when not the person ("staff:<id>", "cli"). Commits and returns the row.

        The verification counts for the method's validity (the settings), or until
        ``expires_at`` when that is sooner (a certificate's end); a method without either
        is a programming error. A person's ``document`` is written to the account's
        identity first (see ``DocumentClaim``). The audit event (``realname.verify`` for a
        person, ``org.verify`` for an organisation) carries the method, the level, the
        person's document kind, ``details``, and with a replacing document whether it
        replaced one; never the number or the name.

        Refusals leave the holder as it was (what the caller wrote in this transaction is
        rolled back), are audited and raised: ``IdentityAlreadyVerified``,
        ``IdentityTaken`` (never saying which account holds the number; also when another
        account won a race for it), ``VerificationConflict`` (another request wrote the
        account's declared identity meanwhile)."""
        if level not in LEVELS:
            raise ValueError(f"a verification reaches level 2 to 5, not {level}")
        previous = self._level_if_watched(holder)
        now = self._clock.now()
        verification = Verification(
            method=method,
            level=level,
            verified_at=now,
            expires_at=self._expiry(method, now, expires_at),
            source=source[:200],
            evidence_ref=evidence_ref,
            actor=actor[:100] if actor else None,
        )
        audited: dict[str, Any] = {"method": method.value, "level": level}
        if isinstance(holder, User):
            verification.user_id = holder.id
            if document is None:
                identity = self.identity_of(holder)
            else:
                identity, replaced = self._write_identity(holder, document, method, actor, now)
                if document.replace_reason is not None:
                    audited["replaced"] = replaced
            if identity is not None:
                audited["document_kind"] = identity.document_kind
        else:
            if document is not None:
                raise ValueError("an organisation has no identity document")
            verification.organisation_id = holder.id
        audited.update(details or {})
        self._session.add(verification)
        try:
            self._session.flush()
        except IntegrityError:
            if document is None:
                raise
            # another request wrote this account's identity, or another account had the
            # number confirmed, between our checks and our write
            if document.confirmed:
                self._refuse_recording(holder, method, actor, "identity_taken")
                raise IdentityTaken() from None
            self._refuse_recording(holder, method, actor, "conflict")
            raise VerificationConflict() from None
        self._audit.record(_event(holder), subject=holder.subject, actor=actor, details=audited)
        self._session.commit()
        self._announce_level(holder, previous)
        return verification

    def record_refusal(
        self,
        holder: Holder | None,
        *,
        method: VerificationMethod,
        reason: str,
        actor: str | None = None,
        **details: str,
    ) -> None:
        """Audit (and commit) a verification that was refused: the method, the reason and
        ``details``, never personal data. ``holder`` None: an organisation not known yet
        (its first check failed), audited as ``org.verify`` without a subject."""
        self._audit.record(
            _event(holder),
            FAILURE,
            subject=holder.subject if holder else None,
            actor=actor,
            details={"method": method.value, "reason": reason, **details},
        )
        self._session.commit()

    # -- level 3: the population registry ----------------------------------------------

    def verify_with_registry(self, user: User, name: str, number: str) -> Verification:
        """Match name + document number against the population registry and record
        level 3. Refusals leave the account as it was and are audited (without the
        number or the name)."""
        claim = DocumentClaim.checked(name, number)
        self.check_claim(user, claim)
        method = VerificationMethod.REGISTRY
        try:
            result = self._registry.match("person", claim.number, claim.name)
        except RegistryUnavailable as exc:
            self.record_refusal(
                user, method=method, reason="registry_unavailable", error=str(exc)[:200]
            )
            raise RegistryDown() from None
        if result.answer is not Answer.MATCH:
            self.record_refusal(user, method=method, reason=result.answer.value)
            raise RegistryMismatch()
        # only after the registry matched (record_verification checks it): whether a
        # number is taken is not told to someone who does not also know the name
        return self.record_verification(
            user,
            method=method,
            level=3,
            source=self._registry.source,
            evidence_ref=result.reference,
            document=claim,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def end_verifications(
        self, user: User, *, above: int, reason: str, actor: str, source: str | None = None
    ) -> int:
        """Lower the account's level to at most ``above`` by ending the verifications
        over it (an administrator's decision, with a reason), or only those of one
        ``source`` (what a peer vouched for); returns how many ended."""
        previous = self._level_if_watched(user)
        now = self._clock.now()
        ended = 0
        for verification in self._live(user):
            if verification.level > above and source in (None, verification.source):
                verification.ended_at = now
                verification.end_reason = reason[:200]
                ended += 1
        self._audit.record(
            "realname.lower",
            subject=user.subject,
            actor=actor,
            details={
                "to_at_most": above,
                "ended": ended,
                "reason": reason[:200],
                **({"source": source[:200]} if source is not None else {}),
            },
        )
        self._session.commit()
        self._announce_level(user, previous)
        return ended

    def _level_if_watched(self, holder: Holder) -> int | None:
        """A person's level before a change, when someone listens to ``level_changed``."""
        if isinstance(holder, User) and level_changed.receivers:
            return self.level(holder)
        return None

    def _announce_level(self, holder: Holder, previous: int | None) -> None:
        if previous is None or not isinstance(holder, User):
            return
        current = self.level(holder)
        if current != previous:
            level_changed.send(holder, previous=previous, current=current)

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

    def _live(self, holder: Holder) -> list[Verification]:
        """The verifications of ``holder`` that still count: not ended, not expired."""
        now = self._clock.now()
        return [
            v
            for v in self._session.scalars(
                select(Verification).where(_holder_clause(holder), Verification.ended_at.is_(None))
            )
            if v.expires_at is None or v.expires_at > now
        ]

    def _expiry(
        self, method: VerificationMethod, now: datetime, expires_at: datetime | None
    ) -> datetime:
        days = self._validity.get(method)
        ends = [e for e in (expires_at, None if days is None else now + timedelta(days=days)) if e]
        if not ends:
            raise ValueError(f"no validity for {method.value} verifications: pass expires_at")
        return min(ends)

    def _contradicts(self, identity: Identity | None, claim: DocumentClaim) -> bool:
        """Whether a confirmed identity stands against the claim (see ``check_claim``)."""
        if identity is None or identity.verified_number_index is None:
            return False
        number_index = self._cipher.blind_index(claim.number, purpose=NUMBER_INDEX)
        if not hmac.compare_digest(identity.verified_number_index, number_index):
            return True
        return not claim.confirmed and normalise_name(self.name_of(identity)) != claim.name

    def _write_identity(
        self,
        user: User,
        claim: DocumentClaim,
        method: VerificationMethod,
        actor: str | None,
        now: datetime,
    ) -> tuple[Identity, bool]:
        """Make ``claim`` the account's identity as its kind of claim says (see
        ``DocumentClaim``); the identity, and whether it replaced another document. Asks
        the database nothing after its first write: a conflict is found by the caller's
        flush."""
        identity = self.identity_of(user)
        if claim.replace_reason is None and self._contradicts(identity, claim):
            self._refuse_recording(user, method, actor, "identity_already_verified")
            raise IdentityAlreadyVerified()
        number_index = self._cipher.blind_index(claim.number, purpose=NUMBER_INDEX)
        holder = self._session.scalar(
            select(Identity.user_id).where(Identity.verified_number_index == number_index)
        )
        if holder not in (None, user.id):
            self._refuse_recording(user, method, actor, "identity_taken")
            raise IdentityTaken()
        replaced = identity is not None and identity.number_index != number_index
        if identity is None:
            identity = Identity(user_id=user.id, created_at=now)
            self._session.add(identity)
        elif replaced and claim.replace_reason is not None:
            self._end_document_verifications(user, now, claim.replace_reason)
        if claim.confirmed or identity.verified_number_index is None:
            # a declared document is stored like a confirmed one, but claims no index
            identity.document_kind = claim.kind
            identity.number_encrypted = self._cipher.encrypt(claim.number, context=NUMBER_CONTEXT)
            identity.number_index = number_index
            identity.name_encrypted = self._cipher.encrypt(claim.name, context=NAME_CONTEXT)
            identity.updated_at = now
        if claim.confirmed:
            identity.verified_number_index = number_index
        return identity, replaced

    def _end_document_verifications(self, user: User, now: datetime, reason: str) -> None:
        """The old document's live verifications end, with the reason the user sees."""
        for verification in self._live(user):
            if verification.method in DOCUMENT_METHODS:
                verification.ended_at = now
                verification.end_reason = reason

    def _refuse_recording(
        self, holder: Holder, method: VerificationMethod, actor: str | None, reason: str
    ) -> None:
        """A refusal found while recording: nothing of the verification is kept."""
        self._session.rollback()
        self.record_refusal(holder, method=method, reason=reason, actor=actor)


def _holder_clause(holder: Holder) -> ColumnElement[bool]:
    if isinstance(holder, User):
        return Verification.user_id == holder.id
    return Verification.organisation_id == holder.id


def _event(holder: Holder | None) -> str:
    return PERSON_EVENT if isinstance(holder, User) else ORGANISATION_EVENT
