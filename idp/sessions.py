"""Browser sessions kept in the short-lived store (the SSO session).

The cookie carries only a random 256-bit identifier; the store key is its SHA-256, so a
dump of Redis does not yield usable cookies. Every worker and node sees the same
sessions. A session ends after ``session_idle_timeout`` without use or
``session_max_age`` after it began, whichever is first. ``rotate()`` (called at sign-in)
moves the data to a fresh identifier so a planted cookie is worthless (session fixation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from typing import Any

from flask import Flask, Request, Response, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from config import Settings
from idp.core.clock import Clock
from idp.core.store import Store, StoreUnavailable
from idp.core.web import make_unavailable

log = logging.getLogger(__name__)

COOKIE_NAME = "idp_session"
SECURE_COOKIE_NAME = "__Host-idp_session"
_SID = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Refresh the idle deadline at most this often, so reads do not all become writes.
TOUCH_INTERVAL = 60
_CREATED = "_created"
_TOUCHED = "_touched"


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


def end_user_sessions(store: Store, uid: int, *, keep_sid: str | None) -> list[dict[str, Any]]:
    """End every signed-in session of a user but one; returns the ended sessions' data
    (for back-channel logout)."""
    index = _user_index(uid)
    keep = _store_key(keep_sid) if keep_sid else None
    ended = []
    for key in store.set_members(index):
        if key == keep:
            continue
        raw = store.take(key)
        store.set_remove(index, key)
        if raw is None:
            continue  # expired meanwhile
        try:
            ended.append(json.loads(raw))
        except ValueError:
            continue
    return ended
