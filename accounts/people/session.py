"""The account behind the session: ``current_user()``, ``login_required``.

The session itself (its principal, signing in and out) is ``idp.core.sessions``; this
module loads the principal's account and honours it only while the account is active
and the session began after the account's sessions were last revoked (a password
change). Views of every package use these; the sign-in pages are ``login.login``.
``recent_auth_required`` guards the sensitive changes (password, authenticator app,
recovery codes, deletion): a sign-in or password confirmation older than
``reauth_max_age_seconds`` sends the browser to ``/account/reauth`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, has_app_context, redirect, request, url_for

from accounts.container import Accounts
from accounts.people.models import User, UserStatus
from idp.core.principal import Principal
from idp.core.runtime import Runtime
from idp.core.sessions import current_principal, end_all_sessions, last_authenticated, sign_out

F = TypeVar("F", bound=Callable[..., Any])
_CACHE = "accounts_current_user"


def current_user() -> User | None:
    """The signed-in account, loaded once per request and principal."""
    principal = current_principal()
    if principal is None:
        return None
    cached = g.get(_CACHE)
    if cached is not None and cached[0] == principal:
        return cast(User, cached[1])
    user = Accounts.of().account_service().get(principal.uid)
    if user is None or user.status is not UserStatus.ACTIVE or _revoked(user, principal):
        sign_out()
        return None
    setattr(g, _CACHE, (principal, user))
    return user


def _revoked(user: User, principal: Principal) -> bool:
    """The session began before the account's sessions were revoked (password change)."""
    if user.sessions_valid_after is None:
        return False
    return principal.auth_time < user.sessions_valid_after.timestamp()


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def recently_authenticated() -> bool:
    """The signed-in user proved who they are within ``reauth_max_age_seconds``."""
    when = last_authenticated()
    if when is None:
        return False
    rt = Runtime.of()
    return rt.clock.now().timestamp() - when <= rt.settings.reauth_max_age_seconds


def recent_auth_required(*, back: str | None = None) -> Callable[[F], F]:
    """A sensitive change: signed in, and recently (else ``/account/reauth``, which
    returns to this page, or to the endpoint ``back`` for a POST-only action). A form
    posted by a stale session changes nothing."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_user() is None:
                return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
            if not recently_authenticated():
                if back is not None:
                    target = url_for(back)
                elif request.method == "GET":
                    target = request.full_path.rstrip("?")
                else:
                    target = request.path
                return redirect(url_for("login.reauth", next=target))
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def end_disabled_accounts_sessions(user: User, **_: Any) -> None:
    """``account_disabled`` receiver: the account is signed out everywhere (its
    services are told)."""
    if not has_app_context() or not Runtime.installed(current_app):
        return
    end_all_sessions(user.id)
