"""Acting for an organisation in the protocol (issue 12, docs/decisions/0033).

A person signed in for themselves may act for an organisation under one of their live
authorisations (``accounts.organisations.authorisations``): they choose it on the
picker (``idp.oauth.act_for``), which records it in the session principal
(``Principal.acting_for``). A client gets that context only when it asks for it, with
the scope ``enterprise``, or when it is registered as requiring it (``require_org``):
a plain client never learns which organisation the person happens to act for.

The grant records the authorisation's public id. Every token, refresh, userinfo and
introspection asks again whether it is still the person's, live and permits the client
and scopes (``OrgAuthority.permitted``: one SELECT by public id); when it is not, the
grant is revoked (``OrgAuthority.end_grant``, audited once) and the caller refuses.

The tokens keep ``sub`` the person's own subject for the client and add

* ``org``: the organisation (``uscc``, ``name``, ``type``: its kind, ``level``) and the
  authority (``role``, ``authorisation``: its public id, ``authorisation_expires``: its
  end as epoch seconds, or null);
* ``act`` (RFC 8693 4.1): ``{"sub": the person's sub for this client}``.

With an enterprise certificate alone (``ActingFor.as_subject``: the sign-in proved the
organisation, not who holds its key) the organisation is the subject: ``sub`` is derived
from the organisation's public id (public or pairwise, like a person's; the grant keeps
it as ``subject_id``), the tokens carry ``org`` but no ``act``, and no personal claim
of the account the certificate is bound to is released (docs/decisions/0036).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts.container import Accounts
from accounts.identifiers import CONFIRM_WITH_REGISTRY, check, mask
from accounts.organisations.authorisations import Scope
from accounts.organisations.models import Authorisation, Organisation
from accounts.people.models import User
from idp.core.audit.services import FAILURE
from idp.core.runtime import audit_log, db
from idp.oauth.clients import ClientInfo
from idp.oauth.tokens import TokenService

ENTERPRISE_SCOPE = "enterprise"
MAX_HINT_LENGTH = 40


def wants_org(client: ClientInfo, scopes: Iterable[str]) -> bool:
    """The request is about an organisation: the client asks for it or requires it."""
    return client.require_org or ENTERPRISE_SCOPE in scopes


def checked_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes an authorisation's scope list is compared with: ``enterprise`` asks
    for the organisation context itself and is never listed there."""
    return [scope for scope in scopes if scope != ENTERPRISE_SCOPE]


def normalised_hint(value: str) -> str | None:
    """``org_hint``'s code, normalised, or None when it is not a credit code."""
    if not value or len(value) > MAX_HINT_LENGTH:
        return None
    checked = check(value, expect="uscc")
    if not checked["valid"] and checked["reason"] != CONFIRM_WITH_REGISTRY:
        return None
    normalised = checked.get("normalized")
    return str(normalised) if normalised else None


@dataclass(frozen=True)
class Option:
    """One organisation the person may act for, as the picker shows it."""

    authorisation: str  # its public id
    organisation: str  # the organisation's public id
    name: str
    masked_uscc: str
    kind: str
    role: str
    ends_at: datetime | None
    permits: bool  # for the client of the request, if any
    hinted: bool  # the request's org_hint names it


