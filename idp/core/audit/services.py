"""Recording and verifying audit events.

Each event's MAC is HMAC-SHA-256 (key derived from the root secret) over the previous
MAC and the event's canonical form, so an edited, inserted, reordered or deleted row
breaks the chain, and a person with database access alone cannot forge a new chain.
Events never carry secrets or document numbers in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from blinker import Namespace
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy import event as orm_events
from sqlalchemy.orm import Session

from idp.core.audit.models import GENESIS_MAC, AuditEvent, AuditHead
from idp.core.clock import Clock
from idp.core.keys import Secrets

MAC_PURPOSE = "audit-chain"
# Built once: appending runs on every sign-in.
_ADVANCE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == 1)
    .values(seq=AuditHead.seq + 1)
    .returning(AuditHead.seq, AuditHead.mac)
)
_INSERT_EVENT = insert(AuditEvent)
_SET_HEAD_MAC = update(AuditHead).where(AuditHead.id == 1).values(mac=bindparam("mac"))
_CORE = {"synchronize_session": False}
SUCCESS = "success"
FAILURE = "failure"
DENIED = "denied"

# Sent (sender: the event name) for each event once its transaction has committed, with
# ``outcome`` and ``subject``: what happened is then true. Listeners must not use the
# committing session (it is between transactions); a web listener defers its work to
# the response (``accounts.people.notices``).
audit_committed = Namespace().signal("audit-committed")
_RECORDED = "audit.recorded"


@orm_events.listens_for(Session, "after_commit")
def _announce_committed(session: Session) -> None:
    recorded = session.info.pop(_RECORDED, ())
    if not audit_committed.receivers:
        return
    for name, outcome, subject in recorded:
        audit_committed.send(name, outcome=outcome, subject=subject)


@orm_events.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_RECORDED, None)


@dataclass(frozen=True)
class AuditContext:
    """Who and where: filled from the request (or the CLI) by the caller."""

    client_ip: str | None = None
    request_id: str | None = None
    actor: str | None = None


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(
        self, session: Session, secrets: Secrets, clock: Clock, context: AuditContext
    ) -> None:
        self._session = session
        self._key = secrets.subkey(MAC_PURPOSE)
        self._clock = clock
        self._context = context

    def record(
        self,
        event: str,
        outcome: str = SUCCESS,
        *,
        subject: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Append an event to the current transaction (the caller commits)."""
        # Core statements, not the ORM unit of work: this runs on every sign-in.
        head = self._session.execute(_ADVANCE_HEAD, execution_options=_CORE).one()
        row = AuditEvent(
            seq=head.seq,
            created_at=self._clock.now(),
            event=event,
            outcome=outcome,
            actor=actor or self._context.actor,
            subject=subject,
            client_ip=self._context.client_ip,
            request_id=self._context.request_id,
            details=details or {},
        )
        row.mac = chain_mac(self._key, head.mac, row)
        self._session.execute(_INSERT_EVENT, _columns(row), execution_options=_CORE)
        self._session.execute(_SET_HEAD_MAC, {"mac": row.mac}, execution_options=_CORE)
        self._session.info.setdefault(_RECORDED, []).append((event, outcome, subject))
        return row

    def verify(self, batch: int = 1000) -> VerifyReport:
        report = VerifyReport()
        previous = GENESIS_MAC
        expected_seq = 1
        for row in self._iterate(batch):
            if row.seq != expected_seq:
                report.problems.append(
                    f"events {expected_seq}..{row.seq - 1} are missing"
                    if row.seq > expected_seq
                    else f"event {row.seq} is out of order"
                )
            if not hmac.compare_digest(row.mac, chain_mac(self._key, previous, row)):
                report.problems.append(f"event {row.seq} ({row.event}) was altered")
            previous = row.mac
            expected_seq = row.seq + 1
            report.checked += 1
        head = self._session.get(AuditHead, 1)
        if head is None:
            report.problems.append("the chain head is missing")
        elif head.seq != expected_seq - 1 or not hmac.compare_digest(head.mac, previous):
            report.problems.append(
                f"the chain head says {head.seq} events but {expected_seq - 1} remain: "
                "the newest events were deleted or altered"
            )
        return report

    def _iterate(self, batch: int) -> Iterator[AuditEvent]:
        last = 0
        while True:
            rows = self._session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq
            self._session.expunge_all()

    def recent(self, *, subject: str | None = None, limit: int = 50) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
        if subject is not None:
            query = query.where(AuditEvent.subject == subject)
        return list(self._session.scalars(query))

    def history(
        self,
        *,
        subject: str,
        events: Collection[str],
        before: int | None = None,
        limit: int = 20,
    ) -> list[AuditEvent]:
        """One page of a subject's events of the given kinds, newest first; ``before``:
        only events older than that sequence number (the next page)."""
        query = select(AuditEvent).where(
            AuditEvent.subject == subject, AuditEvent.event.in_(sorted(events))
        )
        if before is not None:
            query = query.where(AuditEvent.seq < before)
        return list(self._session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit)))

    def find(self, seq: int) -> AuditEvent | None:
        return self._session.get(AuditEvent, seq)


def _columns(row: AuditEvent) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in AuditEvent.__table__.columns}


def chain_mac(key: bytes, previous: str, row: AuditEvent) -> str:
    canonical = json.dumps(
        [
            row.seq,
            row.created_at.isoformat(timespec="microseconds"),
            row.event,
            row.outcome,
            row.actor,
            row.subject,
            row.client_ip,
            row.request_id,
            row.details,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(key, previous.encode() + canonical.encode(), hashlib.sha256).hexdigest()
