"""Revoked access tokens and grants: durable in the database, fast in the store.

The database is the source of truth (``RevokedAccessToken`` rows until the token would
have expired, ``Grant.revoked_at``); the store holds a marker per revocation so that
the common check (a token that is not revoked, a healthy store) costs one store round
trip and no database query (decision 23).

A store can lose markers: Redis restarted empty, a failover to a replica that had not
received the last writes, a flush. Each check therefore reads, in the same atomic
``MGET``, an *epoch* key that only a complete copy of the database's revocations sets,
and afterwards asks the store whether this process reached a server instance it had
not seen before (``Store.disruptions``). If the epoch is missing or the server changed,
the markers are copied again from the database before the answer is trusted; if the
store cannot be reached, the database answers. Either way a revoked token is never
reported active, whatever order the failure and the requests come in:

* a revocation is committed to the database before its marker is written, so a copy
  taken after a loss contains every revocation whose marker the loss could have
  erased;
* the epoch is written only after a complete copy, and read together with the
  markers, so markers read beside an epoch come from a store that has them all;
* a marker that cannot be written is still in the database: the revocation endpoint
  answers 503 (RFC 7009 2.2.1: the client keeps treating the token as valid and
  retries), and every worker copies new database revocations into the store at least
  every ``revocation_sync_seconds``, which closes the gap for a worker that was cut off
  from a store the others still reach.

Every key shares the hash tag ``{rv}``, so the ``MGET`` stays in one slot on Redis
Cluster.
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp.core.clock import Clock
from idp.core.db import Database
from idp.core.store import Store, StoreUnavailable
from idp.oauth.models import Grant, RevokedAccessToken

log = logging.getLogger(__name__)

EPOCH_KEY = "{rv}:epoch"
# A full copy is taken at least this often even when nothing seems lost (the epoch
# expires): a last resort against markers dropped in ways nobody noticed.
_EPOCH_TTL = 24 * 3600
# Marker lifetimes get this much slack beyond the token's expiry (clock skew between
# nodes; the verifier refuses expired tokens anyway).
_SLACK = 60
# Periodic copies look back this far beyond the previous copy (commits that were under
# way while it ran).
_OVERLAP = timedelta(seconds=10)
_MAX_ATTEMPTS = 3


def jti_key(jti: str) -> str:
    return f"{{rv}}:j:{jti}"


def grant_key(grant_id: str) -> str:
    return f"{{rv}}:g:{grant_id}"


class Revocations:
    """Per app (shared by every request and thread of a worker): writes revocations
    durably, and answers "is this token revoked?" from the store when it can be
    trusted, otherwise after restoring it, otherwise from the database."""

    def __init__(
        self,
        database: Database,
        store: Store,
        clock: Clock,
        *,
        access_token_lifetime: int,
        sync_seconds: float,
    ) -> None:
        self._database = database
        self._store = store
        self._clock = clock
        self._grant_marker_seconds = access_token_lifetime + _SLACK
        self._sync_seconds = sync_seconds
        self._lock = threading.Lock()
        # the store's ``disruptions`` when the last complete copy began (None: never)
        self._copied_at_disruption: int | None = None
        self._copied_at: datetime | None = None

    # -- writing (the caller's session; committed here, before the store is told)

    def revoke_access_token(self, session: Session, jti: str, expires_at: datetime) -> None:
        now = self._clock.now()
        if expires_at <= now:
            return
        # revoked twice at once (a client's retry): one row, neither call fails
        dialect = session.get_bind().dialect.name
        upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            upsert(RevokedAccessToken)
            .values(jti=jti, revoked_at=now, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["jti"])
        )
        # what expired needs no marker any more (indexed; usually nothing to delete)
        session.execute(
            delete(RevokedAccessToken).where(RevokedAccessToken.expires_at <= now),
            execution_options={"synchronize_session": False},
        )
        session.commit()
        self._mark([(jti_key(jti), (expires_at - now).total_seconds() + _SLACK)])

    def grants_revoked(self, grant_ids: list[str]) -> None:
        """Markers for grants whose ``revoked_at`` the caller has just committed."""
        self._mark([(grant_key(grant_id), self._grant_marker_seconds) for grant_id in grant_ids])

    def _mark(self, markers: list[tuple[str, float]]) -> None:
        try:
            for key, seconds in markers:
                self._store.set(key, b"1", seconds)
        except StoreUnavailable:
            # committed, but not marked: this worker copies everything again before it
            # trusts the store (the others within ``revocation_sync_seconds``)
            self._copied_at_disruption = None
            raise

    def grant_marked(self, grant_id: str) -> bool:
        """A marker for a grant that may not be in the database yet (a code replayed
        while it was being redeemed)."""
        return self._store.exists(grant_key(grant_id)) > 0

    # -- checking

    def is_revoked(self, jti: str, grant_id: str | None) -> bool:
        keys = [EPOCH_KEY, jti_key(jti)]
        if grant_id:
            keys.append(grant_key(grant_id))
        for _attempt in range(_MAX_ATTEMPTS):
            try:
                epoch, *markers = self._store.get_many(*keys)
            except StoreUnavailable as exc:
                log.warning("revocation check from the database: %s", exc)
                return self._revoked_in_database(jti, grant_id)
            if any(marker is not None for marker in markers):
                return True  # a marker is never wrong
            try:
                if not self._complete(epoch):
                    self._copy()
                elif self._copy_due():
                    self._copy_recent()
                else:
                    return False
            except StoreUnavailable as exc:
                log.warning("revocation check from the database: %s", exc)
                return self._revoked_in_database(jti, grant_id)
        return self._revoked_in_database(jti, grant_id)

    def _complete(self, epoch: bytes | None) -> bool:
        """Whether the store holds every marker (read after its answer: a new server
        instance is counted before its first answer arrives)."""
        return epoch is not None and self._copied_at_disruption == self._store.disruptions

    def _copy_due(self) -> bool:
        copied_at = self._copied_at
        return (
            copied_at is None
            or (self._clock.now() - copied_at).total_seconds() >= self._sync_seconds
        )

    def _revoked_in_database(self, jti: str, grant_id: str | None) -> bool:
        queries = [select(literal(1)).where(RevokedAccessToken.jti == jti)]
        if grant_id:
            queries.append(
                select(literal(1)).where(Grant.id == grant_id, Grant.revoked_at.is_not(None))
            )
        with self._database.engine.connect() as connection:
            return connection.execute(union_all(*queries).limit(1)).first() is not None

    # -- copying the database's revocations into the store

    def _copy(self) -> None:
        """A complete copy, then the epoch. One thread at a time; a thread that waited
        finds the copy done (unless the store changed again meanwhile)."""
        with self._lock:
            disruptions = self._store.disruptions
            epoch_present = self._store.get(EPOCH_KEY) is not None
            if epoch_present and self._copied_at_disruption == disruptions:
                return
            started = self._clock.now()
            jtis, grants = self._revocations_since(None, started)
            for jti, expires_at in jtis:
                self._store.set(jti_key(jti), b"1", (expires_at - started).total_seconds() + _SLACK)
            for grant_id, revoked_at in grants:
                left = self._grant_marker_seconds - (started - revoked_at).total_seconds()
                self._store.set(grant_key(grant_id), b"1", max(left, 1))
            self._store.set(EPOCH_KEY, secrets.token_hex(8).encode(), _EPOCH_TTL)
            first = self._copied_at is None
            self._copied_at_disruption = disruptions
            self._copied_at = started
            log.log(
                logging.INFO if first else logging.WARNING,
                "revocation markers %s from the database (%d tokens, %d grants)",
                "copied" if first else "restored",
                len(jtis),
                len(grants),
            )

    def _copy_recent(self) -> None:
        """The periodic safety net: revocations recorded since the last copy."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is copying
        try:
            since = self._copied_at
            now = self._clock.now()
            if since is None or (now - since).total_seconds() < self._sync_seconds:
                return
            jtis, grants = self._revocations_since(since - _OVERLAP, now)
            for jti, expires_at in jtis:
                self._store.set(jti_key(jti), b"1", (expires_at - now).total_seconds() + _SLACK)
            for grant_id, _revoked_at in grants:
                self._store.set(grant_key(grant_id), b"1", self._grant_marker_seconds)
            self._copied_at = now
        finally:
            self._lock.release()

    def _revocations_since(
        self, since: datetime | None, now: datetime
    ) -> tuple[list[tuple[str, datetime]], list[tuple[str, datetime]]]:
        grant_window = now - timedelta(seconds=self._grant_marker_seconds)
        jti_query: Any = select(RevokedAccessToken.jti, RevokedAccessToken.expires_at).where(
            RevokedAccessToken.expires_at > now
        )
        grant_query: Any = select(Grant.id, Grant.revoked_at).where(Grant.revoked_at > grant_window)
        if since is not None:
            jti_query = jti_query.where(RevokedAccessToken.revoked_at >= since)
            grant_query = grant_query.where(Grant.revoked_at >= since)
        with self._database.engine.connect() as connection:
            jtis = [(row[0], row[1]) for row in connection.execute(jti_query)]
            grants = [(row[0], row[1]) for row in connection.execute(grant_query)]
        return jtis, grants
