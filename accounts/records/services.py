"""Service records: creation (idempotent per client and external id), status
transitions along a fixed graph, the client's own list, and the holder's rating.

The status graph (decision 41)::

    submitted ──> accepted ──> in_progress ──> completed
        │            │  │          ▲  │
        │            │  └──────────┼──┼──> completed
        │            ▼             │  ▼
        │       more_info_needed ──┘ (back to in_progress)
        ▼            ▼  (every non-final status may go to rejected)
     rejected

``completed`` and ``rejected`` are final. Asking for the status a record already has is
no transition (a retried request changes nothing and adds no timeline entry).

Subjects are resolved through a ``SubjectDirectory`` the protocol layer provides: a
client names a person by the ``sub`` it received for them, an organisation by the
``sub`` it received for it or its credit code, and only a subject it has seen (a grant
or consent with that client) resolves. Refusals that probe subjects are audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.errors import N_, AccountError
from accounts.organisations.models import Organisation
from accounts.people.models import User
from accounts.records.models import HolderKind, RecordEvent, RecordStatus, ServiceRecord
from accounts.records.schemas import RecordCreate, RecordUpdate
from idp.core.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock

S = RecordStatus
FINAL = frozenset({S.COMPLETED, S.REJECTED})
TRANSITIONS: Mapping[RecordStatus, frozenset[RecordStatus]] = {
    S.SUBMITTED: frozenset({S.ACCEPTED, S.REJECTED}),
    S.ACCEPTED: frozenset({S.IN_PROGRESS, S.MORE_INFO_NEEDED, S.COMPLETED, S.REJECTED}),
    S.IN_PROGRESS: frozenset({S.MORE_INFO_NEEDED, S.COMPLETED, S.REJECTED}),
    S.MORE_INFO_NEEDED: frozenset({S.IN_PROGRESS, S.REJECTED}),
    S.COMPLETED: frozenset(),
    S.REJECTED: frozenset(),
}
MAX_PAGE = 100


class RecordError(AccountError):
    """A refusal; ``error``, ``status`` and ``field`` are what the API answers."""

    error = "invalid_request"
    status = 400
    field: str | None = None


class RecordNotFound(RecordError):
    error = "not_found"
    status = 404
    default_message = N_("There is no such record.")


class UnknownSubject(RecordError):
    error = "unknown_subject"
    status = 422
    field = "subject.sub"
    default_message = N_(
        "The subject is unknown, or has never signed in to this service (no grant or "
        "consent with this client)."
    )


class SubjectMismatch(RecordError):
    error = "conflict"
    status = 409
    field = "subject"
    default_message = N_("A record with this external id exists for another subject.")


class InvalidTransition(RecordError):
    error = "invalid_transition"
    status = 409
    field = "status"
    default_message = N_("A record cannot go from %(current)s to %(wanted)s.")


class RemarkWithoutStatus(RecordError):
    error = "invalid_request"
    status = 422
    field = "remark"
    default_message = N_("A remark belongs to a status change: send it with a status.")


class NotRatable(RecordError):
    error = "invalid_request"
    status = 409
    field = "satisfaction"
    default_message = N_("Only a completed record can be rated.")


@dataclass(frozen=True)
class ResolvedSubject:
    kind: HolderKind
    holder_id: int  # users.id or organisations.id
    sub: str  # the subject as this client names it


class SubjectDirectory(Protocol):
    """Resolves a subject a client names (implemented by the provider, which knows
    the subjects it issued and the grants behind them); None when the client has not
    seen it."""

    def person(self, client_id: str, sub: str) -> ResolvedSubject | None: ...

    def organisation(self, client_id: str, ref: str) -> ResolvedSubject | None: ...


@dataclass(frozen=True)
class Page:
    records: Sequence[ServiceRecord]
    total: int
    offset: int
    limit: int


class RecordService:
    def __init__(
        self, session: Session, audit: AuditLog, clock: Clock, subjects: SubjectDirectory
    ) -> None:
        self._session = session
        self._audit = audit
        self._clock = clock
        self._subjects = subjects

    # -- the client's side ------------------------------------------------------------

    def create(self, client_id: str, data: RecordCreate) -> tuple[ServiceRecord, bool]:
        """The record, and whether it was created (else the existing one, updated with
        the fields sent: the same external id never makes a second record)."""
        subject = self._resolve(client_id, data.subject.type, data.subject.sub)
        existing = self._by_external_id(client_id, data.external_id)
        if existing is None:
            created = self._insert(client_id, data, subject)
            if created is not None:
                return created, True
            # a parallel request with the same external id won: answer with its record
            existing = self._by_external_id(client_id, data.external_id)
            assert existing is not None
        if (existing.holder_kind, self._holder_id(existing)) != (
            subject.kind,
            subject.holder_id,
        ):
            raise SubjectMismatch()
        sent = data.model_fields_set
        change = RecordUpdate.model_validate(
            {name: getattr(data, name) for name in RecordUpdate.model_fields if name in sent}
        )
        return self._apply(existing, change), False

    def _insert(
        self, client_id: str, data: RecordCreate, subject: ResolvedSubject
    ) -> ServiceRecord | None:
        now = self._clock.now()
        record = ServiceRecord(
            client_id=client_id,
            external_id=data.external_id,
            user_id=subject.holder_id if subject.kind is HolderKind.PERSON else None,
            organisation_id=subject.holder_id if subject.kind is HolderKind.ORGANISATION else None,
            subject_sub=subject.sub,
            service_name=data.service_name,
            item_code=data.item_code,
            status=data.status,
            result_url=data.result_url,
            done_online=data.done_online,
            counter_visits=data.counter_visits,
            created_at=now,
            updated_at=now,
        )
        record.events.append(RecordEvent(at=now, status=data.status, remark=data.remark))
        try:
            with self._session.begin_nested():
                self._session.add(record)
        except IntegrityError:
            return None
        self._audit.record(
            "records.create",
            subject=self._holder_subject(record),
            details={"record": record.public_id, "status": record.status.value},
        )
        return record

    def get(self, client_id: str, record_id: str, *, lock: bool = False) -> ServiceRecord:
        query = select(ServiceRecord).where(
            ServiceRecord.public_id == record_id, ServiceRecord.client_id == client_id
        )
        if lock:  # two transitions at once: the second sees the first's status
            query = query.with_for_update()
        record = self._session.scalar(query)
        if record is None:
            raise RecordNotFound()
        return record

    def update(self, client_id: str, record_id: str, change: RecordUpdate) -> ServiceRecord:
        return self._apply(self.get(client_id, record_id, lock=True), change)

    def page(
        self,
        client_id: str,
        *,
        status: RecordStatus | None = None,
        service: str | None = None,
        item_code: str | None = None,
        external_id: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> Page:
        query = select(ServiceRecord).where(ServiceRecord.client_id == client_id)
        if status is not None:
            query = query.where(ServiceRecord.status == status)
        if service is not None:
            query = query.where(ServiceRecord.service_name == service)
        if item_code is not None:
            query = query.where(ServiceRecord.item_code == item_code)
        if external_id is not None:
            query = query.where(ServiceRecord.external_id == external_id)
        total = self._session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self._session.scalars(
            query.order_by(ServiceRecord.created_at.desc(), ServiceRecord.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        return Page(rows, total, offset, limit)

    # -- the holder's side ------------------------------------------------------------

    def for_user(
        self, user_id: int, *, status: RecordStatus | None = None, service: str | None = None
    ) -> Sequence[ServiceRecord]:
        query = select(ServiceRecord).where(ServiceRecord.user_id == user_id)
        if status is not None:
            query = query.where(ServiceRecord.status == status)
        if service:
            query = query.where(ServiceRecord.service_name == service)
        return self._session.scalars(
            query.order_by(ServiceRecord.updated_at.desc(), ServiceRecord.id.desc()).limit(200)
        ).all()

    def for_organisation(
        self,
        organisation_id: int,
        *,
        status: RecordStatus | None = None,
        service: str | None = None,
    ) -> Sequence[ServiceRecord]:
        query = select(ServiceRecord).where(ServiceRecord.organisation_id == organisation_id)
        if status is not None:
            query = query.where(ServiceRecord.status == status)
        if service:
            query = query.where(ServiceRecord.service_name == service)
        return self._session.scalars(
            query.order_by(ServiceRecord.updated_at.desc(), ServiceRecord.id.desc()).limit(200)
        ).all()

    def services_of_organisation(self, organisation_id: int) -> list[str]:
        return list(
            self._session.scalars(
                select(ServiceRecord.service_name)
                .where(ServiceRecord.organisation_id == organisation_id)
                .distinct()
                .order_by(ServiceRecord.service_name)
            )
        )

    def services_of_user(self, user_id: int) -> list[str]:
        return list(
            self._session.scalars(
                select(ServiceRecord.service_name)
                .where(ServiceRecord.user_id == user_id)
                .distinct()
                .order_by(ServiceRecord.service_name)
            )
        )

    def rate(self, user_id: int, record_id: str, satisfaction: int) -> ServiceRecord:
        """The holder rates a completed record of theirs (1-5; a later rating replaces
        it). Someone else's record is "not found", as one that does not exist."""
        record = self._session.scalar(
            select(ServiceRecord).where(
                ServiceRecord.public_id == record_id, ServiceRecord.user_id == user_id
            )
        )
        if record is None:
            raise RecordNotFound()
        if record.status is not RecordStatus.COMPLETED:
            raise NotRatable()
        if not 1 <= satisfaction <= 5:
            raise RecordError(N_("Choose a rating from 1 to 5."))
        record.satisfaction = satisfaction
        record.rated_at = self._clock.now()
        self._audit.record(
            "records.rate",
            subject=self._holder_subject(record),
            details={"record": record.public_id, "satisfaction": satisfaction},
        )
        return record

    # -- internals --------------------------------------------------------------------

    def _resolve(self, client_id: str, kind: str, sub: str) -> ResolvedSubject:
        if kind == HolderKind.PERSON.value:
            subject = self._subjects.person(client_id, sub)
        else:
            subject = self._subjects.organisation(client_id, sub)
        if subject is None:
            self._audit.record(
                "records.create", FAILURE, details={"reason": "unknown_subject", "type": kind}
            )
            raise UnknownSubject()
        return subject

    def _apply(self, record: ServiceRecord, change: RecordUpdate) -> ServiceRecord:
        now = self._clock.now()
        changed = False
        if change.remark is not None and change.status is None:
            raise RemarkWithoutStatus()
        if change.status is not None and change.status is not record.status:
            if change.status not in TRANSITIONS[record.status]:
                self._audit.record(
                    "records.update",
                    FAILURE,
                    subject=self._holder_subject(record),
                    details={
                        "record": record.public_id,
                        "reason": "invalid_transition",
                        "from": record.status.value,
                        "to": change.status.value,
                    },
                )
                raise InvalidTransition(current=record.status.value, wanted=change.status.value)
            record.events.append(RecordEvent(at=now, status=change.status, remark=change.remark))
            record.status = change.status
            changed = True
        for name in ("result_url", "done_online", "counter_visits"):
            value = getattr(change, name)
            if value is not None and value != getattr(record, name):
                setattr(record, name, value)
                changed = True
        if changed:
            record.updated_at = now
            self._audit.record(
                "records.update",
                subject=self._holder_subject(record),
                details={"record": record.public_id, "status": record.status.value},
            )
        return record

    def _by_external_id(self, client_id: str, external_id: str) -> ServiceRecord | None:
        return self._session.scalar(
            select(ServiceRecord).where(
                ServiceRecord.client_id == client_id, ServiceRecord.external_id == external_id
            )
        )

    @staticmethod
    def _holder_id(record: ServiceRecord) -> int:
        holder = record.user_id if record.user_id is not None else record.organisation_id
        assert holder is not None  # the one_holder constraint
        return holder

    def _holder_subject(self, record: ServiceRecord) -> str:
        holder: User | Organisation | None
        if record.user_id is not None:
            holder = self._session.get(User, record.user_id)
        else:
            holder = self._session.get(Organisation, self._holder_id(record))
        return holder.subject if holder is not None else ""
