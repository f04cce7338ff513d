"""Delivering back-channel logout notices (OpenID Connect Back-Channel Logout 1.0).

``idp.oauth.logout`` records a notice (a ``LogoutDelivery`` row) for every service of
an ending session that registered a ``backchannel_logout_uri``. The deliverer, one per
app and run by a daemon thread in servers, posts each as a signed ``logout+jwt`` with
retries and back-off (5 s, 15 s, 45 s, ... at most an hour apart); one that keeps
failing is marked failed (and audited), never lost. Several workers may run one each:
a notice is claimed by one of them before it is sent.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.core.audit.services import AuditContext, AuditLog
from idp.core.runtime import Runtime
from idp.core.web import dependency_lost, describe_dependency_error
from idp.oauth.clients import ClientInfo, ClientRegistry
from idp.oauth.keys import SigningKeys
from idp.oauth.models import LogoutDelivery

log = logging.getLogger(__name__)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120
POLL_SECONDS = 2.0
CLAIM_SECONDS = 60
MAX_RETRY_DELAY = 3600


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # a redirect is a failed delivery, never followed


class BackchannelDeliverer:
    """Delivers owed logout tokens; one per app, run by a daemon thread in servers.
    It opens its own database sessions (no request or app context)."""

    def __init__(
        self, core: Runtime, clients: ClientRegistry, keys: SigningKeys, issuer: str
    ) -> None:
        self._core = core
        self._clients = clients
        self._keys = keys
        self._issuer = issuer
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._paused = False
        self._opener = urllib.request.build_opener(_NoRedirects)

    def wake(self) -> None:
        self._event.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="backchannel", daemon=True)
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
        resume); nothing owed is lost, since the notices are rows in the database."""
        try:
            self.deliver_due()
        except Exception as exc:
            if not dependency_lost(exc):
                log.exception("back-channel logout delivery pass failed")
            elif not self._paused:
                self._paused = True
                log.error("back-channel logout deliveries wait: %s", describe_dependency_error(exc))
            return
        if self._paused:
            self._paused = False
            log.warning("back-channel logout deliveries resumed")

    def deliver_due(self, limit: int = 50) -> int:
        """One pass: deliver what is due now; returns how many were delivered."""
        with self._core.database.session() as session:
            return self._deliver_due(session, limit)

    def _deliver_due(self, session: Session, limit: int) -> int:
        now = self._core.clock.now()
        due = session.scalars(
            select(LogoutDelivery)
            .where(
                LogoutDelivery.delivered_at.is_(None),
                LogoutDelivery.failed_at.is_(None),
                LogoutDelivery.next_attempt_at <= now,
            )
            .order_by(LogoutDelivery.next_attempt_at)
            .limit(limit)
        ).all()
        delivered = 0
        for item in due:
            # claim it (another worker may be looking at the same row)
            claimed = session.execute(
                update(LogoutDelivery)
                .where(
                    LogoutDelivery.id == item.id,
                    LogoutDelivery.next_attempt_at == item.next_attempt_at,
                    LogoutDelivery.delivered_at.is_(None),
                )
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)),
                execution_options={"synchronize_session": False},
            )
            session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            delivered += self._attempt(session, item.id)
        return delivered

    def _attempt(self, session: Session, delivery_id: int) -> int:
        settings = self._core.settings
        clock = self._core.clock
        item = session.get(LogoutDelivery, delivery_id)
        if item is None:
            return 0
        client = self._clients.get(item.client_id)
        error = None
        if client is None:
            error = "the client no longer exists"
        else:
            error = self._post(
                item.uri, self._logout_token(client, item), settings.backchannel_timeout_seconds
            )
        now = clock.now()
        item.attempts += 1
        if error is None:
            item.delivered_at = now
            item.last_error = None
            session.commit()
            return 1
        item.last_error = error[:500]
        if item.attempts >= settings.backchannel_max_attempts:
            item.failed_at = now
            AuditLog(
                session, self._core.keys.secrets, clock, AuditContext(actor="backchannel")
            ).record(
                "backchannel_logout.failed",
                "failure",
                subject=f"client:{item.client_id}",
                details={"attempts": item.attempts, "error": item.last_error},
            )
            log.warning("back-channel logout to %s failed for good: %s", item.client_id, error)
        else:
            delay = min(5 * 3 ** (item.attempts - 1), MAX_RETRY_DELAY)
            item.next_attempt_at = now + timedelta(seconds=delay)
        session.commit()
        return 0

    def _logout_token(self, client: ClientInfo, item: LogoutDelivery) -> str:
        now = int(self._core.clock.now().timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_LIFETIME,
            "jti": uuid.uuid4().hex,
            "sub": item.subject,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        if item.sid:
            claims["sid"] = item.sid
        signed: str = self._keys.sign(
            claims, alg=client.id_token_signed_response_alg, typ="logout+jwt"
        )
        return signed

    def _post(self, uri: str, logout_token: str, timeout: float) -> str | None:
        body = urllib.parse.urlencode({"logout_token": logout_token}).encode()
        request_ = urllib.request.Request(  # noqa: S310 - a URI the operator registered
            uri,
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with self._opener.open(request_, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status in (200, 204) else f"HTTP {status}"
