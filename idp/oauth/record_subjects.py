"""Who a client may name in a service record (``accounts.records.SubjectDirectory``):
only a subject it has seen, by the identifier it received.

* A person: the ``sub`` this client received (``TokenService.subject``: public, or
  pairwise per sector), for a person who has a grant or a consent with this very
  client (revoked ones count: the client saw the subject then). Another client of the
  same sector computes the same pairwise value but has not seen the person: refused.
* An organisation: the ``sub`` the client received when the organisation was the
  subject (an enterprise-certificate sign-in), or the organisation's credit code from
  an ``org`` claim, for an organisation the client has a grant for: as the subject, or
  through an authorisation for it. The record keeps the organisation's ``sub`` for this
  client, never the code.
"""

from __future__ import annotations

import hmac

from sqlalchemy import select, union

from accounts.organisations.models import Authorisation, Organisation
from accounts.people.models import User
from accounts.records.models import HolderKind
from accounts.records.services import ResolvedSubject
from idp.core.runtime import db
from idp.oauth.clients import ClientInfo
from idp.oauth.models import Consent, Grant
from idp.oauth.server import OAuthRuntime

# the most subjects a pairwise client's look-up compares (the subjects it has seen)
MAX_CANDIDATES = 100_000


class ClientSubjects:
    def __init__(self, provider: OAuthRuntime) -> None:
        self._provider = provider

    def person(self, client_id: str, sub: str) -> ResolvedSubject | None:
        client = self._provider.clients.get(client_id)
        if client is None:
            return None
        session = db()
        seen = union(
            select(Grant.user_id).where(Grant.client_id == client_id, Grant.subject_id.is_(None)),
            select(Consent.user_id).where(Consent.client_id == client_id),
        ).subquery()
        query = select(User.id, User.public_id).where(User.id.in_(select(seen.c.user_id)))
        if not client.pairwise:
            query = query.where(User.public_id == sub)
        tokens = self._provider.tokens()
        for user_id, public_id in session.execute(query.limit(MAX_CANDIDATES)):
            if hmac.compare_digest(tokens.subject(client, public_id), sub):
                return ResolvedSubject(HolderKind.PERSON, user_id, sub)
        return None

    def organisation(self, client_id: str, ref: str) -> ResolvedSubject | None:
        client = self._provider.clients.get(client_id)
        if client is None:
            return None
        session = db()
        as_subject = select(Organisation.id).where(
            Organisation.public_id.in_(
                select(Grant.subject_id).where(
                    Grant.client_id == client_id, Grant.subject_id.is_not(None)
                )
            )
        )
        through_authorisation = select(Authorisation.organisation_id).where(
            Authorisation.public_id.in_(
                select(Grant.authorisation_id).where(
                    Grant.client_id == client_id, Grant.authorisation_id.is_not(None)
                )
            )
        )
        seen = union(as_subject, through_authorisation).subquery()
        query = select(Organisation).where(Organisation.id.in_(select(seen.c[0])))
        index = self._provider.accounts.organisation_service().uscc_index(ref)
        if index is not None:
            query = query.where(Organisation.uscc_index == index)
        elif not client.pairwise:
            query = query.where(Organisation.public_id == ref)
        for organisation in session.scalars(query.limit(MAX_CANDIDATES)):
            sub = self._sub(client, organisation)
            if index is not None or hmac.compare_digest(sub, ref):
                return ResolvedSubject(HolderKind.ORGANISATION, organisation.id, sub)
        return None

    def _sub(self, client: ClientInfo, organisation: Organisation) -> str:
        return self._provider.tokens().subject(client, organisation.public_id)
