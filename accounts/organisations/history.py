"""An organisation's activity history: the audit events whose subject is the
organisation (``org:<public id>``), newest first, a page at a time.

The page shows who acted without personal data: an event's actor is given as the role
they hold (or held) in the organisation and the public id of that authorisation, which
the members table lists; never a username, an address or a document number. Details
are reduced to the few keys that name an authorisation or a role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.organisations.models import Authorisation, Organisation, Role
from accounts.people.models import User
from idp.core.audit.models import AuditEvent
from idp.core.audit.services import SUCCESS

PER_PAGE = 20
MAX_PAGE = 10_000  # bounds the offset a request can ask for


class ActorKind:
    MEMBER = "member"  # holds or held an authorisation for the organisation
    OUTSIDER = "outsider"  # an account without one (a refused claim, ...)
    OPERATOR = "operator"  # the command line
    STAFF = "staff"  # government staff
    PLATFORM = "platform"  # no actor (a scheduled check, ...)


@dataclass(frozen=True)
class Activity:
    seq: int
    at: datetime
    event: str
    succeeded: bool
    actor_kind: str
    actor_role: Role | None  # the member's role (the highest they held)
    actor_authorisation: str | None  # public id of that authorisation
    authorisation: str | None  # the authorisation the event is about, if any


@dataclass(frozen=True)
class HistoryPage:
    number: int
    activities: list[Activity]
    has_more: bool


_RANK = {Role.LEGAL_REPRESENTATIVE: 0, Role.ADMINISTRATOR: 1, Role.AGENT: 2}


class OrganisationHistory:
    def __init__(self, session: Session) -> None:
        self._session = session

    def page(
        self,
        organisation: Organisation,
        members: Sequence[Authorisation],
        number: int = 1,
        per_page: int = PER_PAGE,
    ) -> HistoryPage:
        number = min(max(number, 1), MAX_PAGE)
        rows = list(
            self._session.scalars(
                select(AuditEvent)
                .where(AuditEvent.subject == organisation.subject)
                .order_by(AuditEvent.seq.desc())
                .offset((number - 1) * per_page)
                .limit(per_page + 1)
            )
        )
        held = self._roles_by_subject(members)
        activities = [self._activity(row, held) for row in rows[:per_page]]
        return HistoryPage(number, activities, has_more=len(rows) > per_page)

    def _roles_by_subject(self, members: Sequence[Authorisation]) -> dict[str, tuple[Role, str]]:
        """``user:<public id>`` -> the highest role that person holds or held here, and
        that authorisation's public id."""
        user_ids = {row.user_id for row in members if row.user_id is not None}
        if not user_ids:
            return {}
        rows = self._session.execute(select(User.id, User.public_id).where(User.id.in_(user_ids)))
        subjects: dict[int, str] = {row.id: row.public_id for row in rows}
        held: dict[str, tuple[Role, str]] = {}
        for row in members:
            if row.user_id is None:
                continue
            subject = f"user:{subjects[row.user_id]}"
            current = held.get(subject)
            if current is None or _RANK[row.role] < _RANK[current[0]]:
                held[subject] = (row.role, row.public_id)
        return held

    @staticmethod
    def _activity(row: AuditEvent, held: dict[str, tuple[Role, str]]) -> Activity:
        actor = row.actor or ""
        role: Role | None = None
        reference: str | None = None
        if actor in held:
            kind = ActorKind.MEMBER
            role, reference = held[actor]
        elif actor.startswith("user:"):
            kind = ActorKind.OUTSIDER
        elif actor.startswith("staff:"):
            kind = ActorKind.STAFF
        elif actor:
            kind = ActorKind.OPERATOR
        else:
            kind = ActorKind.PLATFORM
        about = row.details.get("authorisation") if isinstance(row.details, dict) else None
        return Activity(
            seq=row.seq,
            at=row.created_at,
            event=row.event,
            succeeded=row.outcome == SUCCESS,
            actor_kind=kind,
            actor_role=role,
            actor_authorisation=reference,
            authorisation=about if isinstance(about, str) else None,
        )
