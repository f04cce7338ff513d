"""Keeping peers in step: Security Event Tokens (RFC 8417) pushed (RFC 8935) both ways.

Issue 13, item 5. A peer is another identity platform configured under ``[[peers]]``
(``config.sections.PeerSettings``: its issuer, and where to push and with which bearer
token). What happens here that a peer must know is sent to every peer with a
``set_push_url``:

* an account disabled (``accounts.signals.account_disabled``): RISC ``account-disabled``;
* a real-name level raised or lowered (``accounts.signals.level_changed``): CAEP
  ``assurance-level-change`` (``namespace`` ``LEVEL_NAMESPACE``, levels "1"-"5");
* an upstream link removed (``federation.signals.link_removed``): ``LINK_REMOVED``,
  its subject RFC 9493 ``aliases`` naming the account here and the upstream's subject.

Each becomes a ``SetDelivery`` row in the transaction's wake, pushed by ``SetDeliverer``
(``idp.oauth.outbox``: off the request path, retried with back-off, recorded as failed
when the peer keeps failing or refuses the SET with RFC 8935's 400, audited). The
subject is otherwise RFC 9493 ``iss_sub``: this issuer and the account's public id.

``POST /security-events`` receives a peer's SETs: the token must be a ``secevent+jwt``
signed (ES256 or RS256 only) by a key of the peer named by its ``iss`` (its JWKS from its
discovery document, fetched again once for an unknown key), for this issuer as ``aud``,
recent, with one event. Each one is recorded (``ReceivedSet``, unique per peer and
``jti``: a retried push is answered 202 and not applied twice) and audited. Applied:
``account-disabled`` (the account is disabled: its sessions end, its tokens are revoked
and its services told) and CAEP ``session-revoked`` (its sessions end), for a subject
named by this issuer's public id, or by the sending peer's own subject of a person
linked here (``aliases`` of those too); and a lowered ``assurance-level-change`` from a
peer that is also an upstream, for the verifications it vouched for only. The account's
own change is not echoed back to the peer that asked for it. Other events and subjects
are recorded, not applied (docs/decisions/0040).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import Blueprint, Flask, Response, current_app, has_app_context, request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.container import Accounts
from accounts.people.models import User, UserStatus
from accounts.signals import account_disabled, level_changed
from config.sections import PeerSettings
from federation.signals import link_removed
from federation.upstream.container import Upstreams
from federation.upstream.services import SOURCE_PREFIX
from idp.core.audit.services import FAILURE, SUCCESS
from idp.core.error_text import safe_description
from idp.core.runtime import Component, Runtime, audit_log, db
from idp.core.sessions import end_all_sessions
from idp.core.throttle import RateLimit, Throttled
from idp.oauth.client_auth import JwksFetcher
from idp.oauth.keys import SigningKeys
from idp.oauth.models import ReceivedSet, SetDelivery
from idp.oauth.outbox import DELIVERED, Attempt, Deliverer, post

log = logging.getLogger(__name__)

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
ACCOUNT_DISABLED = RISC + "account-disabled"
SESSION_REVOKED = CAEP + "session-revoked"
LEVEL_CHANGE = CAEP + "assurance-level-change"
# a link between an account here and a peer's subject was removed (no registered event
# type says so): the subject names both as RFC 9493 aliases
LINK_REMOVED = "urn:cn:gov:dongguan:idp:event:federation-link-removed"
# the vocabulary of the level-change event: Guangdong's real-name levels (可信等级) 1-5
LEVEL_NAMESPACE = "urn:cn:gov:guangdong:trust-level"

SET_TYP = "secevent+jwt"
SET_MEDIA_TYPE = "application/secevent+jwt"
ALGORITHMS = ["ES256", "RS256"]  # what a peer may sign with: never none, never HMAC
MAX_SET_BYTES = 16 * 1024
MAX_FUTURE_SECONDS = 300
MAX_AGE_SECONDS = 7 * 24 * 3600  # retries of a push may take days
MAX_ALIASES = 8
REFUSAL_WINDOW_SECONDS = 600
DISCOVERY_CACHE_SECONDS = 3600
DISCOVERY_MAX_BYTES = 64 * 1024
EXTENSION = "idp.oauth.security_events"

# the peer whose SET the current change applies (its own change is not sent back to it)
_applying_for: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "applying_for", default=None
)


class SetRefused(Exception):
    """A pushed SET is not accepted; ``err`` is RFC 8935 2.4's error code."""

    def __init__(self, err: str, description: str) -> None:
        super().__init__(description)
        self.err = err
        self.description = description


# -- sending ----------------------------------------------------------------------------


