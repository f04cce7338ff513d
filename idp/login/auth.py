"""Who is signed in: the SSO session's contents and the helpers views use.

Session keys: ``uid`` (account id), ``sub`` (public id), ``auth_time``, ``amr`` (RFC
8176 method references), ``sid`` (the OpenID Connect session id), and ``pending`` while
a second factor is awaited.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from blinker import Namespace
from flask import current_app, g, redirect, request, session, url_for

from accounts.container import Accounts
from accounts.people.models import User, UserStatus
from idp.core.runtime import Runtime
from idp.sessions import StoreSession, end_user_sessions

F = TypeVar("F", bound=Callable[..., Any])
PENDING_TTL = 5 * 60

# Sent with the session's data (uid, sub, sid, rps...) when a signed-in session ends.
session_ended = Namespace().signal("session-ended")


def _now() -> float:
    return Runtime.of().clock.now().timestamp()


def current_user() -> User | None:
    if "current_user" in g:
        return cast(User | None, g.current_user)
    user = None
    uid = session.get("uid")
    if uid is not None:
        user = Accounts.of().account_service().get(int(uid))
        if user is None or user.status is not UserStatus.ACTIVE or _revoked(user):
            sign_out()
            user = None
    g.current_user = user
    return user


def _revoked(user: User) -> bool:
    """The session began before the account's sessions were revoked (password change)."""
    if user.sessions_valid_after is None:
        return False
    return float(session.get("auth_time", 0)) < user.sessions_valid_after.timestamp()


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def begin_second_factor(
    user: User, *, account_key: str, device_id: str | None, next_url: str
) -> None:
    session["pending"] = {
        "uid": user.id,
        "at": _now(),
        "key": account_key,
        "dev": device_id,
        "next": next_url,
    }


def pending_second_factor() -> dict[str, Any] | None:
    pending = session.get("pending")
    if not isinstance(pending, dict):
        return None
    if _now() - float(pending.get("at", 0)) > PENDING_TTL:
        session.pop("pending", None)
        return None
    return pending


def complete_sign_in(user: User, amr: list[str]) -> None:
    """Start the signed-in session under a fresh identifier (no session fixation).

    The same user signing in again (a re-authentication a service asked for) keeps the
    OpenID Connect session id and the list of services signed in through it; another
    user ends the previous user's session first.
    """
    store_session = cast(StoreSession, session)
    kept: dict[str, Any] = {}
    previous = session.get("uid")
    if previous == user.id:
        kept = {key: session[key] for key in ("sid", "rps") if key in session}
    elif previous is not None:
        session_ended.send(current_app._get_current_object(), data=dict(session))  # type: ignore[attr-defined]
    session.clear()  # includes the CSRF token: a new one is made for the new session
    session.update(
        uid=user.id,
        sub=user.public_id,
        auth_time=_now(),
        amr=amr,
        sid=kept.get("sid") or secrets.token_urlsafe(16),
        rps=kept.get("rps", []),
    )
    store_session.rotate()
    g.current_user = user


def end_other_sessions(user: User) -> int:
    """Sign the user out on every other browser (after a password change); the services
    of those sessions are told over the back channel. Returns how many ended."""
    current = cast(StoreSession, session)
    ended = end_user_sessions(Runtime.of().store, user.id, keep_sid=current.sid)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for data in ended:
        session_ended.send(app, data=data)
    return len(ended)


def end_disabled_accounts_sessions(user: User, **_: Any) -> None:
    """A disabled account is signed out everywhere (its services are told)."""
    from flask import has_app_context

    if not has_app_context() or "idp.runtime" not in current_app.extensions:
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for data in end_user_sessions(Runtime.of().store, user.id, keep_sid=None):
        session_ended.send(app, data=data)


def sign_out() -> None:
    """End the session here; listeners (back-channel logout) tell the services."""
    if session.get("uid") is not None:
        session_ended.send(current_app._get_current_object(), data=dict(session))  # type: ignore[attr-defined]
    cast(StoreSession, session).destroy()
    g.current_user = None
