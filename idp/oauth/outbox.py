"""Deliveries owed to other systems, made off the request path with retries.

A delivery is a row (``DeliveryState`` columns) written in the transaction that made it
owed; a deliverer, one per app and run by a daemon thread in servers, claims the due
rows (so that several workers may run one each), attempts them and retries with
back-off (5 s, 15 s, 45 s, ... at most an hour apart). One that keeps failing, or that
the receiver refuses for good, is marked failed (and audited), never lost. Used for
back-channel logout notices (``idp.oauth.backchannel``) and Security Event Tokens pushed
to peers (``idp.oauth.security_events``).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.core.audit.services import AuditContext, AuditLog
from idp.core.runtime import Runtime
from idp.core.web import dependency_lost, describe_dependency_error
from idp.oauth.models import DeliveryState

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
CLAIM_SECONDS = 60
MAX_RETRY_DELAY = 3600

Item = TypeVar("Item", bound=DeliveryState)


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: ``error`` None when delivered; ``final`` when retrying
    cannot help (the receiver refused the content itself)."""

    error: str | None = None
    final: bool = False


DELIVERED = Attempt()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # a delivery URI that redirects is an error, not a hop


def post(uri: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST without following redirects; (status, at most 4 kB of the body). Raises
    ``OSError``/``ValueError`` when the receiver cannot be reached."""
    request = urllib.request.Request(  # noqa: S310 - a URI the operator registered
        uri, data=body, method="POST", headers=headers
    )
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read(4096)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096) if exc.fp is not None else b""


class Deliverer(Generic[Item]):
    """Delivers the owed rows of one model; it opens its own database sessions (no
    request or app context). Subclasses say how to attempt one (``attempt``), what a
    failed one is called in the audit log (``failed_event``, ``subject_of``) and how
    many attempts are made (``max_attempts``)."""

    model: ClassVar[type[DeliveryState]]
    name: ClassVar[str]  # the thread's name and the logs' words
    failed_event: ClassVar[str]

    def __init__(self, core: Runtime) -> None:
        self._core = core
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._paused = False

    # -- what a subclass says

    def attempt(self, session: Session, item: Item) -> Attempt:
        raise NotImplementedError

    def subject_of(self, item: Item) -> str:
        raise NotImplementedError

    def max_attempts(self) -> int:
        raise NotImplementedError

    # -- the thread

    def wake(self) -> None:
        self._event.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._event.set()

    def _loop(self) -> None:
        while not self._stopped:
            self._event.wait(POLL_SECONDS)
            self._event.clear()
            self.run_pass()

    def run_pass(self) -> None:
        """One pass of the thread's loop: it never ends the thread. While the database
        is out of reach the deliveries wait (said once in the log, and once when they
        resume); nothing owed is lost, since the deliveries are rows in the database."""
        try:
            self.deliver_due()
        except Exception as exc:
            if not dependency_lost(exc):
                log.exception("%s delivery pass failed", self.name)
            elif not self._paused:
                self._paused = True
                log.error("%s deliveries wait: %s", self.name, describe_dependency_error(exc))
            return
        if self._paused:
            self._paused = False
            log.warning("%s deliveries resumed", self.name)

    # -- a pass

    def deliver_due(self, limit: int = 50) -> int:
        """One pass: deliver what is due now; returns how many were delivered."""
        with self._core.database.session() as session:
            return self._deliver_due(session, limit)

    def _deliver_due(self, session: Session, limit: int) -> int:
        model = self.model
        now = self._core.clock.now()
        due = session.scalars(
            select(model)
            .where(
                model.delivered_at.is_(None),
                model.failed_at.is_(None),
                model.next_attempt_at <= now,
            )
            .order_by(model.next_attempt_at)
            .limit(limit)
        ).all()
        delivered = 0
        for item in due:
            # claim it (another worker may be looking at the same row)
            claimed = session.execute(
                update(model)
                .where(
                    model.id == item.id,
                    model.next_attempt_at == item.next_attempt_at,
                    model.delivered_at.is_(None),
                )
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)),
                execution_options={"synchronize_session": False},
            )
            session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            delivered += self._attempt(session, item.id)
        return delivered

    def _attempt(self, session: Session, item_id: int) -> int:
        clock = self._core.clock
        item: Item | None = session.get(self.model, item_id)  # type: ignore[assignment]
        if item is None:
            return 0
        outcome = self.attempt(session, item)
        now = clock.now()
        item.attempts += 1
        if outcome.error is None:
            item.delivered_at = now
            item.last_error = None
            session.commit()
            return 1
        item.last_error = outcome.error[:500]
        if outcome.final or item.attempts >= self.max_attempts():
            item.failed_at = now
            AuditLog(session, self._core.keys.secrets, clock, AuditContext(actor=self.name)).record(
                self.failed_event,
                "failure",
                subject=self.subject_of(item),
                details={"attempts": item.attempts, "error": item.last_error},
            )
            log.warning("%s to %s failed for good: %s", self.name, self.subject_of(item), outcome)
        else:
            delay = min(5 * 3 ** (item.attempts - 1), MAX_RETRY_DELAY)
            item.next_attempt_at = now + timedelta(seconds=delay)
        session.commit()
        return 0