class SetDeliverer(Deliverer[SetDelivery]):
    """Pushes owed SETs to the peers; one per app, run by a daemon thread in servers."""

    model = SetDelivery
    name = "set-push"
    failed_event = "set.push_failed"

    def __init__(self, core: Runtime, keys: SigningKeys, issuer: str) -> None:
        super().__init__(core)
        self._keys = keys
        self._issuer = issuer

    def max_attempts(self) -> int:
        return self._core.settings.set_push_max_attempts

    def subject_of(self, item: SetDelivery) -> str:
        return f"peer:{item.peer}"

    def attempt(self, session: Session, item: SetDelivery) -> Attempt:  # noqa: ARG002 - the interface's signature
        peer = peer_named(self._core, item.peer)
        if peer is None or peer.set_push_url is None:
            return Attempt("the peer is no longer configured to receive SETs", final=True)
        headers = {"Content-Type": SET_MEDIA_TYPE, "Accept": "application/json"}
        if peer.set_push_token is not None:
            headers["Authorization"] = f"Bearer {peer.set_push_token.get_secret_value()}"
        try:
            status, body = post(
                str(peer.set_push_url),
                self.signed(item, peer).encode(),
                headers,
                self._core.settings.set_push_timeout_seconds,
            )
        except (OSError, ValueError) as exc:
            return Attempt(f"{type(exc).__name__}: {exc}")
        if status in (200, 202, 204):
            return DELIVERED
        if status == 400:  # RFC 8935 2.4: the SET itself is refused; sending it again won't help
            return Attempt(f"refused: {_push_error(body)}", final=True)
        return Attempt(f"HTTP {status}")

    def signed(self, item: SetDelivery, peer: PeerSettings) -> str:
        claims = {
            "iss": self._issuer,
            "aud": peer.issuer,
            "iat": int(item.issued_at.timestamp()),
            "jti": item.jti,
            "sub_id": item.sub_id,
            "events": {item.event_type: item.event},
        }
        return self._keys.sign(claims, typ=SET_TYP)


