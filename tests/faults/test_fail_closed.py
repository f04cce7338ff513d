"""What a request does when a dependency fails part-way through it (in-process: the
store or the database fails for some operations only, which a whole-server kill
cannot time precisely)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError

from idp.core.runtime import Runtime
from idp.core.store import Store, StoreUnavailable
from tests.support import create_user, csrf_token, sign_in
from tests.support import text as body


class PartlyBroken:
    """The real store, except that ``operations`` on keys starting with ``prefix``
    fail as an unreachable Redis does (while ``broken`` is set)."""

    def __init__(self, inner: Store, prefix: str, operations: set[str]) -> None:
        self._inner = inner
        self._prefix = prefix
        self._operations = operations
        self.broken = True

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._inner, name)
        if name not in self._operations:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.broken and args and str(args[0]).startswith(self._prefix):
                raise StoreUnavailable("cannot reach the store at redis://cache:6379/0")
            return real(*args, **kwargs)

        return call


def _use(app: Flask, store: PartlyBroken) -> None:
    Runtime.of(app).store = store
    app.session_interface.store = store  # type: ignore[attr-defined]


def test_sign_in_fails_closed_when_the_throttle_cannot_be_checked(app: Flask, store: Store) -> None:
    create_user(app)
    throttle = PartlyBroken(store, "thr:", {"get", "incr", "delete", "ttl"})
    _use(app, throttle)
    browser = app.test_client()
    refused = sign_in(browser)  # the right password
    assert refused.status_code == 503
    assert "Signing in is not possible at the moment" in body(refused)
    assert refused.headers["Retry-After"]
    assert "Traceback" not in body(refused)
    assert browser.get("/account").status_code == 302  # not signed in
    throttle.broken = False
    assert sign_in(browser).status_code == 302
    assert browser.get("/account").status_code == 200


@pytest.mark.parametrize(
    ("operations", "path"),
    [
        ({"set"}, "/login"),  # a new session with the form's CSRF token
        ({"set", "set_add"}, "/account"),  # a sign-in, saved after the view
    ],
)
def test_a_session_that_cannot_be_saved_is_a_503(
    app: Flask, store: Store, operations: set[str], path: str
) -> None:
    create_user(app)
    browser = app.test_client()
    page = browser.get("/login")
    sessions = PartlyBroken(store, "s:", operations)
    _use(app, sessions)
    if path == "/login":
        browser.delete_cookie("idp_session")
        answer = browser.get("/login")
    else:
        answer = browser.post(
            "/login",
            data={
                "csrf_token": csrf_token(body(page)),
                "username": "alice",
                "password": "correct horse battery staple",
            },
        )
    assert answer.status_code == 503, body(answer)[:300]
    assert answer.mimetype == "text/html"
    assert "Location" not in answer.headers
    assert "idp_session=" not in answer.headers.get("Set-Cookie", "")
    assert "temporarily unavailable" in body(answer)
    sessions.broken = False
    assert browser.get(path).status_code in {200, 302}


def test_a_sign_out_that_cannot_end_the_session_says_so(app: Flask, store: Store) -> None:
    create_user(app)
    browser = app.test_client()
    assert sign_in(browser).status_code == 302
    form = browser.get("/logout")
    sessions = PartlyBroken(store, "s:", {"delete"})
    _use(app, sessions)
    answer = browser.post("/logout", data={"csrf_token": csrf_token(body(form))})
    assert answer.status_code == 503  # not "You have signed out"
    sessions.broken = False
    # the session was not ended, and the browser was not told it was
    assert browser.get("/account").status_code == 200


def _raiser(exc: Exception) -> Callable[[], str]:
    def view() -> str:
        raise exc

    return view


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InterfaceError("SELECT 1", {}, Exception("the connection is closed")), 503),
        (DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True), 503),
        (ValueError("wrapped"), 503),  # raised while handling a lost connection
        (IntegrityError("INSERT", {}, Exception("duplicate key")), 500),  # a bug, not an outage
    ],
)
def test_lost_database_connections_are_503_under_any_name(
    app: Flask, exc: Exception, status: int
) -> None:
    if isinstance(exc, ValueError):
        exc.__context__ = InterfaceError("SELECT 1", {}, Exception("the connection is closed"))
    app.add_url_rule("/broken", "broken", _raiser(exc))
    browser = app.test_client()
    page = browser.get("/broken")
    assert page.status_code == status
    assert "Traceback" not in body(page)
    api = browser.get("/broken", headers={"Accept": "application/json"})
    assert api.status_code == status
    expected = "temporarily_unavailable" if status == 503 else "server_error"
    assert api.get_json()["error"] == expected


def test_an_api_request_with_a_session_cookie_gets_json_when_the_store_is_lost(
    app: Flask, store: Store
) -> None:
    create_user(app)
    browser = app.test_client()
    assert sign_in(browser).status_code == 302
    _use(app, PartlyBroken(store, "", {"get", "set", "exists", "delete"}))
    # a browser-side client calling userinfo with its cookies (a single-page app)
    answer = browser.get("/userinfo", headers={"Authorization": "Bearer x.y.z"})
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "temporarily_unavailable"
