"""Who may act for an organisation (issue 12): the legal representative, administrators
and agents (经办人), each under an ``Authorisation`` with a scope and dates.

* **Claiming.** A person whose identity a source confirmed (level 3 or more) claims an
  organisation when the legal-person registry names them as its legal representative:
  the registry's answer carries the keyed hash of the representative's document number,
  compared with the account's confirmed one. Nobody else can claim it, whatever name
  they type: a level-2 declaration confirms nothing.
* **Agents.** An administrator (the legal representative is one) invites a person by
  account or by document number (kept only as its keyed hash, matched when they
  confirm). The authorisation is live once confirmed, from ``starts_at`` until
  ``ends_at``; the organisation can revoke it at once, the agent can renounce it.
  An intermediary holds authorisations from several organisations and acts for each
  separately: every authorisation names one organisation.
* **A new legal representative.** When the registry names someone else, the old
  representative's authorisation ends; the authorisations they alone granted stay live
  and are listed for review (``RepresentativeChange``).

Every change is audited (``org.authorise``, ``org.confirm``, ``org.revoke``,
``org.renounce``, ``org.claim``) with the organisation as subject; refusals too.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from accounts.errors import N_, AccountError
from accounts.organisations.models import (
    Authorisation,
    AuthorisationStatus,
    Organisation,
    Role,
)
from accounts.organisations.services import InvalidUscc, OrganisationService
from accounts.people.models import User
from accounts.realname.services import RealNameService, VerificationMethod, checked_document
from idp.core.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock

CLAIM_LEVEL = 3  # a confirmed identity: registry, face, counter or certificate


class AuthorisationError(AccountError):
    pass


class ClaimNeedsLevel(AuthorisationError):
    default_message = N_(
        "Claiming an organisation needs your identity verified to real-name level 3 or "
        "higher first."
    )


class NotRepresentative(AuthorisationError):
    default_message = N_(
        "The legal-person registry does not name you as this organisation's legal representative."
    )


class NotAdministrator(AuthorisationError):
    default_message = N_(
        "Only the organisation's legal representative or an administrator can do this."
    )


class AuthorisationNotFound(AuthorisationError):
    default_message = N_("There is no such authorisation, or it is not yours.")


class InvalidAuthorisation(AuthorisationError):
    default_message = N_("The authorisation is not valid: %(reason)s")


class InviteeUnknown(AuthorisationError):
    default_message = N_("Name the person by their account or their identity document number.")


@dataclass(frozen=True)
class Scope:
    """What an authorisation lets its holder do: every service, or the named clients
    (and within them, when given, only the named scopes)."""

    all_services: bool = True
    clients: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.all_services and not self.clients:
            raise InvalidAuthorisation(reason="name at least one service, or all services")

    def permits(self, client_id: str, scopes: Sequence[str] = ()) -> bool:
        if not self.all_services and client_id not in self.clients:
            return False
        return not self.scopes or set(scopes) <= set(self.scopes)

    @classmethod
    def of(cls, authorisation: Authorisation) -> Scope:
        return cls(
            authorisation.all_services, tuple(authorisation.clients), tuple(authorisation.scopes)
        )


@dataclass(frozen=True)
class RepresentativeChange:
    """The registry named a new legal representative: whose role ended, and the
    authorisations that person alone granted, still live, for the organisation to
    review."""

    ended: tuple[Authorisation, ...]
    to_review: tuple[Authorisation, ...]


class AuthorisationService:
    def __init__(
        self,
        session: Session,
        organisations: OrganisationService,
        realname: RealNameService,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._session = session
        self._organisations = organisations
        self._realname = realname
        self._audit = audit
        self._clock = clock

    # -- reading -----------------------------------------------------------------------

    def get(self, public_id: str) -> Authorisation | None:
        return self._session.scalar(
            select(Authorisation).where(Authorisation.public_id == public_id)
        )

    def is_live(self, authorisation: Authorisation, at: datetime | None = None) -> bool:
        moment = at or self._clock.now()
        return (
            authorisation.status is AuthorisationStatus.ACTIVE
            and authorisation.starts_at <= moment
            and (authorisation.ends_at is None or moment < authorisation.ends_at)
        )

    def live_for(self, user: User) -> list[Authorisation]:
        """The authorisations ``user`` can act under now (the organisation picker)."""
        rows = self._session.scalars(
            select(Authorisation)
            .where(
                Authorisation.user_id == user.id,
                Authorisation.status == AuthorisationStatus.ACTIVE,
            )
            .order_by(Authorisation.created_at, Authorisation.id)
        )
        return [row for row in rows if self.is_live(row)]

    def live_authorisation(self, user: User, public_id: str) -> Authorisation | None:
        """The authorisation ``public_id`` if it is ``user``'s and live now: what every
        token, refresh, userinfo and introspection asks again."""
        authorisation = self.get(public_id)
        if authorisation is None or authorisation.user_id != user.id:
            return None
        return authorisation if self.is_live(authorisation) else None

    def members(self, organisation: Organisation) -> list[Authorisation]:
        """Every authorisation of the organisation, live or not, newest first."""
        return list(
            self._session.scalars(
                select(Authorisation)
                .where(Authorisation.organisation_id == organisation.id)
                .order_by(Authorisation.created_at.desc(), Authorisation.id.desc())
            )
        )

    def invitations_for(self, user: User) -> list[Authorisation]:
        """Pending authorisations offered to ``user``: by account, or by the document
        number their account's identity confirms."""
        identity = self._realname.confirmed_identity(user)
        clauses = [Authorisation.user_id == user.id]
        if identity is not None and identity.verified_number_index:
            clauses.append(Authorisation.invitee_index == identity.verified_number_index)
        return list(
            self._session.scalars(
                select(Authorisation)
                .where(Authorisation.status == AuthorisationStatus.PENDING, or_(*clauses))
                .order_by(Authorisation.created_at, Authorisation.id)
            )
        )

    def is_administrator(self, user: User, organisation: Organisation) -> bool:
        return any(
            row.role in (Role.LEGAL_REPRESENTATIVE, Role.ADMINISTRATOR)
            for row in self.live_for(user)
            if row.organisation_id == organisation.id
        )

    def to_review(self, members: Sequence[Authorisation]) -> set[str]:
        """The public ids of pending or live authorisations granted by someone who no
        longer administers the organisation (a former legal representative, a revoked
        administrator): the organisation should review them."""
        administrators = {
            row.user_id
            for row in members
            if row.role in (Role.LEGAL_REPRESENTATIVE, Role.ADMINISTRATOR) and self.is_live(row)
        }
        return {
            row.public_id
            for row in members
            if row.granted_by is not None
            and row.granted_by not in administrators
            and row.status in (AuthorisationStatus.PENDING, AuthorisationStatus.ACTIVE)
        }

    def _represents(self, user: User, organisation: Organisation) -> bool:
        return any(
            row.role is Role.LEGAL_REPRESENTATIVE
            for row in self.live_for(user)
            if row.organisation_id == organisation.id
        )

    # -- claiming ----------------------------------------------------------------------

    def claim(self, user: User, uscc: str, name: str) -> Authorisation:
        """``user`` claims the organisation as its legal representative: their confirmed
        identity (level ≥ 3) must be the one the registry names. The organisation is
        verified to level 3 on the way. Refusals are audited and raised."""
        identity = self._realname.confirmed_identity(user)
        if identity is None or self._realname.level(user) < CLAIM_LEVEL:
            self._refuse("org.claim", None, user, "level")
            raise ClaimNeedsLevel()
        check = self._organisations.check_with_registry(name, uscc, actor=user.subject)
        organisation = check.organisation
        # whoever the registry no longer names loses the role now, whoever asked
        self._end_previous_representative(organisation, user)
        named = organisation.representative_index
        if named is None or not hmac.compare_digest(named, identity.verified_number_index or ""):
            self._refuse("org.claim", organisation, user, "not_representative")
            raise NotRepresentative()
        return self._claimed(user, organisation, (Role.LEGAL_REPRESENTATIVE,), by="registry")

    def claim_by_certificate(
        self,
        user: User,
        organisation: Organisation,
        *,
        source: str,
        evidence_ref: str,
        expires_at: datetime,
    ) -> Authorisation:
        """An enterprise certificate (validated through the bridge, its credit code the
        organisation's) signed ``user`` in: the organisation reaches level 5 until the
        certificate's end, and ``user`` administers it (the registry, not a
        certificate, names the legal representative)."""
        history = self._realname.history(organisation)
        if not any(v.evidence_ref == evidence_ref and v.ended_at is None for v in history):
            self._realname.record_verification(
                organisation,
                method=VerificationMethod.CERTIFICATE,
                level=5,
                source=source,
                evidence_ref=evidence_ref,
                actor=user.subject,
                expires_at=expires_at,
            )
        return self._claimed(
            user, organisation, (Role.ADMINISTRATOR, Role.LEGAL_REPRESENTATIVE), by="certificate"
        )

    def administering(self, user: User, organisation: Organisation) -> Authorisation | None:
        """``user``'s live authorisation to administer the organisation (legal
        representative or administrator), if any."""
        return self.live_role(user, organisation, (Role.ADMINISTRATOR, Role.LEGAL_REPRESENTATIVE))

    def live_role(
        self, user: User, organisation: Organisation, roles: tuple[Role, ...]
    ) -> Authorisation | None:
        """``user``'s live authorisation of one of ``roles`` for the organisation."""
        for row in self.live_for(user):
            if row.organisation_id == organisation.id and row.role in roles:
                return row
        return None

    def _claimed(
        self, user: User, organisation: Organisation, roles: tuple[Role, ...], *, by: str
    ) -> Authorisation:
        """``user``'s live authorisation of one of ``roles`` for the organisation, made
        now (of the first role: for the whole organisation, with no end) if they hold
        none. Audited as ``org.claim``."""
        held = self.live_role(user, organisation, roles)
        if held is not None:
            return held
        now = self._clock.now()
        authorisation = Authorisation(
            organisation_id=organisation.id,
            user_id=user.id,
            role=roles[0],
            status=AuthorisationStatus.ACTIVE,
            all_services=True,
            clients=[],
            scopes=[],
            starts_at=now,
            ends_at=None,
            granted_by=None,
            created_at=now,
            confirmed_at=now,
        )
        self._session.add(authorisation)
        self._session.flush()
        self._audit.record(
            "org.claim",
            subject=organisation.subject,
            actor=user.subject,
            details={"role": roles[0].value, "authorisation": authorisation.public_id, "by": by},
        )
        self._session.commit()
        return authorisation

    def recheck_representative(self, uscc: str, name: str, *, actor: str) -> RepresentativeChange:
        """Ask the registry again (an operator, or a periodic job); when it names a new
        legal representative, the old one's role ends."""
        check = self._organisations.check_with_registry(name, uscc, actor=actor)
        return self._end_previous_representative(check.organisation, None)

    def _end_previous_representative(
        self, organisation: Organisation, claimant: User | None
    ) -> RepresentativeChange:
        """End the legal-representative authorisations of anyone the registry no longer
        names; list what they alone granted."""
        named = organisation.representative_index
        ended: list[Authorisation] = []
        now = self._clock.now()
        for row in self._session.scalars(
            select(Authorisation).where(
                Authorisation.organisation_id == organisation.id,
                Authorisation.role == Role.LEGAL_REPRESENTATIVE,
                Authorisation.status == AuthorisationStatus.ACTIVE,
            )
        ):
            holder = self._session.get(User, row.user_id) if row.user_id else None
            identity = self._realname.confirmed_identity(holder) if holder else None
            still = (
                named is not None
                and identity is not None
                and hmac.compare_digest(identity.verified_number_index or "", named)
            )
            if still:
                continue
            row.status = AuthorisationStatus.ENDED
            row.ended_at = now
            row.end_reason = "legal_representative_changed"
            ended.append(row)
        to_review: list[Authorisation] = []
        for row in ended:
            granted = select(Authorisation).where(
                Authorisation.organisation_id == organisation.id,
                Authorisation.granted_by == row.user_id,
                Authorisation.status.in_((AuthorisationStatus.ACTIVE, AuthorisationStatus.PENDING)),
            )
            to_review += self._session.scalars(granted)
            self._audit.record(
                "org.representative_changed",
                subject=organisation.subject,
                actor=claimant.subject if claimant else None,
                details={"ended": row.public_id, "to_review": len(to_review)},
            )
        self._session.commit()
        return RepresentativeChange(tuple(ended), tuple(to_review))

    # -- agents ------------------------------------------------------------------------

    def invite(
        self,
        admin: User,
        organisation: Organisation,
        *,
        user: User | None = None,
        number: str | None = None,
        role: Role = Role.AGENT,
        scope: Scope | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> Authorisation:
        """Offer an authorisation to a person (an account, or whoever confirms this
        document number). ``admin`` must administer the organisation."""
        if (user is None) == (number is None):
            raise InviteeUnknown()
        starts = self._checked_offer(admin, organisation, role, starts_at, ends_at)
        invitee_index = None
        if number is not None:
            normalised, _kind = checked_document(number)
            invitee_index = self._realname.number_index(normalised)
        scope = scope or Scope()
        authorisation = self._offer(
            admin, organisation, user, invitee_index, role, scope, starts, ends_at
        )
        self._audit.record(
            "org.authorise",
            subject=organisation.subject,
            actor=admin.subject,
            details={
                "authorisation": authorisation.public_id,
                "role": role.value,
                "all_services": scope.all_services,
                "clients": list(scope.clients),
                "by": "account" if user is not None else "document",
            },
        )
        self._session.commit()
        return authorisation

    def invite_nobody(
        self,
        admin: User,
        organisation: Organisation,
        *,
        role: Role = Role.AGENT,
        scope: Scope | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> Authorisation:
        """An invitation by username that names no account, answered and listed as one
        that does (so the administrator cannot probe usernames): the same checks and
        refusals as ``invite``, and a pending authorisation that nobody can confirm
        (no account, no document number), which the administrator may revoke like any.
        Audited as ``org.authorise`` with outcome failure (the username typed is not
        recorded)."""
        starts = self._checked_offer(admin, organisation, role, starts_at, ends_at)
        offered = self._offer(
            admin, organisation, None, None, role, scope or Scope(), starts, ends_at
        )
        self._audit.record(
            "org.authorise",
            FAILURE,
            subject=organisation.subject,
            actor=admin.subject,
            details={"reason": "unknown_account", "authorisation": offered.public_id},
        )
        self._session.commit()
        return offered

    def _offer(
        self,
        admin: User,
        organisation: Organisation,
        user: User | None,
        invitee_index: str | None,
        role: Role,
        scope: Scope,
        starts: datetime,
        ends_at: datetime | None,
    ) -> Authorisation:
        """A pending authorisation, added to the session (not committed)."""
        authorisation = Authorisation(
            organisation_id=organisation.id,
            user_id=user.id if user is not None else None,
            invitee_index=invitee_index,
            role=role,
            status=AuthorisationStatus.PENDING,
            all_services=scope.all_services,
            clients=list(scope.clients),
            scopes=list(scope.scopes),
            starts_at=starts,
            ends_at=ends_at,
            granted_by=admin.id,
            created_at=self._clock.now(),
        )
        self._session.add(authorisation)
        self._session.flush()
        return authorisation

    def _checked_offer(
        self,
        admin: User,
        organisation: Organisation,
        role: Role,
        starts_at: datetime | None,
        ends_at: datetime | None,
    ) -> datetime:
        """May ``admin`` offer ``role`` for these dates? Returns when it starts."""
        if not self.is_administrator(admin, organisation):
            self._refuse("org.authorise", organisation, admin, "not_administrator")
            raise NotAdministrator()
        if role is Role.LEGAL_REPRESENTATIVE:
            raise InvalidAuthorisation(reason="the registry names the legal representative")
        if role is Role.ADMINISTRATOR and not self._represents(admin, organisation):
            self._refuse("org.authorise", organisation, admin, "not_representative")
            raise InvalidAuthorisation(
                reason="only the legal representative appoints administrators"
            )
        starts = starts_at or self._clock.now()
        if ends_at is not None and ends_at <= starts:
            raise InvalidAuthorisation(reason="it must end after it starts")
        return starts

    def confirm(self, user: User, public_id: str) -> Authorisation:
        """The invited person accepts; from then on (within its dates) it is live."""
        authorisation = self.get(public_id)
        if authorisation is None or authorisation not in self.invitations_for(user):
            raise AuthorisationNotFound()
        authorisation.user_id = user.id
        authorisation.status = AuthorisationStatus.ACTIVE
        authorisation.confirmed_at = self._clock.now()
        organisation = self._organisation(authorisation)
        self._audit.record(
            "org.confirm",
            subject=organisation.subject,
            actor=user.subject,
            details={"authorisation": authorisation.public_id},
        )
        self._session.commit()
        return authorisation

    def revoke(self, admin: User, public_id: str, reason: str = "revoked") -> Authorisation:
        """The organisation ends an authorisation at once (pending or live)."""
        authorisation = self.get(public_id)
        if authorisation is None:
            raise AuthorisationNotFound()
        organisation = self._organisation(authorisation)
        if not self.is_administrator(admin, organisation):
            self._refuse("org.revoke", organisation, admin, "not_administrator")
            raise NotAdministrator()
        if authorisation.role is Role.LEGAL_REPRESENTATIVE:
            raise InvalidAuthorisation(reason="the registry names the legal representative")
        return self._end(
            authorisation, AuthorisationStatus.REVOKED, reason[:200], admin, "org.revoke"
        )

    def renounce(self, user: User, public_id: str) -> Authorisation:
        """The agent gives an authorisation up."""
        authorisation = self.get(public_id)
        if authorisation is None or authorisation.user_id != user.id:
            raise AuthorisationNotFound()
        return self._end(
            authorisation, AuthorisationStatus.RENOUNCED, "renounced", user, "org.renounce"
        )

    # -- helpers -----------------------------------------------------------------------

    def _end(
        self,
        authorisation: Authorisation,
        status: AuthorisationStatus,
        reason: str,
        actor: User,
        event: str,
    ) -> Authorisation:
        if authorisation.status not in (AuthorisationStatus.PENDING, AuthorisationStatus.ACTIVE):
            raise InvalidAuthorisation(reason="it has ended already")
        authorisation.status = status
        authorisation.ended_at = self._clock.now()
        authorisation.end_reason = reason
        self._audit.record(
            event,
            subject=self._organisation(authorisation).subject,
            actor=actor.subject,
            details={"authorisation": authorisation.public_id, "reason": reason},
        )
        self._session.commit()
        return authorisation

    def _organisation(self, authorisation: Authorisation) -> Organisation:
        organisation = self._session.get(Organisation, authorisation.organisation_id)
        assert organisation is not None  # a foreign key
        return organisation

    def _refuse(
        self, event: str, organisation: Organisation | None, user: User, reason: str
    ) -> None:
        self._audit.record(
            event,
            FAILURE,
            subject=organisation.subject if organisation is not None else None,
            actor=user.subject,
            details={"reason": reason},
        )
        self._session.commit()


__all__ = [
    "AuthorisationError",
    "AuthorisationNotFound",
    "AuthorisationService",
    "ClaimNeedsLevel",
    "InvalidAuthorisation",
    "InvalidUscc",
    "InviteeUnknown",
    "NotAdministrator",
    "NotRepresentative",
    "RepresentativeChange",
    "Scope",
]
