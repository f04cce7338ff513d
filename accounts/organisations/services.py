"""Organisations (legal persons, design.md section 4) and their real-name level.

An organisation is keyed by its unified social credit code (USCC, GB 32100-2015). Code
and name are stored AES-GCM encrypted; ``uscc_index`` (a keyed blind index, unique) finds
the organisation and makes it one row per code. Its level is, as for a person, the
highest level among its live ``Verification`` rows (``organisation_id`` set).

So far: level 3 against the legal-person registry (``verify_with_registry``). The
enterprise pages, legal representatives and agents build on ``find`` / ``get`` /
``level`` / ``status``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.adapters.registry import Answer, Registry, RegistryUnavailable
from accounts.errors import N_, AccountError
from accounts.identifiers import CONFIRM_WITH_REGISTRY, check, mask
from accounts.organisations.models import Organisation
from accounts.realname.models import Verification, VerificationMethod
from accounts.realname.services import RealNameService
from idp.core.clock import Clock
from idp.core.keys import DataCipher

USCC_CONTEXT = "organisations.uscc_encrypted"
NAME_CONTEXT = "organisations.name_encrypted"
# blind-index purpose of organisations.uscc_index (not shared with person numbers)
USCC_INDEX = "uscc"
MAX_NAME = 200


class InvalidUscc(AccountError):
    default_message = N_(
        "Enter the organisation's unified social credit code: 18 characters, digits and "
        "capital letters."
    )


class InvalidOrganisationName(AccountError):
    default_message = N_("Enter the organisation's registered name (at most 200 characters).")


class OrganisationNotFound(AccountError):
    default_message = N_(
        "The legal-person registry has no organisation with this unified social credit "
        "code. Check the code and try again."
    )


class OrganisationMismatch(AccountError):
    default_message = N_(
        "The name does not match the name the legal-person registry holds for this "
        "unified social credit code. Enter the registered name exactly."
    )


class OrganisationRegistryDown(AccountError):
    default_message = N_(
        "The legal-person registry cannot be reached just now. Nothing was changed; "
        "please try again later."
    )


@dataclass(frozen=True)
class OrganisationStatus:
    public_id: str
    level: int
    masked_uscc: str
    name: str
    verifications: list[Verification]


def normalise_organisation_name(name: str) -> str | None:
    """NFKC, trimmed, single-spaced; None when empty, too long or with control
    characters. (The registry compares names its own way.)"""
    folded = unicodedata.normalize("NFKC", name)
    if any(unicodedata.category(ch).startswith("C") for ch in folded):
        return None
    text = " ".join(folded.split())
    return text if text and len(text) <= MAX_NAME else None


@dataclass(frozen=True)
class RegistryCheck:
    verification: Verification
    organisation: Organisation
    previous_representative_index: str | None  # before this check


class OrganisationService:
    def __init__(
        self,
        session: Session,
        cipher: DataCipher,
        realname: RealNameService,
        clock: Clock,
        registry: Registry,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._realname = realname
        self._clock = clock
        self._registry = registry

    # -- reading -----------------------------------------------------------------------

    def find(self, uscc: str) -> Organisation | None:
        """The organisation with this code (any spelling ``check`` normalises), if known."""
        code = self._normalised(uscc)
        if code is None:
            return None
        return self._by_index(self._index(code))

    def uscc_index(self, uscc: str) -> str | None:
        """The keyed blind index of the code (None when it is not a valid USCC)."""
        code = self._normalised(uscc)
        return None if code is None else self._index(code)

    def get(self, public_id: str) -> Organisation | None:
        return self._session.scalar(select(Organisation).where(Organisation.public_id == public_id))

    def all(self, limit: int = 1000) -> list[Organisation]:
        """Organisations in the order they were first recorded (the operators' list)."""
        return list(
            self._session.scalars(
                select(Organisation).order_by(Organisation.created_at, Organisation.id).limit(limit)
            )
        )

    def level(self, organisation: Organisation) -> int:
        return self._realname.level(organisation)

    def status(self, organisation: Organisation) -> OrganisationStatus:
        return OrganisationStatus(
            public_id=organisation.public_id,
            level=self.level(organisation),
            masked_uscc=mask(self.uscc_of(organisation)),
            name=self.name_of(organisation),
            verifications=self._realname.history(organisation),
        )

    def uscc_of(self, organisation: Organisation) -> str:
        return self._cipher.decrypt(organisation.uscc_encrypted, context=USCC_CONTEXT)

    def name_of(self, organisation: Organisation) -> str:
        return self._cipher.decrypt(organisation.name_encrypted, context=NAME_CONTEXT)

    # -- level 3: the legal-person registry --------------------------------------------

    def verify_with_registry(self, name: str, uscc: str, *, actor: str) -> Verification:
        """Match name + USCC against the legal-person registry; on a match create or
        update the organisation and record level 3. A code whose only fault is its check
        character (early pilot codes) is accepted only if the registry knows it.
        Refusals record nothing but an audit event (without the code or the name)."""
        return self.check_with_registry(name, uscc, actor=actor).verification

    def check_with_registry(self, name: str, uscc: str, *, actor: str) -> RegistryCheck:
        """``verify_with_registry``, with the organisation and the legal representative
        the registry named before (their keyed hash), for the caller that acts on a
        change of representative (``AuthorisationService``)."""
        code = self._normalised(uscc)
        if code is None:
            raise InvalidUscc()
        clean_name = normalise_organisation_name(name)
        if clean_name is None:
            raise InvalidOrganisationName()
        index = self._index(code)
        existing = self._by_index(index)
        try:
            result = self._registry.match("organisation", code, clean_name)
        except RegistryUnavailable as exc:
            self._refuse(existing, actor, "registry_unavailable", error=str(exc)[:200])
            raise OrganisationRegistryDown() from None
        if result.answer is Answer.NOT_FOUND:
            self._refuse(existing, actor, result.answer.value)
            raise OrganisationNotFound()
        if result.answer is not Answer.MATCH:
            self._refuse(existing, actor, result.answer.value)
            raise OrganisationMismatch()
        organisation, created = self._record(index, code, clean_name, self._clock.now())
        previous = organisation.representative_index
        organisation.representative_index = result.representative_index
        verification = self._realname.record_verification(
            organisation,
            method=VerificationMethod.REGISTRY,
            level=3,
            source=self._registry.source,
            evidence_ref=result.reference,
            actor=actor,
            details={
                "created": created,
                "representative_changed": previous is not None
                and previous != result.representative_index,
            },
        )
        return RegistryCheck(verification, organisation, previous)

    # -- helpers -----------------------------------------------------------------------

    def _normalised(self, uscc: str) -> str | None:
        checked = check(uscc, expect="uscc")
        if not checked["valid"] and checked["reason"] != CONFIRM_WITH_REGISTRY:
            return None
        normalized = checked.get("normalized")
        return str(normalized) if normalized else None

    def _index(self, code: str) -> str:
        return self._cipher.blind_index(code, purpose=USCC_INDEX)

    def _record(self, index: str, code: str, name: str, now: datetime) -> tuple[Organisation, bool]:
        """The organisation with this code, created if new, with the code and the name
        (re-)encrypted; whether it was created."""
        organisation = self._by_index(index)
        created = organisation is None
        if organisation is None:
            organisation = Organisation(uscc_index=index, created_at=now)
            self._session.add(organisation)
        organisation.uscc_encrypted = self._cipher.encrypt(code, context=USCC_CONTEXT)
        organisation.name_encrypted = self._cipher.encrypt(name, context=NAME_CONTEXT)
        organisation.updated_at = now
        try:
            self._session.flush()
        except IntegrityError:
            if not created:
                raise
            # another check created it between our look-up and our insert: use that row
            self._session.rollback()
            return self._record(index, code, name, now)
        return organisation, created

    def _by_index(self, index: str) -> Organisation | None:
        return self._session.scalar(select(Organisation).where(Organisation.uscc_index == index))

    def _refuse(
        self, organisation: Organisation | None, actor: str, reason: str, **details: str
    ) -> None:
        self._realname.record_refusal(
            organisation,
            method=VerificationMethod.REGISTRY,
            reason=reason,
            actor=actor,
            **details,
        )
