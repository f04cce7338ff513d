"""Remembered consent: a user is asked once per client and set of scopes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.core.clock import Clock
from idp.oauth.models import Consent

# Scopes that need no consent of their own (any consent to the client covers them).
IMPLICIT_SCOPES = frozenset({"openid"})


class ConsentService:
    def __init__(self, session: Session, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    def covers(self, user_id: int, client_id: str, scopes: Iterable[str]) -> bool:
        """Consent was given to this client, for at least these scopes."""
        row = self._find(user_id, client_id)
        return row is not None and set(scopes) - IMPLICIT_SCOPES <= set(row.scope.split())

    def record(self, user_id: int, client_id: str, scopes: Iterable[str]) -> None:
        """Remember the scopes (added to what was consented before)."""
        row = self._find(user_id, client_id)
        now = self._clock.now()
        if row is None:
            row = Consent(user_id=user_id, client_id=client_id, scope="", granted_at=now)
            self._session.add(row)
        granted = set(row.scope.split()) | (set(scopes) - IMPLICIT_SCOPES)
        row.scope = " ".join(sorted(granted))
        row.granted_at = now
        try:
            self._session.flush()
        except IntegrityError:  # granted in another tab at the same moment
            self._session.rollback()
            self.record(user_id, client_id, scopes)

    def for_user(self, user_id: int) -> Sequence[Consent]:
        return self._session.scalars(
            select(Consent).where(Consent.user_id == user_id).order_by(Consent.granted_at.desc())
        ).all()

    def revoke(self, user_id: int, client_id: str) -> bool:
        result = self._session.execute(
            delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def _find(self, user_id: int, client_id: str) -> Consent | None:
        return self._session.scalar(
            select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
        )
