"""Helpers for driving the pages like a browser would."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from accounts.container import Accounts
from accounts.people.models import User
from config import Settings
from config.settings import build_settings

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
STRONG_PASSWORD = "correct horse battery staple"

# builds an app on the test's settings, store and clock with the adapters given (the
# ``make_app`` fixture of conftest.py)
AppFactory = Callable[..., Flask]


def replace_settings(settings: Settings, **changes: Any) -> Settings:
    """A validated copy (``model_copy`` would skip validation)."""
    return build_settings({**settings.model_dump(), **changes})


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def submit(
    client: FlaskClient,
    url: str,
    data: dict[str, Any],
    *,
    form_url: str | None = None,
    **kwargs: Any,
) -> TestResponse:
    """GET the form (for its CSRF token), then POST it."""
    page = client.get(form_url or url)
    token = csrf_token(page.get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data}, **kwargs)


def create_user(
    app: Flask, username: str = "alice", password: str = STRONG_PASSWORD, **kwargs: Any
) -> User:
    with app.app_context():
        return Accounts.of().account_service(actor="test").register(username, password, **kwargs)


def sign_in(
    client: FlaskClient, username: str = "alice", password: str = STRONG_PASSWORD, **kwargs: Any
) -> TestResponse:
    return submit(client, "/login", {"username": username, "password": password}, **kwargs)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)
