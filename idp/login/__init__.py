"""The sign-in flow: password, then a one-time code when the account has one."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from idp.login import views

    views.init_app(app)
