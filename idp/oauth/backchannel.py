"""Delivering back-channel logout notices (OpenID Connect Back-Channel Logout 1.0).

``idp.oauth.logout`` records a notice (a ``LogoutDelivery`` row) for every service of
an ending session that registered a ``backchannel_logout_uri``. The deliverer
(``idp.oauth.outbox``: off the request path, claimed by one worker, retried with
back-off, marked failed and audited when it keeps failing, never lost) posts each as a
signed ``logout+jwt``.
"""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

from sqlalchemy.orm import Session

from idp.core.runtime import Runtime
from idp.oauth.clients import ClientInfo, ClientRegistry
from idp.oauth.keys import SigningKeys
from idp.oauth.models import LogoutDelivery
from idp.oauth.outbox import DELIVERED, Attempt, Deliverer, post

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120


class BackchannelDeliverer(Deliverer[LogoutDelivery]):
    """Delivers owed logout tokens; one per app, run by a daemon thread in servers."""

    model = LogoutDelivery
    name = "backchannel"
    failed_event = "backchannel_logout.failed"

    def __init__(
        self, core: Runtime, clients: ClientRegistry, keys: SigningKeys, issuer: str
    ) -> None:
        super().__init__(core)
        self._clients = clients
        self._keys = keys
        self._issuer = issuer

    def max_attempts(self) -> int:
        return self._core.settings.backchannel_max_attempts

    def subject_of(self, item: LogoutDelivery) -> str:
        return f"client:{item.client_id}"

    def attempt(self, session: Session, item: LogoutDelivery) -> Attempt:  # noqa: ARG002 - the interface's signature
        client = self._clients.get(item.client_id)
        if client is None:
            return Attempt("the client no longer exists")
        body = urllib.parse.urlencode({"logout_token": self._logout_token(client, item)})
        try:
            status, _ = post(
                item.uri,
                body.encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
                self._core.settings.backchannel_timeout_seconds,
            )
        except (OSError, ValueError) as exc:
            return Attempt(f"{type(exc).__name__}: {exc}")
        return DELIVERED if status in (200, 204) else Attempt(f"HTTP {status}")

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