class OrgAuthority:
    """The organisation side of a grant: which authorisation applies, whether it still
    does, and the claims that describe it. Built per request (``of``)."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._authorisations = accounts.authorisation_service()

    @classmethod
    def of(cls, accounts: Accounts | None = None) -> OrgAuthority:
        return cls(accounts or Accounts.of())

    # -- which authorisation applies

    def permitted(
        self, user_id: int | None, public_id: str | None, client_id: str, scopes: Iterable[str]
    ) -> Authorisation | None:
        """The authorisation ``public_id`` if it is ``user_id``'s, live now and permits
        the client and scopes; else None. One SELECT by public id: what
        ``AuthorisationService.live_authorisation`` asks, by the grant's user id.
        ``user_id`` None: a token we signed names it, after it was checked to be the
        person's (a confirmed authorisation never changes hands)."""
        if not public_id or len(public_id) > 36:
            return None
        service = self._authorisations
        authorisation = service.get(public_id)
        if authorisation is None:
            return None
        if user_id is not None and authorisation.user_id != user_id:
            return None
        if not service.is_live(authorisation):
            return None
        if not Scope.of(authorisation).permits(client_id, checked_scopes(scopes)):
            return None
        return authorisation

    def live_mine(self, user: User, public_id: str) -> Authorisation | None:
        """For the picker: the user's live authorisation (never trust the form)."""
        if not public_id or len(public_id) > 36:
            return None
        return self._authorisations.live_authorisation(user, public_id)

    def options(
        self,
        user: User,
        client: ClientInfo | None = None,
        scopes: Iterable[str] = (),
        hint: str | None = None,
    ) -> list[Option]:
        """The organisations the user can act for now (``live_for``), each saying
        whether it permits the request's client and scopes."""
        organisations = self._accounts.organisation_service()
        hint_index = organisations.uscc_index(hint) if hint else None
        wanted = checked_scopes(scopes)
        found = []
        for authorisation in self._authorisations.live_for(user):
            organisation = self.organisation(authorisation)
            permits = client is None or Scope.of(authorisation).permits(client.client_id, wanted)
            found.append(
                Option(
                    authorisation=authorisation.public_id,
                    organisation=organisation.public_id,
                    name=organisations.name_of(organisation),
                    masked_uscc=mask(organisations.uscc_of(organisation)),
                    kind=organisation.kind.value,
                    role=authorisation.role.value,
                    ends_at=authorisation.ends_at,
                    permits=permits,
                    hinted=hint_index is not None and organisation.uscc_index == hint_index,
                )
            )
        return found

    def matches_hint(self, authorisation: Authorisation, hint: str) -> bool:
        """The authorisation is for the organisation ``org_hint`` names."""
        index = self._accounts.organisation_service().uscc_index(hint)
        return index is not None and self.organisation(authorisation).uscc_index == index

    def organisation(self, authorisation: Authorisation) -> Organisation:
        organisation = db().get(Organisation, authorisation.organisation_id)
        assert organisation is not None  # a foreign key
        return organisation

    # -- the claims

    def org_claim(self, authorisation: Authorisation) -> dict[str, Any]:
        """The ``org`` claim: the organisation and the authority the person acts under."""
        organisation = self.organisation(authorisation)
        organisations = self._accounts.organisation_service()
        ends = authorisation.ends_at
        return {
            "uscc": organisations.uscc_of(organisation),
            "name": organisations.name_of(organisation),
            "type": organisation.kind.value,
            "level": organisations.level(organisation),
            "role": authorisation.role.value,
            "authorisation": authorisation.public_id,
            "authorisation_expires": int(ends.timestamp()) if ends is not None else None,
        }

    def claims(self, authorisation: Authorisation, person_subject: str | None) -> dict[str, Any]:
        """``org`` and ``act`` for a token or userinfo answer; ``person_subject`` None
        when the organisation itself is the subject (no person proved who acts)."""
        claims: dict[str, Any] = {"org": self.org_claim(authorisation)}
        if person_subject is not None:
            claims["act"] = {"sub": person_subject}
        return claims

    # -- refusals

    def end_grant(
        self,
        tokens: TokenService,
        grant_id: str | None,
        authorisation_id: str,
        client_id: str,
        where: str,
    ) -> None:
        """The authorisation no longer lets the grant's tokens work: audit it and revoke
        the grant (its refresh tokens stop, its access tokens introspect inactive), so
        the refusal is recorded once and later checks stop at the revocation marker.
        Without a grant (a code redeemed too late) the refusal is only audited."""
        authorisation = self._authorisations.get(authorisation_id)
        subject = None
        if authorisation is not None:
            subject = self.organisation(authorisation).subject
        audit_log().record(
            "org.act_refused",
            FAILURE,
            subject=subject,
            details={
                "authorisation": authorisation_id,
                "client_id": client_id,
                "grant": grant_id,
                "at": where,
            },
        )
        if grant_id is None:
            db().commit()
            return
        tokens.revoke_grant(grant_id, "authorisation_ended")  # commits the event too