def _push_error(body: bytes) -> str:
    """The ``err`` and ``description`` of a receiver's 400 answer (RFC 8935 2.4)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "no error description"
    if not isinstance(answer, dict):
        return "no error description"
    return f"{answer.get('err')}: {str(answer.get('description', ''))[:200]}"


def peer_named(core: Runtime, name: str) -> PeerSettings | None:
    return next((peer for peer in core.settings.peers if peer.name == name), None)


def _subject(issuer: str, user: User) -> dict[str, str]:
    return {"format": "iss_sub", "iss": issuer, "sub": user.public_id}


def _is_iss_sub(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("format") == "iss_sub"
        and isinstance(value.get("iss"), str)
        and isinstance(value.get("sub"), str)
        and 0 < len(value["sub"]) <= 255
    )


@dataclass
class SecurityEvents(Component):
    """The app's SET sender and receiver state."""

    extension: ClassVar[str] = EXTENSION

    core: Runtime
    issuer: str
    deliverer: SetDeliverer
    fetcher: JwksFetcher
    _discovery: dict[str, tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(
        self,
        user: User,
        event_type: str,
        event: dict[str, Any],
        sub_id: dict[str, Any] | None = None,
    ) -> int:
        """Owe the event to every peer that receives SETs (but the one whose SET this
        change applies); returns how many. ``sub_id``: the subject, when not the
        account's ``iss_sub``. Commits, and wakes the deliverer."""
        now = self.core.clock.now()
        skip = _applying_for.get()
        owed = 0
        for peer in self.core.settings.peers:
            if peer.set_push_url is None or peer.name == skip:
                continue
            db().add(
                SetDelivery(
                    peer=peer.name,
                    jti=uuid.uuid4().hex,
                    event_type=event_type,
                    sub_id=sub_id or _subject(self.issuer, user),
                    event=event,
                    issued_at=now,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            owed += 1
        if owed:
            db().commit()
            self.deliverer.wake()
        return owed

    # -- the peers' keys

    def peer_keys(self, peer: PeerSettings, *, fresh: bool = False) -> Any:
        """The peer's JWKS (a joserfc ``KeySet``), through its discovery document."""
        try:
            return self.fetcher.get(self._jwks_uri(peer, fresh=fresh), fresh=fresh)
        except InvalidClientError as exc:
            raise SetRefused("invalid_key", f"the peer's keys: {exc.description}") from None

    def _jwks_uri(self, peer: PeerSettings, *, fresh: bool) -> str:
        cached = self._discovery.get(peer.issuer)
        if cached is not None and not fresh and cached[0] > time.monotonic():
            return cached[1]
        url = peer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        fetch = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - a configured https/loopback issuer
        try:
            timeout = self.core.settings.set_push_timeout_seconds
            with urllib.request.urlopen(fetch, timeout=timeout) as answer:  # noqa: S310
                document = json.loads(answer.read(DISCOVERY_MAX_BYTES))
        except (OSError, ValueError) as exc:
            raise SetRefused("invalid_key", f"cannot read the peer's discovery: {exc}") from None
        if not (
            isinstance(document, dict)
            and document.get("issuer") == peer.issuer
            and isinstance(document.get("jwks_uri"), str)
        ):
            raise SetRefused("invalid_key", "the peer's discovery names another issuer or no keys")
        jwks_uri = str(document["jwks_uri"])
        with self._lock:
            self._discovery[peer.issuer] = (time.monotonic() + DISCOVERY_CACHE_SECONDS, jwks_uri)
        return jwks_uri


# -- receiving --------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    peer: PeerSettings
    claims: dict[str, Any]
    event_type: str
    event: dict[str, Any]
    sub_id: dict[str, Any]


class SetReceiver:
    """Verifies a pushed SET and applies it; built per request."""

    def __init__(self, events: SecurityEvents, session: Session, accounts: Accounts) -> None:
        self._events = events
        self._session = session
        self._accounts = accounts

    def receive(self, token: str) -> str:
        """Verify, record and apply; returns the outcome. Raises ``SetRefused``."""
        received = self.verify(token)
        jti = str(received.claims["jti"])
        seen = self._session.scalar(
            select(ReceivedSet.outcome).where(
                ReceivedSet.peer == received.peer.name, ReceivedSet.jti == jti
            )
        )
        if seen is not None:
            return "duplicate"
        user = self._subject(received)
        outcome = "unknown_subject" if user is None else self._apply(received, user)
        self._session.add(
            ReceivedSet(
                peer=received.peer.name,
                jti=jti,
                event_type=received.event_type,
                sub_id=received.sub_id,
                received_at=self._events.core.clock.now(),
                outcome=outcome,
            )
        )
        audit_log().record(
            "set.received",
            SUCCESS,
            subject=user.subject if user is not None else None,
            actor=f"peer:{received.peer.name}",
            details={"event": received.event_type, "jti": jti[:64], "outcome": outcome},
        )
        try:
            self._session.commit()
        except IntegrityError:  # the same push, in parallel
            self._session.rollback()
            return "duplicate"
        return outcome

    def verify(self, token: str) -> Received:
        try:
            compact = jws.extract_compact(token.encode())
            header = compact.protected
            unverified = json.loads(compact.payload)
        except (JoseError, ValueError, UnicodeDecodeError) as exc:
            raise SetRefused("invalid_request", f"not a signed JWT: {exc}") from None
        if not isinstance(unverified, dict):
            raise SetRefused("invalid_request", "the SET's payload is not a JSON object")
        if str(header.get("typ", "")).lower() not in (SET_TYP, SET_MEDIA_TYPE):
            raise SetRefused("invalid_request", "the JWT's typ is not secevent+jwt")
        if header.get("alg") not in ALGORITHMS:
            raise SetRefused("invalid_key", "the SET's algorithm is not accepted")
        peer = next(
            (p for p in self._events.core.settings.peers if p.issuer == unverified.get("iss")),
            None,
        )
        if peer is None:
            raise SetRefused("invalid_issuer", "the SET's issuer is not a configured peer")
        claims = self._verified_claims(token, peer)
        self._check_claims(claims)
        events = claims["events"]
        ((event_type, event),) = events.items()
        return Received(peer, claims, str(event_type), event, claims["sub_id"])

    def _verified_claims(self, token: str, peer: PeerSettings) -> dict[str, Any]:
        for fresh in (False, True):  # a key the peer added since: fetched once more
            try:
                decoded = jwt.decode(
                    token, self._events.peer_keys(peer, fresh=fresh), algorithms=ALGORITHMS
                )
            except (JoseError, ValueError) as exc:
                if fresh:
                    raise SetRefused(
                        "invalid_key", f"the SET's signature does not verify: {exc}"
                    ) from None
                continue
            return dict(decoded.claims)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_claims(self, claims: dict[str, Any]) -> None:
        issuer = self._events.issuer
        aud = claims.get("aud")
        if issuer not in (aud if isinstance(aud, list) else [aud]):
            raise SetRefused("invalid_audience", "the SET is not addressed to this service")
        now = self._events.core.clock.now().timestamp()
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise SetRefused("invalid_request", "the SET has no iat")
        if iat > now + MAX_FUTURE_SECONDS or iat < now - MAX_AGE_SECONDS:
            raise SetRefused("invalid_request", "the SET's iat is out of range")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 200:
            raise SetRefused("invalid_request", "the SET has no valid jti")
        events = claims.get("events")
        if not isinstance(events, dict) or len(events) != 1:
            raise SetRefused("invalid_request", "the SET must carry exactly one event")
        ((event_type, event),) = events.items()
        if not isinstance(event, dict) or len(str(event_type)) > 200:
            raise SetRefused("invalid_request", "the SET's event is not an object")
        sub_id = claims.get("sub_id")
        identifiers = [sub_id]
        if isinstance(sub_id, dict) and sub_id.get("format") == "aliases":
            identifiers = sub_id.get("identifiers") or [None]
        if not isinstance(identifiers, list) or len(identifiers) > MAX_ALIASES:
            raise SetRefused("invalid_request", "the SET's aliases are not a short list")
        if not all(_is_iss_sub(identifier) for identifier in identifiers):
            raise SetRefused(
                "invalid_request", "the SET's sub_id is not an iss_sub subject (or aliases of them)"
            )

    def _subject(self, received: Received) -> User | None:
        """The account the SET is about: named by this issuer and its public id, or by
        the sending peer's own subject for a person linked here (``federation_links``).
        A subject of another issuer is nobody here."""
        sub_id = received.sub_id
        identifiers = sub_id["identifiers"] if sub_id.get("format") == "aliases" else [sub_id]
        accounts = self._accounts.account_service()
        for identifier in identifiers:
            if identifier["iss"] == self._events.issuer:
                user = accounts.find_by_public_id(identifier["sub"])
            elif identifier["iss"] == received.peer.issuer:
                link = Upstreams.of().links().find(identifier["iss"], identifier["sub"])
                user = accounts.get(link.user_id) if link is not None else None
            else:
                continue
            if user is not None:
                return user
        return None

    def _apply(self, received: Received, user: User) -> str:
        with applying_for(received.peer.name):
            if received.event_type == ACCOUNT_DISABLED:
                if user.status is not UserStatus.DISABLED:
                    service = self._accounts.account_service(actor=f"peer:{received.peer.name}")
                    service.set_status(user, UserStatus.DISABLED)
                return "applied"
            if received.event_type == SESSION_REVOKED:
                end_all_sessions(user.id)
                return "applied"
            if received.event_type == LEVEL_CHANGE:
                return self._lower_level(received, user)
        return "not_applied"

    def _lower_level(self, received: Received, user: User) -> str:
        """A peer's lowered level lowers what that peer vouched for here, and nothing
        else: the verifications a sign-in through it recorded (source ``upstream:NAME``,
        decision 39) end above its new level, read through the upstream's level map
        (a level number the map does not name counts as itself). A raise is never
        applied: a level rises only through a verification here."""
        event = received.event
        if event.get("namespace") != LEVEL_NAMESPACE or event.get("change_direction") != (
            "decrease"
        ):
            return "not_applied"
        upstream = next(
            (c for c in Upstreams.of().registry().all() if c.issuer == received.peer.issuer),
            None,
        )
        current = event.get("current_level")
        if upstream is None or not isinstance(current, str):
            return "not_applied"
        mapped = dict(upstream.level_map).get(current)
        if mapped is None:
            if current not in {"1", "2", "3", "4", "5"}:
                return "not_applied"
            mapped = int(current)
        actor = f"peer:{received.peer.name}"
        ended = self._accounts.realname_service(actor=actor).end_verifications(
            user,
            above=mapped,
            reason=f"level lowered at {received.peer.name}",
            actor=actor,
            source=SOURCE_PREFIX + upstream.name,
        )
        return "applied" if ended else "not_applied"


@contextmanager
def applying_for(peer: str) -> Iterator[None]:
    token = _applying_for.set(peer)
    try:
        yield
    finally:
        _applying_for.reset(token)


# -- the endpoint and the wiring --------------------------------------------------------

bp = Blueprint("security_events", __name__)


@bp.post("/security-events")
def receive() -> Response:
    """RFC 8935: 202 when the SET is accepted, 400 with ``err``/``description`` when not
    (and ``error``/``error_description``, as every JSON error of this service)."""
    events = SecurityEvents.of()
    if request.mimetype != SET_MEDIA_TYPE:
        return _refusal(SetRefused("invalid_request", f"send the SET as {SET_MEDIA_TYPE}"))
    raw = request.get_data(cache=False)
    if len(raw) > MAX_SET_BYTES:
        return _refusal(SetRefused("invalid_request", "the SET is too large"))
    try:
        token = raw.decode("ascii").strip()
        SetReceiver(events, db(), Accounts.of()).receive(token)
    except UnicodeDecodeError:
        return _refusal(SetRefused("invalid_request", "the SET is not a compact JWT"))
    except SetRefused as refused:
        return _refusal(refused)
    return Response(status=202)


def _refusal(refused: SetRefused) -> Response:
    """A 400 (RFC 8935 2.4), audited; past ``set_refusals_per_address`` refusals from
    one address in ``REFUSAL_WINDOW_SECONDS``, a 429 that is not audited (a flood of
    junk must not flood the audit log)."""
    db().rollback()
    core = Runtime.of()
    limit = RateLimit(
        core.store,
        "set-refusals",
        limit=core.settings.set_refusals_per_address,
        window_seconds=REFUSAL_WINDOW_SECONDS,
    )
    try:
        limit.hit(request.remote_addr or "unknown")
    except Throttled as throttled:
        body = {"err": "access_denied", "description": "too many refused SETs; try later"}
        body |= {"error": "access_denied", "error_description": body["description"]}
        answer = Response(json.dumps(body), status=429, mimetype="application/json")
        answer.headers["Retry-After"] = str(throttled.retry_after)
        return answer
    audit_log().record(
        "set.received",
        FAILURE,
        details={"err": refused.err, "reason": refused.description[:200]},
    )
    db().commit()
    described = safe_description(refused.description)
    body = {
        # RFC 8935 2.4, and the service's usual error/error_description
        "err": refused.err,
        "description": described,
        "error": refused.err,
        "error_description": described,
    }
    return Response(json.dumps(body), status=400, mimetype="application/json")


def _here() -> bool:
    """A change made in an app with this package (signals are process-wide)."""
    return has_app_context() and SecurityEvents.installed(current_app)


def on_account_disabled(user: Any, **_: Any) -> None:
    if isinstance(user, User) and _here():
        SecurityEvents.of().publish(user, ACCOUNT_DISABLED, {})


def on_level_changed(user: Any, *, previous: int, current: int, **_: Any) -> None:
    if not isinstance(user, User) or not _here():
        return
    event = {
        "namespace": LEVEL_NAMESPACE,
        "current_level": str(current),
        "previous_level": str(previous),
        "change_direction": "increase" if current > previous else "decrease",
    }
    SecurityEvents.of().publish(user, LEVEL_CHANGE, event)


def on_link_removed(user: Any, *, upstream: str, issuer: str, subject: str, **_: Any) -> None:
    if not isinstance(user, User) or not _here():
        return
    events = SecurityEvents.of()
    sub_id = {
        "format": "aliases",
        "identifiers": [
            _subject(events.issuer, user),
            {"format": "iss_sub", "iss": issuer, "sub": subject},
        ],
    }
    events.publish(user, LINK_REMOVED, {"upstream": upstream}, sub_id=sub_id)


def build(core: Runtime, keys: SigningKeys) -> SecurityEvents:
    issuer = core.settings.issuer
    fetcher = JwksFetcher(timeout=core.settings.set_push_timeout_seconds)
    return SecurityEvents(core, issuer, SetDeliverer(core, keys, issuer), fetcher)


def init_app(app: Flask, core: Runtime, keys: SigningKeys, *, background: bool) -> None:
    events = build(core, keys)
    events.install(app)
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(receive)
    if any(peer.set_push_url for peer in core.settings.peers):
        account_disabled.connect(on_account_disabled, weak=False)
        level_changed.connect(on_level_changed, weak=False)
        link_removed.connect(on_link_removed, weak=False)
        if background:
            events.deliverer.start()


def sent(session: Session, *, failed_only: bool = False) -> list[SetDelivery]:
    query = select(SetDelivery).order_by(SetDelivery.id)
    if failed_only:
        query = query.where(SetDelivery.failed_at.is_not(None))
    return list(session.scalars(query))


def received(session: Session) -> list[ReceivedSet]:
    return list(session.scalars(select(ReceivedSet).order_by(ReceivedSet.id)))


def as_json(row: SetDelivery | ReceivedSet) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    common = {
        "id": row.id,
        "peer": row.peer,
        "jti": row.jti,
        "event": row.event_type,
        "subject": row.sub_id,
    }
    if isinstance(row, SetDelivery):
        return {
            **common,
            "attempts": row.attempts,
            "delivered_at": when(row.delivered_at),
            "failed_at": when(row.failed_at),
            "last_error": row.last_error,
        }
    return {**common, "received_at": when(row.received_at), "outcome": row.outcome}
