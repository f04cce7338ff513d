"""Browser sessions kept in the short-lived store (the SSO session).

The cookie carries only a random 256-bit identifier; the store key is its SHA-256, so a
dump of Redis does not yield usable cookies. Every worker and node sees the same
sessions. A session ends after ``session_idle_timeout`` without use or
``session_max_age`` after it began, whichever is first. ``rotate()`` (called at sign-in)
moves the data to a fresh identifier so a planted cookie is worthless (session fixation).

The helpers below are what the rest of the code asks of the session: who is signed in
(``current_principal``, an ``idp.core.principal.Principal``), ``complete_sign_in``,
``sign_out``, ending a user's other or all sessions, and ``session_ended``, the signal
sent with a signed-in session's data when it ends (back-channel logout listens). For the
account's sessions page a signed-in session also records the browser (``idp.core.
devices``: "Chrome on Windows") and the client address at sign-in, never a secret;
``user_sessions`` lists a user's sessions under opaque handles (a hash of the store key,
never the cookie) and ``end_session`` ends one of them by its handle, only among that
user's own. ``confirm_recent_auth`` records a password confirmation (``/account/reauth``)
and ``last_authenticated`` tells how recent the sign-in or confirmation is.
Loading the account behind the principal (and refusing a disabled one) is the
accounts package's ``current_user()``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from blinker import Namespace
from flask import Flask, Request, Response, current_app, request, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from config import Settings
from idp.core.clock import Clock
from idp.core.devices import Device, device_of
from idp.core.principal import PRINCIPAL_KEYS, ActingFor, Principal
from idp.core.runtime import Runtime
from idp.core.store import Store, StoreUnavailable
from idp.core.web import make_unavailable

log = logging.getLogger(__name__)

COOKIE_NAME = "idp_session"
SECURE_COOKIE_NAME = "__Host-idp_session"
_SID = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Refresh the idle deadline at most this often, so reads do not all become writes.
TOUCH_INTERVAL = 60
# The services of the session that were given a subject other than the account's
# (client id -> the public id their ``sub`` derives from: an organisation's, issue 12),
# for back-channel logout. The list of services is ``rps``.
RP_SUBJECTS = "rps_subjects"
# The upstream provider's session this one was signed in through (name, subject, its
# sid and ID token), for single logout with it (``federation.upstream.logout``).
UPSTREAM_SESSION = "upstream"
_CREATED = "_created"
_TOUCHED = "_touched"
# what the sessions page shows of a signed-in session: the browser and system at sign-in
# (``Device.to_json``) and the client address
DEVICE = "dev"
ADDRESS = "ip"
# when the password was last confirmed in this session (``/account/reauth``)
REAUTH_AT = "reauth_at"
MAX_ADDRESS = 64

# Sent (sender: the app) with the session's data (uid, sub, sid, rps...) when a
# signed-in session ends: sign-out, another user signing in, ended from elsewhere.
session_ended = Namespace().signal("session-ended")


def _store_key(sid: str) -> str:
    return "s:" + hashlib.sha256(sid.encode()).hexdigest()


def _user_index(uid: int) -> str:
    """The set of a user's signed-in sessions (store keys), to end them all at once."""
    return f"us:{uid}"


class StoreSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def on_update(_self: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.new = sid is None
        self.modified = False
        self.rotate_requested = False
        self.destroy_requested = False
        self.ended_uid: int | None = None

    def rotate(self) -> None:
        """Give the session a new identifier when the response is sent."""
        self.rotate_requested = True
        self.modified = True

    def destroy(self) -> None:
        """End the session: delete it from the store and clear the cookie."""
        self.ended_uid = self.get("uid")
        self.clear()
        self.destroy_requested = True


class UnavailableSession(StoreSession):
    """Stands in when the store cannot be reached; the request then gets a 503."""


def refuse_without_store() -> None:
    if isinstance(session, UnavailableSession):
        raise StoreUnavailable("the session store cannot be reached")


class StoreSessionInterface(SessionInterface):
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.idle = settings.session_idle_timeout
        self.max_age = settings.session_max_age
        self.secure = settings.is_https
        self.cookie_name = SECURE_COOKIE_NAME if self.secure else COOKIE_NAME

    def open_session(
        self,
        app: Flask,  # noqa: ARG002 - Flask's signature
        request: Request,
    ) -> StoreSession:
        sid = request.cookies.get(self.cookie_name, "")
        if not _SID.match(sid):
            return StoreSession()
        try:
            raw = self.store.get(_store_key(sid))
        except StoreUnavailable as exc:
            log.error("sessions unavailable: %s", exc)
            return UnavailableSession()
        if raw is None:
            return StoreSession()
        try:
            data = json.loads(raw)
        except ValueError:
            return StoreSession()
        now = self.clock.now().timestamp()
        expired = (
            now - data.get(_CREATED, 0) > self.max_age
            or now - data.get(_TOUCHED, 0) > self.idle + TOUCH_INTERVAL
        )
        if expired:
            try:
                self.store.delete(_store_key(sid))
            except StoreUnavailable as exc:
                log.error("sessions unavailable: %s", exc)
                return UnavailableSession()
            return StoreSession()
        return StoreSession(data, sid)

    def save_session(  # type: ignore[override]
        self,
        app: Flask,  # noqa: ARG002 - Flask's signature
        session: StoreSession,
        response: Response,
    ) -> None:
        if isinstance(session, UnavailableSession):
            return
        try:
            self._save(session, response)
        except StoreUnavailable as exc:
            # The answer relies on the session it could not save (a form's CSRF token,
            # a sign-in, a sign-out that must really end the session): it would not be
            # true any more, so it becomes the 503 answer.
            log.error("session not saved: %s", exc)
            make_unavailable(response)

    def _save(self, session: StoreSession, response: Response) -> None:
        if session.destroy_requested:
            if session.sid:
                self.store.delete(_store_key(session.sid))
                if session.ended_uid is not None:
                    self.store.set_remove(_user_index(session.ended_uid), _store_key(session.sid))
                session.sid = None
            if not session:
                response.delete_cookie(
                    self.cookie_name,
                    path="/",
                    secure=self.secure,
                    httponly=True,
                    samesite="Lax",
                )
                return
            # something was added after the end (a "signed out" notice): it goes into a
            # fresh anonymous session, never back under the old identifier
        now = self.clock.now().timestamp()
        if not session.sid and not session:
            return  # nothing worth a session yet
        touched = session.get(_TOUCHED, 0)
        if not (session.modified or session.new or now - touched > TOUCH_INTERVAL):
            return
        if session.rotate_requested and session.sid:
            self.store.delete(_store_key(session.sid))
            if "uid" in session:
                self.store.set_remove(_user_index(session["uid"]), _store_key(session.sid))
            session.sid = None
        is_new_id = session.sid is None
        sid = session.sid or secrets.token_urlsafe(32)
        data = dict(session)
        data.setdefault(_CREATED, now)
        data[_TOUCHED] = now
        remaining = data[_CREATED] + self.max_age - now
        # the idle deadline counts from the last touch, which may lag a request by
        # up to TOUCH_INTERVAL
        ttl = min(self.idle + TOUCH_INTERVAL, remaining)
        if ttl <= 0:
            self.store.delete(_store_key(sid))
            return
        self.store.set(_store_key(sid), json.dumps(data, separators=(",", ":")).encode(), ttl)
        if is_new_id and "uid" in data:
            self.store.set_add(_user_index(data["uid"]), _store_key(sid), self.max_age)
        session.sid = sid
        response.set_cookie(
            self.cookie_name, sid, httponly=True, secure=self.secure, samesite="Lax", path="/"
        )
        response.vary.add("Cookie")


def end_user_sessions(
    store: Store,
    uid: int,
    *,
    keep_sid: str | None,
    matches: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """End a user's signed-in sessions, all but ``keep_sid``'s, or only those whose data
    ``matches``; returns the ended sessions' data (for back-channel logout)."""
    index = _user_index(uid)
    keep = _store_key(keep_sid) if keep_sid else None
    ended = []
    for key in store.set_members(index):
        if key == keep:
            continue
        if matches is not None:
            data = _load(store.get(key))
            if data is None or not matches(data):
                continue
        raw = store.take(key)
        store.set_remove(index, key)
        data = _load(raw)
        if data is not None:
            ended.append(data)
    return ended


def _load(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None  # expired meanwhile
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# -- what the rest of the code asks of the session


def _app() -> Flask:
    return cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]


def _now() -> float:
    return Runtime.of().clock.now().timestamp()


def current_principal() -> Principal | None:
    """Who this request's session is signed in as (None: nobody)."""
    return Principal.from_session(session)


def complete_sign_in(
    uid: int, sub: str, amr: Sequence[str], *, acting_for: ActingFor | None = None
) -> Principal:
    """Start the signed-in session under a fresh identifier (no session fixation).

    The same user signing in again (a re-authentication a service asked for) keeps the
    OpenID Connect session id and the list of services signed in through it; another
    user ends the previous user's session first.
    """
    kept: dict[str, Any] = {}
    previous = session.get("uid")
    if previous == uid:
        kept = {
            key: session[key]
            for key in ("sid", "rps", RP_SUBJECTS, UPSTREAM_SESSION)
            if key in session
        }
    elif previous is not None:
        session_ended.send(_app(), data=dict(session))
    principal = Principal.signed_in(
        uid=uid,
        sub=sub,
        auth_time=_now(),
        amr=amr,
        sid=kept.get("sid") or secrets.token_urlsafe(16),
        acting_for=acting_for,
    )
    session.clear()  # includes the CSRF token: a new one is made for the new session
    session.update(principal.to_session(), rps=kept.get("rps", []))
    session[DEVICE] = device_of(request.headers.get("User-Agent")).to_json()
    session[ADDRESS] = (request.remote_addr or "")[:MAX_ADDRESS] or None
    for key in (RP_SUBJECTS, UPSTREAM_SESSION):
        if key in kept:
            session[key] = kept[key]
    cast(StoreSession, session).rotate()
    return principal


def set_acting_for(acting_for: ActingFor | None) -> Principal:
    """The signed-in person now acts for an organisation (or for themselves again)."""
    principal = current_principal()
    if principal is None:
        raise RuntimeError("nobody is signed in")
    changed = principal.acting(acting_for)
    for key in PRINCIPAL_KEYS:
        session.pop(key, None)
    session.update(changed.to_session())
    return changed


def sign_out() -> None:
    """End the session here; listeners (back-channel logout) tell the services."""
    if session.get("uid") is not None:
        session_ended.send(_app(), data=dict(session))
    cast(StoreSession, session).destroy()


def end_other_sessions(uid: int) -> int:
    """Sign the user out on every other browser (after a password change); the services
    of those sessions are told over the back channel. Returns how many ended."""
    current = cast(StoreSession, session)
    return _announce(end_user_sessions(Runtime.of().store, uid, keep_sid=current.sid))


def end_all_sessions(uid: int) -> int:
    """Sign the user out everywhere (a disabled account); needs an app context only."""
    return _announce(end_user_sessions(Runtime.of().store, uid, keep_sid=None))


def end_sessions_where(uid: int, matches: Callable[[dict[str, Any]], bool]) -> int:
    """End the user's sessions whose data ``matches`` (those made through one upstream
    session, say); needs an app context only. Returns how many ended."""
    return _announce(end_user_sessions(Runtime.of().store, uid, keep_sid=None, matches=matches))


def _announce(ended: list[dict[str, Any]]) -> int:
    app = _app()
    for data in ended:
        session_ended.send(app, data=data)
    return len(ended)


# -- the account's sessions page


@dataclass(frozen=True)
class SessionSummary:
    """One signed-in session as its owner sees it."""

    handle: str  # opaque: a hash of the store key (which is itself a hash of the cookie)
    current: bool
    device: Device
    address: str | None
    signed_in_at: float
    last_seen: float


def _handle(key: str) -> str:
    return hashlib.sha256(b"session-handle\0" + key.encode()).hexdigest()[:32]


def _decode(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _current_key() -> str | None:
    sid = cast(StoreSession, session).sid
    return _store_key(sid) if sid else None


def user_sessions(uid: int) -> list[SessionSummary]:
    """The user's signed-in sessions, this one first, then the newest sign-ins; entries
    of the index that expired meanwhile are dropped from it."""
    store = Runtime.of().store
    index = _user_index(uid)
    current = _current_key()
    found, gone = [], []
    for key in sorted(store.set_members(index)):
        data = _decode(store.get(key))  # one by one: the keys live in several slots
        if data is None or data.get("uid") != uid:
            gone.append(key)
            continue
        found.append(
            SessionSummary(
                handle=_handle(key),
                current=key == current,
                device=Device.from_json(data.get(DEVICE)),
                address=data.get(ADDRESS) if isinstance(data.get(ADDRESS), str) else None,
                signed_in_at=float(data.get("auth_time") or data.get(_CREATED) or 0),
                last_seen=float(data.get(_TOUCHED) or 0),
            )
        )
    if gone:
        store.set_remove(index, *gone)
    found.sort(key=lambda item: (not item.current, -item.signed_in_at))
    return found


def end_session(uid: int, handle: str) -> bool:
    """End one of the user's own sessions by its handle (this one: a sign-out); the
    services of the session are told over the back channel. False: the handle names
    none of this user's sessions (another user's, an ended one, or garbage)."""
    store = Runtime.of().store
    index = _user_index(uid)
    for key in store.set_members(index):
        if not hmac.compare_digest(_handle(key), handle):
            continue
        if key == _current_key():
            sign_out()
            return True
        store.set_remove(index, key)
        data = _decode(store.take(key))
        if data is None or data.get("uid") != uid:
            return False
        session_ended.send(_app(), data=data)
        return True
    return False


def confirm_recent_auth() -> None:
    """The signed-in user confirmed their password just now (a re-authentication
    before a sensitive change); the session moves to a fresh identifier."""
    session[REAUTH_AT] = _now()
    cast(StoreSession, session).rotate()


def last_authenticated() -> float | None:
    """When this session's user last proved who they are: the sign-in or a later
    password confirmation (None: nobody is signed in)."""
    principal = current_principal()
    if principal is None:
        return None
    confirmed = session.get(REAUTH_AT)
    if isinstance(confirmed, int | float):
        return max(principal.auth_time, float(confirmed))
    return principal.auth_time
